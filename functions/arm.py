"""ARM access for the user apps: the client, its retry policy, and a small gateway over it.

The gateway sends writes without following their long-running operations
(see :mod:`functions.lifecycle` for how completion is observed).

In Azure the client authenticates with ``DefaultAzureCredential`` (the
functions' managed identity). With ``ACA_ARM_ENDPOINT`` set it talks to
another ARM endpoint, e.g. the local emulator, trusting ``ACA_ARM_CA_BUNDLE``
and sending ``ACA_ARM_TOKEN`` as the bearer token; nothing else changes, so
the emulator exercises the production code path.

Transient failures (429 with Retry-After, 5xx, timeouts, connection errors)
are retried by azure-core's ``RetryPolicy`` within one invocation; whatever
is still failing is classified here as :class:`TransientArmError` (the
message is redelivered) or :class:`TerminalArmError` (the server fails with
ARM's code and message).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.core.polling import PollingMethod
from azure.core.rest import HttpRequest
from azure.mgmt.appcontainers import ContainerAppsAPIClient
from azure.mgmt.core.exceptions import ARMErrorFormat

from acaspawner.http_env import transport_options
from acaspawner.identity import azure_credential

from .settings import Settings

log = logging.getLogger(__name__)

# Retries of one request inside an invocation: ARM's throttling refills in seconds, and
# Retry-After (honoured by azure-core) says how long; beyond this the host redelivers.
RETRY_TOTAL = 8
RETRY_BACKOFF_FACTOR = 1.0
RETRY_BACKOFF_MAX = 30
CONNECTION_TIMEOUT = 10
READ_TIMEOUT = 60

# 409: another operation on the app is still in progress (e.g. a delete racing a create)
TRANSIENT_STATUS = {408, 409, 429}
ARM_PUBLIC = "https://management.azure.com"


class ArmFailure(Exception):
    """An ARM operation that did not succeed; ``code`` and ``message`` are ARM's own."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class TransientArmError(ArmFailure):
    """Worth trying again later: throttling, server errors, timeouts."""

    @property
    def throttled(self) -> bool:
        """ARM kept answering 429, or could not be reached, beyond azure-core's retries: stop asking for now."""
        return self.status == 429 or self.code in ("ServiceRequestError", "ServiceResponseError")


class TerminalArmError(ArmFailure):
    """ARM refused the request itself (invalid image, cpu/memory, quota): retrying cannot help."""


def classify(error: AzureError) -> ArmFailure:
    """The :class:`ArmFailure` an azure-core exception stands for."""
    if isinstance(error, HttpResponseError):
        odata = error.error
        code = (odata.code if odata else None) or (error.reason or "HttpResponseError")
        message = (odata.message if odata else None) or str(error.message)
        status = error.status_code
        if status is not None and (status in TRANSIENT_STATUS or status >= 500):
            return TransientArmError(code, message, status)
        return TerminalArmError(code, message, status)
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return TransientArmError(type(error).__name__, str(error.message))
    return TransientArmError(type(error).__name__, str(getattr(error, "message", error)))


_RESOURCE_ID = re.compile(r"/subscriptions/[^\s'\"]+", re.IGNORECASE)
_GUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)


def for_users(message: str) -> str:
    """ARM's message without subscription or resource ids, fit for the spawn page (the logs keep the original)."""
    return _GUID.sub("<id>", _RESOURCE_ID.sub("<Azure resource>", message))


class StaticTokenCredential:
    """A fixed bearer token (the emulator's); never used against Azure."""

    def __init__(self, token: str, lifetime: int = 3600):
        self._token = token
        self._lifetime = lifetime

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + self._lifetime)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, int(time.time()) + self._lifetime)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "StaticTokenCredential(***)"


def make_credential(settings: Settings) -> Any:
    if settings.arm_token:
        return StaticTokenCredential(settings.arm_token)
    return azure_credential(settings.client_id)


