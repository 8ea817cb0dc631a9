"""The reconciler: a timer function that brings ARM and the status table back in line.

Queues lose nothing, but functions time out, deployments restart workers and
people delete things by hand, so now and then an app outlives its server or
a status never reaches an outcome. Each run, within a bounded number of ARM
calls:

1. lists the container apps of the resource group (paged; every page is one
   ARM call) and keeps those tagged ``aca-hub`` = this hub's id;
2. reads this hub's status entities (one table query);
3. marks entities stuck in ``queued``/``provisioning`` for more than
   ``ACA_STUCK_AFTER`` seconds as ``failed`` with a clear message
   (ETag-conditional: a conflict means the lifecycle moved it on, so it is
   left alone);
4. deletes apps that have no entity, or whose entity is ``stopped`` or
   ``failed`` (in ``ACA_STOP_MODE=stop`` a *stopped* app of a stopped server
   is its intended parked state and stays), never an app whose
   ``aca-generation`` tag is newer than its entity, never one younger than
   ``ACA_RECONCILE_GRACE`` (the lifecycle may still be working on it), and
   only after re-reading the entity just before the delete;
5. reports (logs, summary; does not act on) servers the hub or the table
   believes running whose app is gone.

Deletes are sent without waiting for the long-running operation (one ARM
call each; the next run skips apps still ``Deleting``). Throttling is
honoured by azure-core's retry policy (``Retry-After``); a 429 that outlasts
it ends the run early instead of hammering ARM. The entry point for the
timer trigger is :func:`run_reconciler`; :func:`reconcile` takes its
dependencies explicitly for tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from acaspawner.contract import Phase, Status
from acaspawner.naming import server_key

from .culler import parse_number
from .hubapi import HubApi, HubApiError
from .storage import StatusConflict

log = logging.getLogger(__name__)

NAME = "aca-reconciler"
# the app tags the lifecycle writes (functions/spec.py)
TAG_HUB = "aca-hub"
TAG_GENERATION = "aca-generation"
STUCK_PHASES = (Phase.QUEUED, Phase.PROVISIONING)
STUCK_ERROR_CODE = "StuckTimeout"


class ReconcilerError(RuntimeError):
    """A reconciler run could not do its work (settings, ARM unreachable, table unreadable)."""


class StatusStore(Protocol):
    """What the reconciler needs of :class:`functions.storage.FunctionStorage`."""

    def list_statuses(self, hub_id: str) -> list[Status]: ...

    def get_status(self, hub_id: str, server_key: str) -> Status | None: ...

    def write_status(self, status: Status) -> Status: ...


@dataclass(frozen=True)
class ReconcileOptions:
    """What one run may do (``ACA_HUB_ID``, ``ACA_RESOURCE_GROUP``, ``ACA_STUCK_AFTER``, ``ACA_RECONCILE_*``)."""

    hub_id: str
    resource_group: str
    stuck_after: float = 1200
    max_arm_calls: int = 100
    grace: float = 300  # leave apps and entries younger than this to the lifecycle
    stop_mode: str = "delete"
    hub_page_size: int = 200

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> ReconcileOptions:
        hub_id = (settings.get("ACA_HUB_ID") or "").strip()
        group = (settings.get("ACA_RESOURCE_GROUP") or "").strip()
        missing = [n for n, v in (("ACA_HUB_ID", hub_id), ("ACA_RESOURCE_GROUP", group)) if not v]
        if missing:
            raise ValueError(f"missing app settings {', '.join(missing)}")
        return cls(
            hub_id=hub_id,
            resource_group=group,
            stuck_after=parse_number(settings, "ACA_STUCK_AFTER", 1200, minimum=1),
            max_arm_calls=int(parse_number(settings, "ACA_RECONCILE_MAX_ARM_CALLS", 100, minimum=1)),
            grace=parse_number(settings, "ACA_RECONCILE_GRACE", 300),
            stop_mode=(settings.get("ACA_STOP_MODE") or "delete").strip().lower(),
            hub_page_size=int(parse_number(settings, "ACA_CULL_PAGE_SIZE", 200, minimum=1)),
        )


@dataclass
class ReconcileSummary:
    """What one reconciler run did; :meth:`line` is the one summary line it logs."""

    apps_seen: int = 0  # this hub's apps
    foreign_apps: int = 0  # other hubs' or untagged apps: never touched
    listing_complete: bool = False
    deleted: list[str] = field(default_factory=list)  # server keys (= app names) whose delete was accepted
    kept: int = 0
    marked_failed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # believed running, app gone: reported only
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    arm_calls: int = 0
    max_arm_calls: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        text = (
            f"{NAME}: deleted={len(self.deleted)} kept={self.kept} marked_failed={len(self.marked_failed)} "
            f"missing_apps={len(self.missing)} errors={len(self.errors)} apps_seen={self.apps_seen} "
            f"foreign_apps={self.foreign_apps} arm_calls={self.arm_calls}/{self.max_arm_calls} "
            f"seconds={self.seconds:.1f}"
        )
        if self.notes:
            text += " notes: " + "; ".join(self.notes)
        return text


class _BudgetExhausted(Exception):
    pass


class _Throttled(Exception):
    pass


class _Arm:
    """The container apps operations of one resource group, counted against the run's budget."""

    def __init__(self, container_apps: Any, resource_group: str, budget: int, summary: ReconcileSummary):
        self.ops = container_apps
        self.group = resource_group
        self.budget = budget
        self.summary = summary

    def _spend(self, what: str) -> None:
        if self.summary.arm_calls >= self.budget:
            raise _BudgetExhausted(what)
        self.summary.arm_calls += 1

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        """The apps of the resource group, one page (one ARM call) at a time."""
        pager = self.ops.list_by_resource_group(self.group).by_page()
        while True:
            self._spend("listing container apps")
            try:
                page = next(pager)
            except StopIteration:
                self.summary.arm_calls -= 1  # the end of the iterator made no request
                return
            yield [_as_dict(app) for app in page]
            if getattr(pager, "continuation_token", "") is None:
                return  # that was the last page: no probe that would cost budget

    def delete(self, name: str) -> bool:
        """Send the delete (without waiting for the operation); False when the app was already gone."""
        self._spend(f"deleting {name}")
        try:
            self.ops.begin_delete(self.group, name, polling=False)
        except ResourceNotFoundError:
            return False
        return True


