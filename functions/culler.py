"""The idle culler: a timer function that stops idle servers through the hub's REST API.

It behaves like jupyterhub-idle-culler, run from Azure Functions instead of as
a hub-managed process: list the users with ready servers (paginated), decide
per server from ``last_activity`` (falling back to ``started``) and the
optional maximum age, and stop the idle ones with ``DELETE
/users/{user}/server`` or ``/users/{user}/servers/{name}``. The hub stays the
source of truth: it runs ``AcaSpawner.stop()``, whose queued ``stop`` request
makes the lifecycle function remove the container app. The culler itself
never touches ARM.

Settings (``ACA_CULL_*``, ``ACA_HUB_API_URL``, ``ACA_HUB_API_TOKEN``) are
described in ``docs/settings.md`` and ``docs/culler.md``. The entry point for
the timer trigger is :func:`run_culler`; :func:`cull_idle` takes its
dependencies (a :class:`~functions.hubapi.HubApi`, options, a clock)
explicitly for tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from acaspawner.culler_service import SERVICE_NAME, culler_scopes

from .appsettings import InvalidSetting, count, flag, number
from .hubapi import HubApi, HubApiError, HubApiSettings, HubUnavailable
from .settings import CULL_USERS_DELETES_HOMES

log = logging.getLogger(__name__)


class CullerError(RuntimeError):
    """A culler run could not do its work (hub unreachable, token refused, bad settings)."""


# --- settings -------------------------------------------------------------------------------------


def read_page_size(settings: Mapping[str, str]) -> int:
    """``ACA_CULL_PAGE_SIZE``: users per ``GET /users`` page (the reconciler's listing uses it too)."""
    return count(settings, "ACA_CULL_PAGE_SIZE", 200)


@dataclass(frozen=True)
class CullOptions:
    """What to cull and how (the ``ACA_CULL_*`` settings)."""

    timeout: float = 3600  # idle seconds before a server is culled
    max_age: float = 0  # seconds since start after which a server is culled even if active; 0 = never
    cull_users: bool = False  # also delete users with no running server, idle past the timeout
    cull_admin_users: bool = True  # false: never touch admins (their servers nor the users)
    cull_default_servers: bool = True
    cull_named_servers: bool = True
    remove_named_servers: bool = False  # DELETE named servers with {"remove": true}: the hub forgets them
    concurrency: int = 10
    page_size: int = 200
    dry_run: bool = False  # log what would be culled, change nothing
    stop_wait: float = 60  # seconds to wait for a server the hub answered 202 (slow stop) for
    stop_poll_interval: float = 2

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> CullOptions:
        """The ``ACA_CULL_*`` settings; raises :class:`~functions.appsettings.InvalidSetting` naming a bad one."""
        cull_users = flag(settings, "ACA_CULL_USERS", False)
        if cull_users and flag(settings, "ACA_HOME_DELETE_ON_DELETE", False):
            raise InvalidSetting(CULL_USERS_DELETES_HOMES)
        return cls(
            timeout=number(settings, "ACA_CULL_TIMEOUT", 3600, minimum=1),
            max_age=number(settings, "ACA_CULL_MAX_AGE", 0),
            cull_users=cull_users,
            # deleting idle users spares admins unless asked: an admin idle for a weekend keeps their account
            cull_admin_users=flag(settings, "ACA_CULL_ADMIN_USERS", not cull_users),
            cull_default_servers=flag(settings, "ACA_CULL_DEFAULT_SERVERS", True),
            cull_named_servers=flag(settings, "ACA_CULL_NAMED_SERVERS", True),
            remove_named_servers=flag(settings, "ACA_REMOVE_NAMED_SERVERS", False),
            concurrency=count(settings, "ACA_CULL_CONCURRENCY", 10),
            page_size=read_page_size(settings),
            dry_run=flag(settings, "ACA_CULL_DRY_RUN", False),
            stop_wait=number(settings, "ACA_CULL_STOP_WAIT", 60),
        )


def hub_api_from_settings(settings: Mapping[str, str], *, pool_size: int = 10) -> HubApi:
    """The hub API client of ``ACA_HUB_API_URL`` / ``ACA_HUB_API_TOKEN`` (``ACA_HUB_API_TIMEOUT`` per request)."""
    hub = HubApiSettings.from_settings(settings)
    if not hub.url:
        raise CullerError("ACA_HUB_API_URL is not set: the culler needs the hub's REST API, e.g. https://hub/hub/api")
    if not hub.token:
        raise CullerError(f"ACA_HUB_API_TOKEN is not set: the culler needs the token of the {SERVICE_NAME} hub service")
    try:
        return hub.client(pool_size=pool_size)
    except ValueError as e:
        raise CullerError(f"invalid hub API settings: {e}") from None


# --- results --------------------------------------------------------------------------------------


class CullOutcome(StrEnum):
    CULLED = "culled"  # stopped (or, dry run, would be)
    STOPPING = "stopping"  # the hub answered 202 and it was still stopping after stop_wait
    KEPT = "kept"
    GONE = "gone"  # vanished between listing and culling
    ERROR = "error"


@dataclass
class CullSummary:
    """What one culler run did; :meth:`line` is the one summary line it logs."""

    dry_run: bool = False
    users_listed: int = 0
    servers_seen: int = 0
    culled: list[str] = field(default_factory=list)  # "user" or "user/server"
    stopping: list[str] = field(default_factory=list)  # culled, but still stopping when the run ended
    kept: int = 0
    users_deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    api_calls: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def line(self) -> str:
        return (
            f"{SERVICE_NAME}: culled={len(self.culled)} kept={self.kept} users_deleted={len(self.users_deleted)} "
            f"errors={len(self.errors)} still_stopping={len(self.stopping)} "
            f"users_listed={self.users_listed} servers_seen={self.servers_seen} hub_api_calls={self.api_calls} "
            f"dry_run={str(self.dry_run).lower()} seconds={self.seconds:.1f}"
        )

    def add_error(self, error: str) -> None:
        with self._lock:
            self.errors.append(error)

    def add(self, outcome: CullOutcome, name: str, error: str = "") -> None:
        with self._lock:
            self.servers_seen += 1
            if outcome is CullOutcome.CULLED:
                self.culled.append(name)
            elif outcome is CullOutcome.STOPPING:
                self.culled.append(name)
                self.stopping.append(name)
            elif outcome is CullOutcome.KEPT:
                self.kept += 1
            elif outcome is CullOutcome.ERROR:
                self.errors.append(f"{name}: {error}")


# --- the run --------------------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    """A hub timestamp (ISO 8601, ``Z`` or offset; naive = UTC) as an aware datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _seconds_since(now: datetime, value: str | None) -> float | None:
    when = parse_time(value)
    return None if when is None else (now - when).total_seconds()


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(seconds)
    return f"{seconds // 3600:02}:{seconds % 3600 // 60:02}:{seconds % 60:02}"


class _CullRun:
    """One culler run: the decisions of jupyterhub-idle-culler, with this project's options."""

    def __init__(self, api: HubApi, options: CullOptions, now: datetime, summary: CullSummary):
        self.api = api
        self.options = options
        self.now = now
        self.summary = summary
        self.unavailable: HubUnavailable | None = None

    def should_cull(self, what: str, inactive: float | None, age: float | None) -> bool:
        options = self.options
        if inactive is not None and inactive >= options.timeout:
            log.info("%s %s (inactive for %s)", "Would cull" if options.dry_run else "Culling", what, _fmt(inactive))
            return True
        if options.max_age and age is not None and age >= options.max_age:
            log.info(
                "%s %s (age %s, inactive for %s)",
                "Would cull" if options.dry_run else "Culling", what, _fmt(age), _fmt(inactive),
            )
            return True
        log.debug("Not culling %s (age %s, inactive for %s)", what, _fmt(age), _fmt(inactive))
        return False

    def handle_server(self, user: dict[str, Any], name: str, server: dict[str, Any]) -> CullOutcome:
        options = self.options
        label = f"{user['name']}/{name}" if name else user["name"]
        if (name and not options.cull_named_servers) or (not name and not options.cull_default_servers):
            return CullOutcome.KEPT
        if server.get("pending"):
            log.info("Not culling %s: %s is pending", label, server["pending"])
            return CullOutcome.KEPT
        if not server.get("ready", bool(server.get("url"))):
            log.info("Not culling %s: not ready", label)
            return CullOutcome.KEPT
        age = _seconds_since(self.now, server.get("started"))
        inactive = _seconds_since(self.now, server.get("last_activity"))
        if inactive is None:
            inactive = age  # no activity recorded yet: idle since it started
        if not self.should_cull(f"server {label}", inactive, age):
            return CullOutcome.KEPT
        if options.dry_run:
            return CullOutcome.CULLED
        remove = bool(name) and options.remove_named_servers
        try:
            status = self.api.stop_server(user["name"], name, remove=remove)
        except HubApiError as e:
            if e.status == 404:
                log.info("Server %s is already gone", label)
                return CullOutcome.GONE
            raise
        if status == 202:
            log.warning("Server %s is slow to stop; waiting up to %.0f s", label, options.stop_wait)
            return CullOutcome.CULLED if self.wait_stopped(user["name"], name) else CullOutcome.STOPPING
        return CullOutcome.CULLED

    def wait_stopped(self, user: str, name: str) -> bool:
        """Poll the user until the server is neither pending nor ready (bounded by ``stop_wait``)."""
        deadline = time.monotonic() + self.options.stop_wait
        while True:
            model = self.api.get_user(user)
            server = None if model is None else (model.get("servers") or {}).get(name)
            if not server or not (server.get("pending") or server.get("ready")):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("Server %s/%s is still %s after %.0f s", user, name,
                            server.get("pending") or "ready", self.options.stop_wait)
                return False
            time.sleep(min(self.options.stop_poll_interval, remaining))

    def handle_user(self, user: dict[str, Any]) -> None:
        options = self.options
        if self.unavailable is not None:
            return
        if user.get("admin") and not options.cull_admin_users:
            servers = user.get("servers") or {}
            log.debug("Not culling admin %s (%d servers)", user["name"], len(servers))
            for name in servers:
                self.summary.add(CullOutcome.KEPT, f"{user['name']}/{name}" if name else user["name"])
            return
        still_running = 0
        for name, server in (user.get("servers") or {}).items():
            label = f"{user['name']}/{name}" if name else user["name"]
            try:
                outcome = self.handle_server(user, name, server)
            except HubUnavailable as e:
                self.unavailable = e
                outcome = CullOutcome.ERROR
                error = str(e)
            except Exception as e:  # one bad server must not stop the run
                log.exception("Error culling server %s", label)
                outcome, error = CullOutcome.ERROR, str(e)
            else:
                error = ""
            if outcome is not CullOutcome.GONE:
                self.summary.add(outcome, label, error)
            if outcome in (CullOutcome.KEPT, CullOutcome.STOPPING, CullOutcome.ERROR):
                still_running += 1
        if options.cull_users and not still_running and self.unavailable is None:
            self.maybe_delete_user(user)

    def maybe_delete_user(self, user: dict[str, Any]) -> None:
        name = user["name"]
        age = _seconds_since(self.now, user.get("created"))
        inactive = _seconds_since(self.now, user.get("last_activity"))
        if inactive is None:
            inactive = age
        if not self.should_cull(f"user {name}", inactive, age):
            return
        if not self.options.dry_run:
            try:
                self.api.delete_user(name)
            except HubUnavailable as e:
                self.unavailable = e
                self.summary.add_error(f"user {name}: {e}")
                return
            except HubApiError as e:
                if e.status != 404:
                    log.error("Error deleting user %s: %s", name, e)
                    self.summary.add_error(f"user {name}: {e}")
                    return
        with self.summary._lock:
            self.summary.users_deleted.append(name)


def cull_idle(api: HubApi, options: CullOptions, *, now: datetime | None = None) -> CullSummary:
    """Cull idle servers (and, with ``cull_users``, idle users) of the hub behind ``api``.

    Lists every candidate first (all pages), then culls with
    ``options.concurrency`` workers, so stopping servers cannot shift the
    pages still to be read. Raises :class:`CullerError` when the hub cannot
    be listed (unreachable, token refused), before anything is stopped, or
    when it becomes unreachable during the run.
    """
    started = time.monotonic()
    now = now or datetime.now(UTC)
    summary = CullSummary(dry_run=options.dry_run)
    calls_before = api.total_calls
    try:
        users = list(api.list_users("ready", page_size=options.page_size))
        if options.cull_users:
            # users without any running server are not "ready": list them too, so idle ones can go
            seen = {u["name"] for u in users}
            users += [u for u in api.list_users("inactive", page_size=options.page_size) if u["name"] not in seen]
    except HubUnavailable as e:
        summary.errors.append(str(e))
        _finish(summary, api, calls_before, started)
        raise CullerError(f"culler run failed, nothing was culled: {e}") from e
    except HubApiError as e:
        summary.errors.append(str(e))
        _finish(summary, api, calls_before, started)
        hint = ""
        if e.status in (401, 403):
            scopes = ", ".join(culler_scopes(options.cull_users))
            hint = f" (the {SERVICE_NAME} service's token must be valid and have the scopes {scopes})"
        raise CullerError(f"culler run failed, nothing was culled: {e}{hint}") from e
    summary.users_listed = len(users)

    run = _CullRun(api, options, now, summary)
    with ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="culler") as pool:
        for future in [pool.submit(run.handle_user, user) for user in users]:
            try:
                future.result()
            except Exception as e:  # handle_user catches per server; this is a bug guard
                log.exception("Error culling a user")
                summary.add_error(str(e))
    _finish(summary, api, calls_before, started)
    if run.unavailable is not None:
        raise CullerError(f"culler run aborted, the hub became unreachable: {run.unavailable}") from run.unavailable
    return summary


def _finish(summary: CullSummary, api: HubApi, calls_before: int, started: float) -> None:
    summary.api_calls = api.total_calls - calls_before
    summary.seconds = time.monotonic() - started
    (log.error if summary.errors else log.info)("%s", summary.line())


def run_culler(settings: Mapping[str, str], *, now: datetime | None = None) -> CullSummary:
    """The culler timer's entry point: read the settings, cull once, return the summary.

    ``settings`` are the app settings (``os.environ`` in Azure Functions).
    Raises :class:`CullerError` on missing settings or an unreachable hub.
    """
    try:
        options = CullOptions.from_settings(settings)
    except ValueError as e:
        raise CullerError(f"invalid culler settings: {e}") from None
    with hub_api_from_settings(settings, pool_size=options.concurrency) as api:
        return cull_idle(api, options, now=now)