def make_client(
    settings: Settings,
    *,
    retry_total: int = RETRY_TOTAL,
    retry_backoff_factor: float = RETRY_BACKOFF_FACTOR,
    retry_backoff_max: int = RETRY_BACKOFF_MAX,
    retry_timeout: float = 60.0,
) -> ContainerAppsAPIClient:
    """A ``ContainerAppsAPIClient`` for the configured subscription, endpoint and retry budget."""
    retry = RetryPolicy(
        retry_total=retry_total,
        # azure-core also caps each kind of retry (status retries default to 3): lift them to the total
        retry_status=retry_total,
        retry_connect=retry_total,
        retry_read=retry_total,
        retry_backoff_factor=retry_backoff_factor,
        retry_backoff_max=retry_backoff_max,
        timeout=retry_timeout,
    )
    kwargs: dict[str, Any] = {
        "retry_policy": retry,
        "connection_timeout": CONNECTION_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
    }
    if settings.arm_endpoint:
        kwargs["base_url"] = settings.arm_endpoint
        # the emulator has no AAD audience of its own; keep the ARM scope
        kwargs["credential_scopes"] = ["https://management.azure.com/.default"]
    kwargs.update(transport_options(settings.arm_ca_bundle or True))
    return ContainerAppsAPIClient(make_credential(settings), settings.subscription_id, **kwargs)


def _as_dict(model: Any) -> dict[str, Any]:
    if model is None:
        return {}
    if hasattr(model, "as_dict"):
        return model.as_dict()
    return dict(model)


def app_fqdn(app: dict[str, Any]) -> str:
    """The ingress FQDN of an app (REST-shaped dict), or ``""``."""
    ingress = (app.get("properties") or {}).get("configuration", {}).get("ingress") or {}
    return ingress.get("fqdn") or ""


def app_generation(app: dict[str, Any]) -> int | None:
    """The request generation an app was last created or updated for (its tag)."""
    from .app_body import TAG_GENERATION

    try:
        return int((app.get("tags") or {}).get(TAG_GENERATION, ""))
    except ValueError:
        return None


@dataclass(frozen=True)
class Accepted:
    """What ARM answered to a write that it runs as a long-running operation.

    ``operation_url`` is where the operation reports its outcome
    (``Azure-AsyncOperation`` for a PUT, ``Location`` otherwise); ``done`` is
    True when ARM finished synchronously (e.g. 204 for deleting an app that
    does not exist).
    """

    done: bool
    operation_url: str = ""
    retry_after: float | None = None


def _error_code(response: Any) -> str:
    """ARM's error code in a refusal's body, or ``""``."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return ""
    return str(error.get("code") or "") if isinstance(error, dict) else ""


def _retry_after(headers: Any) -> float | None:
    try:
        value = float(headers.get("Retry-After", ""))
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


class FirstAnswer(PollingMethod):
    """A polling method that keeps ARM's first answer to a long-running write and never polls.

    ``polling=False`` is no substitute: the SDK then deserializes the first
    answer as the finished resource, and Stop and Start answer 202 with a
    ``Location`` and no body (Microsoft.App 2026-07-01, ``ContainerApps_Stop.json``).
    """

    def __init__(self) -> None:
        self.response: Any = None

    def initialize(self, client: Any, initial_response: Any, deserialization_callback: Any) -> None:
        self.response = initial_response.http_response

    def run(self) -> None:
        pass

    def status(self) -> str:
        return "Accepted"

    def finished(self) -> bool:
        return True

    def resource(self) -> None:
        return None


def operations_under(settings: Settings) -> str:
    """Where ARM reports the operations of these functions' subscription: the only URLs they read with their token."""
    base = (settings.arm_endpoint or ARM_PUBLIC).rstrip("/")
    return f"{base}/subscriptions/{settings.subscription_id}/providers/Microsoft.App/"