def _as_dict(model: Any) -> dict[str, Any]:
    return model.as_dict() if hasattr(model, "as_dict") else dict(model)


def _is_throttling(error: AzureError) -> bool:
    if isinstance(error, HttpResponseError) and error.status_code == 429:
        return True
    return isinstance(error, (ServiceRequestError, ServiceResponseError))


def _app_created(app: dict[str, Any]) -> float | None:
    stamp = (app.get("systemData") or {}).get("createdAt")
    if not stamp:
        return None
    try:
        parsed = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo else None


def _generation(app: dict[str, Any]) -> int | None:
    try:
        return int((app.get("tags") or {}).get(TAG_GENERATION, ""))
    except ValueError:
        return None


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


class _Run:
    def __init__(self, options: ReconcileOptions, storage: StatusStore, arm: _Arm, now: float,
                 summary: ReconcileSummary):
        self.options = options
        self.storage = storage
        self.arm = arm
        self.now = now
        self.summary = summary
        self.apps: dict[str, dict[str, Any]] = {}  # this hub's apps, by name

    # -- 1. apps ---------------------------------------------------------------------------------

    def list_apps(self) -> None:
        """Fill :attr:`apps` page by page (what was listed stays usable when the budget runs out)."""
        for page in self.arm.pages():
            for app in page:
                if (app.get("tags") or {}).get(TAG_HUB) == self.options.hub_id:
                    self.apps[app["name"]] = app
                else:
                    self.summary.foreign_apps += 1
        self.summary.listing_complete = True

    # -- 3. stuck entities -----------------------------------------------------------------------

    def fail_stuck(self, statuses: dict[str, Status]) -> None:
        for key, status in statuses.items():
            if status.phase not in STUCK_PHASES:
                continue
            waited = self.now - status.updated
            if waited < self.options.stuck_after:
                continue
            message = (
                f"server was stuck in {status.phase.value} for {_age(waited)} (limit "
                f"{_age(self.options.stuck_after)}) and was marked failed by the reconciler; start it again"
            )
            try:
                statuses[key] = self.storage.write_status(
                    status.with_event(Phase.FAILED, message, url="", error_code=STUCK_ERROR_CODE)
                )
            except StatusConflict as e:
                log.info("Not failing %s: it changed since it was read (%s)", key, e)
                continue
            log.warning("Marked %s failed: %s", key, message)
            self.summary.marked_failed.append(key)

    # -- 4. apps without a live server -----------------------------------------------------------

    def reason_to_delete(self, app: dict[str, Any], status: Status | None) -> str | None:
        """Why ``app`` should go, or None to keep it."""
        properties = app.get("properties") or {}
        if status is None:
            created = _app_created(app)
            if created is not None and self.now - created < self.options.grace:
                return None
            return "it has no status entity (orphan)"
        generation = _generation(app)
        if generation is not None and generation > status.generation:
            return None  # a newer request made it; its status has not caught up yet
        if status.phase not in (Phase.STOPPED, Phase.FAILED):
            return None
        if self.now - status.updated < self.options.grace:
            return None
        if (
            status.phase is Phase.STOPPED
            and self.options.stop_mode == "stop"
            and properties.get("runningStatus") == "Stopped"
        ):
            return None  # parked on purpose: a later start restarts it
        return f"its server is {status.phase.value}"

    def delete_leftovers(self, apps: dict[str, dict[str, Any]], statuses: dict[str, Status]) -> None:
        for name, app in sorted(apps.items()):
            if (app.get("properties") or {}).get("provisioningState") == "Deleting":
                continue  # a delete is already under way
            reason = self.reason_to_delete(app, statuses.get(name))
            if reason is None:
                self.summary.kept += 1
                continue
            # the entity may have moved on since it was read (a new start): decide again on a fresh read
            reason = self.reason_to_delete(app, self.storage.get_status(self.options.hub_id, name))
            if reason is None:
                self.summary.kept += 1
                continue
            try:
                gone_already = not self.arm.delete(name)
            except AzureError as e:
                if _is_throttling(e):
                    raise _Throttled(f"deleting {name}: {e}") from e
                log.error("Could not delete container app %s: %s", name, e)
                self.summary.errors.append(f"delete {name}: {getattr(e, 'message', e)}")
                continue
            log.warning("Deleted container app %s: %s%s", name, reason, " (it was already gone)" if gone_already
                        else "")
            self.summary.deleted.append(name)

    # -- 5. servers whose app is gone ------------------------------------------------------------

    def report_missing(self, apps: dict[str, dict[str, Any]], statuses: dict[str, Status],
                       hub_servers: Iterable[tuple[str, str]] | None) -> None:
        believed: dict[str, str] = {}
        for key, status in statuses.items():
            if status.phase is Phase.RUNNING:
                believed[key] = "the status table"
        if hub_servers is not None:
            by_server = {(s.user, s.server_name): key for key, s in statuses.items()}
            for user, name in hub_servers:
                key = by_server.get((user, name)) or server_key(self.options.hub_id, user, name)
                believed[key] = f"the hub ({user}/{name})" if name else f"the hub ({user})"
        for key, source in sorted(believed.items()):
            if key not in apps:
                log.warning("Server %s is running according to %s, but its container app is gone", key, source)
                self.summary.missing.append(f"{key} ({source})")


