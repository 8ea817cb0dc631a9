"""A small, synchronous client for the JupyterHub REST API, used by the culler and the reconciler.

The functions talk to the hub only through its public REST API with the token
of the culler's hub service (:mod:`acaspawner.culler_service`), so the hub stays the source of truth:
a server the culler stops is stopped by the hub, which then runs the
spawner's own stop path (a queued ``stop`` request) to remove the app.

Every request has a timeout, user and server names are URL-quoted, list
endpoints are followed page by page (``Accept:
application/jupyterhub-pagination+json``), and the token never appears in a
log line, an exception or a ``repr``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from .appsettings import number, text

log = logging.getLogger(__name__)

PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"
DEFAULT_TIMEOUT = 30.0
# a hub that answers "next" forever must not keep a run going forever
MAX_PAGES = 10_000


class HubApiError(RuntimeError):
    """The hub API answered with an error, or not at all."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class HubUnavailable(HubApiError):
    """The hub API could not be reached (connection refused, DNS, timeout)."""


@dataclass(frozen=True)
class HubApiSettings:
    """Where the hub's REST API is and the service token to call it with (``ACA_HUB_API_*``)."""

    url: str = ""
    token: str = field(default="", repr=False)
    timeout: float = DEFAULT_TIMEOUT  # seconds per request

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> HubApiSettings:
        """Read the settings (URL and token may be empty); raises ValueError for a bad ``ACA_HUB_API_TIMEOUT``."""
        return cls(
            url=text(settings, "ACA_HUB_API_URL"),
            token=text(settings, "ACA_HUB_API_TOKEN"),
            timeout=number(settings, "ACA_HUB_API_TIMEOUT", DEFAULT_TIMEOUT, minimum=1),
        )

    @property
    def configured(self) -> bool:
        return bool(self.url and self.token)

    def client(self, *, pool_size: int = 10) -> HubApi:
        """A :class:`HubApi` for these settings; raises ValueError for a URL that is not http(s)."""
        return HubApi(self.url, self.token, timeout=self.timeout, pool_size=pool_size)


def quote_name(name: str) -> str:
    """A user or server name as one URL path segment (``/`` and ``'`` quoted, unicode UTF-8 encoded)."""
    return quote(name, safe="")


def server_path(user: str, server_name: str = "") -> str:
    """The API path of ``user``'s default server (``server_name == ""``) or named server."""
    if server_name:
        return f"/users/{quote_name(user)}/servers/{quote_name(server_name)}"
    return f"/users/{quote_name(user)}/server"


class HubApi:
    """The hub REST API at ``base_url`` (e.g. ``https://hub.example.org/hub/api``), authenticated by a token.

    ``calls`` counts the requests made, by ``"METHOD kind"`` (``GET users``,
    ``DELETE server``, ...), so callers and tests can bound them. Thread
    safe: the culler shares one instance between its worker threads.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        pool_size: int = 10,
    ):
        if not base_url:
            raise ValueError("the hub API URL is empty")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the hub API URL must be http(s)://..., not {base_url!r}")
        if not token:
            raise ValueError("the hub API token is empty")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._token = token
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the token
        return f"HubApi({self.base_url!r})"

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HubApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        kind: str = "",
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
    ) -> requests.Response:
        """One request; raises :class:`HubUnavailable` or :class:`HubApiError` unless the status is in ``ok``."""
        url = self.base_url + path
        all_headers = {"Authorization": f"token {self._token}", "Accept": "application/json"}
        all_headers.update(headers or {})
        with self._lock:
            self.calls[f"{method} {kind or path}"] += 1
        try:
            response = self.session.request(
                method, url, params=params, json=json, headers=all_headers, timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout as e:
            raise HubUnavailable(f"JupyterHub API {method} {url} timed out after {self.timeout} s") from e
        except requests.RequestException as e:
            # the exception text names the URL and the OS error, never request headers
            raise HubUnavailable(f"JupyterHub API at {self.base_url} is unreachable ({method} {url}): {e}") from e
        if response.status_code not in ok:
            raise HubApiError(
                f"JupyterHub API {method} {url} answered {response.status_code}: {_reason(response)}",
                status=response.status_code,
            )
        return response

    def paginate(self, path: str, *, kind: str = "", params: dict[str, Any] | None = None,
                 page_size: int = 200) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, page by page (the hub may cap ``limit`` below ``page_size``)."""
        query = dict(params or {})
        offset = 0
        limit = page_size
        for _ in range(MAX_PAGES):
            query.update(offset=offset, limit=limit)
            body = self.request(
                "GET", path, kind=kind, params=query, headers={"Accept": PAGINATION_MEDIA_TYPE}
            ).json()
            if isinstance(body, list):  # a hub without pagination (< 2.0) answers a plain list
                yield from body
                return
            try:
                items = body["items"]
                following = body["_pagination"]["next"]
            except (KeyError, TypeError) as e:
                raise HubApiError(f"JupyterHub API GET {self.base_url}{path} answered an unexpected page: {e!r}") from e
            yield from items
            if not following:
                return
            # follow offset/limit, not next.url: behind a proxy the hub may build that URL with an internal host
            offset, limit = int(following["offset"]), int(following["limit"])
        raise HubApiError(f"JupyterHub API GET {self.base_url}{path} did not finish after {MAX_PAGES} pages")

    # --- the few calls the functions need -------------------------------------------------------

    def list_users(self, state: str | None = "ready", page_size: int = 200) -> Iterator[dict[str, Any]]:
        """User models; ``state="ready"``: only users with at least one ready server."""
        params = {"state": state} if state else {}
        return self.paginate("/users", kind="users", params=params, page_size=page_size)

    def get_user(self, user: str) -> dict[str, Any] | None:
        """One user model, ``None`` if the user no longer exists."""
        response = self.request("GET", f"/users/{quote_name(user)}", kind="user", ok=(200, 404))
        return None if response.status_code == 404 else response.json()

    def stop_server(self, user: str, server_name: str = "", *, remove: bool = False) -> int:
        """Ask the hub to stop a server (and forget a named one with ``remove``); 204 stopped, 202 stopping."""
        body = {"remove": True} if remove else None
        response = self.request("DELETE", server_path(user, server_name), kind="server", json=body, ok=(202, 204))
        return response.status_code

    def delete_user(self, user: str) -> None:
        """Delete a user with no running server (the hub runs each spawner's ``delete_forever``)."""
        self.request("DELETE", f"/users/{quote_name(user)}", kind="user", ok=(204,))


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "")[:200]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:200]
    return str(body)[:200]