def is_under(url: str, prefix: str) -> bool:
    """True when ``url`` is an https URL on ``prefix``'s host (and port) whose path lies below ``prefix``'s."""
    try:
        given, allowed = urlsplit(url), urlsplit(prefix)
    except ValueError:
        return False
    path = unquote(given.path)
    return (given.scheme == "https" and not given.username and not given.password
            and given.netloc.lower() == allowed.netloc.lower()
            and path.lower().startswith(allowed.path.lower())
            and not any(part in (".", "..") for part in path.split("/")))


class BudgetExhausted(Exception):
    """The ARM calls one run may make are spent (``ACA_RECONCILE_MAX_ARM_CALLS``)."""


@dataclass
class CallBudget:
    """A number of ARM calls; every call of a gateway that has one spends one."""

    limit: int
    spent: int = 0

    def spend(self, what: str) -> None:
        if self.spent >= self.limit:
            raise BudgetExhausted(what)
        self.spent += 1


@dataclass
class ArmApps:
    """Send writes for, list and read the container apps of one resource group.

    Writes never wait for their long-running operation: each sends one
    request and returns what ARM accepted (:class:`Accepted`); completion is
    observed later, by listing the apps (:meth:`list`) or reading the
    operation (:meth:`operation_error`). Every method raises
    :class:`ArmFailure` subclasses only. An operation URL is read only when it
    lies on the ARM host under this subscription's Microsoft.App operations
    (``operations_under``): the client sends the functions' ARM token with it.
    """

    client: ContainerAppsAPIClient
    resource_group: str
    operations_under: str
    budget: CallBudget | None = None  # a run's budget of ARM calls (the reconciler's); None: unbounded

    @classmethod
    def for_settings(cls, client: ContainerAppsAPIClient, settings: Settings) -> ArmApps:
        return cls(client, settings.resource_group, operations_under(settings))

    def _spend(self, what: str) -> None:
        if self.budget is not None:
            self.budget.spend(what)

    def _send(self, begin: Any, *args: Any, request_id: str = "") -> Accepted:
        self._spend(f"{begin.__name__} {args[0]}")
        first = FirstAnswer()
        # the SDK sends the initial request only and hands ARM's answer to ``first`` as it is; ``request_id``
        # (the hub's request, as a GUID) goes to ARM as x-ms-client-request-id, where the activity log shows it
        begin(self.resource_group, *args, polling=first, **({"request_id": request_id} if request_id else {}))
        response = first.response
        url = response.headers.get("Azure-AsyncOperation") or response.headers.get("Location") or ""
        done = response.status_code == 204 or (response.status_code == 200 and not url)
        return Accepted(done=done, operation_url=url, retry_after=_retry_after(response.headers))

    def send_create_or_update(self, name: str, body: dict[str, Any], request_id: str = "") -> Accepted:
        """PUT the app; ARM answers at once with the app (``provisioningState`` InProgress)."""
        try:
            return self._send(self.client.container_apps.begin_create_or_update, name, body, request_id=request_id)
        except AzureError as e:
            raise classify(e) from e

    def send_delete(self, name: str, request_id: str = "") -> Accepted:
        """DELETE the app; ``done`` when there was none (ARM answers 204)."""
        try:
            return self._send(self.client.container_apps.begin_delete, name, request_id=request_id)
        except ResourceNotFoundError:
            return Accepted(done=True)
        except AzureError as e:
            raise classify(e) from e

    def send_stop(self, name: str, request_id: str = "") -> Accepted:
        """Stop the app (it keeps its configuration); ``done`` when there is none."""
        try:
            return self._send(self.client.container_apps.begin_stop, name, request_id=request_id)
        except ResourceNotFoundError:
            return Accepted(done=True)
        except AzureError as e:
            raise classify(e) from e

    def send_start(self, name: str, request_id: str = "") -> Accepted:
        """Start an app that was stopped (``ACA_STOP_MODE=stop``)."""
        try:
            return self._send(self.client.container_apps.begin_start, name, request_id=request_id)
        except AzureError as e:
            raise classify(e) from e

    def get(self, name: str) -> dict[str, Any] | None:
        self._spend(f"reading {name}")
        try:
            return _as_dict(self.client.container_apps.get(self.resource_group, name))
        except ResourceNotFoundError:
            return None
        except AzureError as e:
            raise classify(e) from e

    def environment_is_internal(self, environment_id: str) -> bool:
        """Whether ARM reports the managed environment as internal (its external ingress is the virtual network's)."""
        parts = environment_id.strip("/").split("/")
        try:
            group = parts[[p.lower() for p in parts].index("resourcegroups") + 1]
        except (ValueError, IndexError):
            raise TerminalArmError("InvalidEnvironmentId", f"not a managed environment id: {environment_id}") from None
        self._spend(f"reading environment {parts[-1]}")
        try:
            environment = _as_dict(self.client.managed_environments.get(group, parts[-1]))
        except AzureError as e:
            raise classify(e) from e
        return bool(((environment.get("properties") or {}).get("vnetConfiguration") or {}).get("internal"))

    def list(self) -> list[dict[str, Any]]:
        """Every app of the resource group (one ARM read per page)."""
        return [app for page in self.pages() for app in page]

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        """The apps of the resource group, one page (one ARM read) at a time: what was read stays usable
        when the budget runs out (:class:`BudgetExhausted`) before the last page.

        Read as ARM's JSON through the client's pipeline (its credential, retries, Retry-After), without
        the SDK's model objects: at a thousand apps those took most of a CPU-second per listing. A
        ``nextLink`` is followed only below this listing's own URL, where the ARM token may go.
        """
        config = self.client._config  # the pinned SDK's subscription and api-version (tests/functions: asserted)
        url: str | None = (f"/subscriptions/{config.subscription_id}/resourceGroups/{self.resource_group}"
                           f"/providers/Microsoft.App/containerApps?api-version={config.api_version}")
        try:
            while url:
                self._spend("listing container apps")
                response = self.client.send_request(HttpRequest("GET", url))
                listing = response.request.url.split("?", 1)[0]  # absolute, on the client's ARM endpoint
                if response.status_code != 200:
                    raise HttpResponseError(response=response, error_format=ARMErrorFormat)
                data = response.json()
                if not isinstance(data, dict):
                    raise TransientArmError("InvalidListing", "ARM answered the listing with no JSON object")
                yield [app for app in data.get("value") or () if isinstance(app, dict)]
                url = data.get("nextLink")
                if url and not is_under(url, listing):
                    log.warning("not following a nextLink outside %s: the listing stops there", listing)
                    return
        except AzureError as e:
            raise classify(e) from e
        except ValueError as e:  # not JSON at all
            raise TransientArmError("InvalidListing", f"ARM's listing could not be read: {e}") from e

    def operation_error(self, operation_url: str) -> ArmFailure | None:
        """ARM's own code and message for a failed operation (one read), or None if it says nothing.

        Only the operation's own answer counts (200 with status Failed or
        Canceled): ``send_request`` returns ARM's refusals (403 when the
        identity may not read operations, 404 for an expired one) instead of
        raising, and their error is about the read, not the operation.
        """
        if not operation_url:
            return None
        if not is_under(operation_url, self.operations_under):
            log.warning("not reading an operation outside %s (host %s): the ARM token goes only there",
                        self.operations_under, urlsplit(operation_url).netloc or "?")
            return None
        self._spend("reading an operation")
        try:
            response = self.client.send_request(HttpRequest("GET", operation_url))
            if response.status_code != 200:
                log.warning("could not read the operation's outcome: HTTP %s %s", response.status_code,
                            _error_code(response))
                return None
            data = response.json()
        except (AzureError, ValueError) as e:  # the caller then says it plainly, without ARM's words
            log.warning("could not read the operation's outcome: %s", getattr(e, "message", e))
            return None
        if not isinstance(data, dict) or data.get("status") not in ("Failed", "Canceled"):
            return None
        error = data.get("error") or {}
        if not isinstance(error, dict) or not error.get("code"):
            return None
        return TerminalArmError(str(error["code"]), str(error.get("message") or ""), response.status_code)

    def close(self) -> None:
        self.client.close()