def hub_running_servers(api: HubApi, page_size: int = 200) -> list[tuple[str, str]]:
    """(user, server name) of every server the hub counts as ready."""
    servers = []
    for user in api.list_users("ready", page_size=page_size):
        for name, server in (user.get("servers") or {}).items():
            if server.get("ready"):
                servers.append((user["name"], name))
    return servers


def reconcile(
    options: ReconcileOptions,
    storage: StatusStore,
    container_apps: Any,
    *,
    hub_servers: Callable[[], Iterable[tuple[str, str]]] | None = None,
    now: float | None = None,
) -> ReconcileSummary:
    """One reconciler run against explicit dependencies.

    ``container_apps`` is ``ContainerAppsAPIClient(...).container_apps`` (or
    anything with ``list_by_resource_group`` and ``begin_delete``);
    ``hub_servers`` lists the servers the hub believes running (optional).
    Raises :class:`ReconcilerError` when ARM or the table cannot be read at
    all; a spent budget or throttling ends the run early with a note instead.
    """
    started = time.monotonic()
    now = time.time() if now is None else now
    summary = ReconcileSummary(max_arm_calls=options.max_arm_calls)
    arm = _Arm(container_apps, options.resource_group, options.max_arm_calls, summary)
    run = _Run(options, storage, arm, now, summary)
    failure: Exception | None = None
    try:
        # apps first, then the table: an app created after its entity's read cannot be mistaken for an orphan
        try:
            run.list_apps()
        except _BudgetExhausted:
            summary.notes.append(f"ARM call budget ({options.max_arm_calls}) spent while listing apps; "
                                 "the rest waits for the next run")
        apps = run.apps
        summary.apps_seen = len(apps)
        statuses = {s.server_key: s for s in storage.list_statuses(options.hub_id)}
        run.fail_stuck(statuses)
        try:
            run.delete_leftovers(apps, statuses)
        except _BudgetExhausted as e:
            summary.notes.append(f"ARM call budget ({options.max_arm_calls}) spent before {e}; "
                                 "the rest waits for the next run")
        except _Throttled as e:
            summary.errors.append(str(e))
            summary.notes.append("ARM kept throttling (429) after retries; stopped early")
        if summary.listing_complete:
            servers = None
            if hub_servers is not None:
                try:
                    servers = list(hub_servers())
                except HubApiError as e:
                    summary.errors.append(f"hub API: {e}")
                    summary.notes.append("could not ask the hub which servers run")
            run.report_missing(apps, statuses, servers)
        else:
            summary.notes.append("app listing incomplete: missing apps not checked")
    except AzureError as e:
        summary.errors.append(f"{type(e).__name__}: {getattr(e, 'message', e)}")
        if _is_throttling(e):
            summary.notes.append("ARM kept throttling (429) or could not be reached; stopped early")
        failure = e
    finally:
        summary.seconds = time.monotonic() - started
        (log.error if summary.errors else log.info)("%s", summary.line())
    if failure is not None:
        raise ReconcilerError(f"reconciler run failed: {summary.errors[-1]}") from failure
    return summary


def run_reconciler(settings: Mapping[str, str], *, now: float | None = None) -> ReconcileSummary:
    """The reconciler timer's entry point: read the settings, reconcile once, return the summary.

    Uses the lifecycle's ARM client factory (:func:`functions.arm.make_client`,
    same endpoint, credential and retry policy) and status table; asks the hub
    which servers run when ``ACA_HUB_API_URL`` and ``ACA_HUB_API_TOKEN`` are set.
    """
    from .arm import make_client
    from .settings import Settings, SettingsError
    from .storage import FunctionStorage

    try:
        options = ReconcileOptions.from_settings(settings)
        config = Settings.from_environ(settings)
    except (ValueError, SettingsError) as e:
        raise ReconcilerError(f"invalid reconciler settings: {e}") from None
    client = make_client(config)
    hub: HubApi | None = None
    if settings.get("ACA_HUB_API_URL") and settings.get("ACA_HUB_API_TOKEN"):
        hub = HubApi(settings["ACA_HUB_API_URL"], settings["ACA_HUB_API_TOKEN"],
                     timeout=parse_number(settings, "ACA_HUB_API_TIMEOUT", 30, minimum=1))
    try:
        return reconcile(
            options,
            FunctionStorage(config.storage),
            client.container_apps,
            hub_servers=(lambda: hub_running_servers(hub, options.hub_page_size)) if hub else None,
            now=now,
        )
    finally:
        client.close()
        if hub is not None:
            hub.close()
