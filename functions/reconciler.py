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
   only after re-reading the entity just before the delete; when the hub
   API is configured, also the app of a server whose entity is still
   active but which the hub no longer counts (it gave up on the start, or
   its stop was lost) once the entity is older than the grace period, and
   the entity then says so (``stopped``, ``NotInHub``);
5. reports (logs, summary; does not act on) servers the hub or the table
   believes running whose app is gone;
6. repairs the capacity ledger (:mod:`functions.capacity_repair`): adopts apps
   that hold cores without a reservation, releases reservations no app or
   active server holds, recounts each environment, and reports per
   environment servers, cores in use and cores left (in the summary line);
7. drains the lifecycle's poison queue (``<queue>-poison``): logs every
   message's id, insertion time, dequeue count and why it was poisoned (never
   its body: it holds a JupyterHub API token), and deletes those older than
   the sealing maximum age (``ACA_SEAL_MAX_AGE``), which nothing can replay,
   so no token sits in storage for the queue's default 7 days. This step runs
   first and on its own: ARM trouble does not keep it from running.

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
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from acaspawner import wire
from acaspawner.contract import ContractError, Phase, Status
from acaspawner.naming import server_key
from acaspawner.sealing import DEFAULT_MAX_AGE, ExpiredMessage, Sealer, TamperedMessage, UnknownKey

from .appsettings import SettingsReader, count, number
from .arm import app_generation, make_client
from .capacity import CapacityLedger
from .capacity_repair import CapacityReport, repair_capacity
from .culler import read_page_size
from .followup import FollowUp, Keyring, read_payload
from .hubapi import HubApi, HubApiError, HubApiSettings
from .policy import key_belongs_to
from .settings import (
    DEFAULT_MAX_DEQUEUE_COUNT,
    Settings,
    SettingsError,
    read_host_limits,
    read_hub_id,
    read_resource_group,
    read_seal_max_age,
    read_stop_mode,
)
from .spec import TAG_HUB
from .storage import FunctionStorage, StatusConflict

log = logging.getLogger(__name__)

NAME = "aca-reconciler"
STUCK_PHASES = (Phase.QUEUED, Phase.PROVISIONING)
STUCK_ERROR_CODE = "StuckTimeout"
NOT_IN_HUB = "the hub no longer counts its server as active"
#: a hub answer that would have the reconciler remove more active servers than this (and more than half of
#: them) is not believed: a restored database or a wrong ACA_HUB_API_URL must not delete a class's servers
FORGOTTEN_AT_MOST = 5


def implausible_hub_answer(hub_active: set[tuple[str, str]], statuses: dict[str, Status], now: float,
                           grace: float) -> str:
    """Why the hub's list of active servers is not believed (``""``: it is)."""
    active = [s for s in statuses.values() if s.phase.is_active and now - s.updated >= grace]
    forgotten = [s for s in active if (s.user, s.server_name) not in hub_active]
    if not forgotten:
        return ""
    if not hub_active:
        return (f"the hub lists no active server while {len(active)} are active in the status table "
                "(a new or restored hub database, or ACA_HUB_API_URL naming another hub?)")
    if len(forgotten) > max(FORGOTTEN_AT_MOST, len(active) / 2):
        return f"the hub does not list {len(forgotten)} of the {len(active)} servers active in the status table"
    return ""
# poison queue: one receive returns at most 32 messages; a run looks at a bounded number
POISON_PAGE = 32
POISON_MAX_PER_RUN = 256
# seconds a received poison message stays invisible if the run dies before releasing it (see _PoisonDrain)
POISON_VISIBILITY = 60


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
    # poison messages older than this (since sealing) can no longer be replayed and are deleted
    seal_max_age: float = DEFAULT_MAX_AGE
    poison_max_per_run: int = POISON_MAX_PER_RUN
    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT  # host.json: deliveries before the host poisons

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> ReconcileOptions:
        """Read the settings; raises ValueError naming the missing ones, or the first bad one."""
        reader = SettingsReader(settings)
        hub_id, group = reader.read(read_hub_id, ""), reader.read(read_resource_group, "")
        if reader.missing:
            raise ValueError(f"missing app settings {', '.join(reader.missing)}")
        return cls(
            hub_id=hub_id,
            resource_group=group,
            stuck_after=number(settings, "ACA_STUCK_AFTER", 1200, minimum=1),
            max_arm_calls=count(settings, "ACA_RECONCILE_MAX_ARM_CALLS", 100),
            grace=number(settings, "ACA_RECONCILE_GRACE", 300),
            stop_mode=read_stop_mode(settings),
            hub_page_size=read_page_size(settings),
            seal_max_age=read_seal_max_age(settings),
            max_dequeue_count=read_host_limits().max_dequeue_count,
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
    poison_seen: int = 0  # poison messages looked at (and logged) this run
    poison_deleted: int = 0  # of those, deleted (older than the sealing maximum age)
    seconds: float = 0.0
    capacity: CapacityReport | None = None  # per environment: servers, cores in use, cores left

    def line(self) -> str:
        text = (
            f"{NAME}: deleted={len(self.deleted)} kept={self.kept} marked_failed={len(self.marked_failed)} "
            f"missing_apps={len(self.missing)} errors={len(self.errors)} apps_seen={self.apps_seen} "
            f"foreign_apps={self.foreign_apps} arm_calls={self.arm_calls}/{self.max_arm_calls} "
            f"poison_seen={self.poison_seen} poison_deleted={self.poison_deleted} "
            f"seconds={self.seconds:.1f}"
        )
        if self.capacity is not None:
            text += " " + self.capacity.text()
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
        """Send the delete (without waiting for the operation); False when there was no app to delete.

        ARM answers a DELETE of an app that does not exist with 204 ("Resource does not exist"),
        not 404; 404 comes only when the resource group itself is gone. Both mean False.
        """
        self._spend(f"deleting {name}")
        answered: list[int] = []

        def status(pipeline_response: Any, deserialized: Any, headers: Any) -> None:
            answered.append(pipeline_response.http_response.status_code)

        try:
            # polling=False: result() sends nothing more, it hands ARM's first answer to ``status``
            self.ops.begin_delete(self.group, name, polling=False, cls=status).result()
        except ResourceNotFoundError:
            return False
        return answered != [204]


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


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


class _ReconcileRun:
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

    def reason_to_delete(self, app: dict[str, Any], status: Status | None,
                         hub_active: set[tuple[str, str]] | None = None) -> str | None:
        """Why ``app`` should go, or None to keep it.

        ``hub_active``: the (user, server) pairs the hub counts active, when it could be asked.
        """
        properties = app.get("properties") or {}
        if status is None:
            created = _app_created(app)
            if created is not None and self.now - created < self.options.grace:
                return None
            return "it has no status entity (orphan)"
        generation = app_generation(app)
        if generation is not None and generation > status.generation:
            return None  # a newer request made it; its status has not caught up yet
        if status.phase.is_active:
            # the hub is the source of truth: it gave up on this start, or its stop was lost
            forgotten = hub_active is not None and (status.user, status.server_name) not in hub_active
            if forgotten and self.now - status.updated >= self.options.grace:
                return NOT_IN_HUB
            return None
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

    def delete_leftovers(self, apps: dict[str, dict[str, Any]], statuses: dict[str, Status],
                         hub_active: set[tuple[str, str]] | None = None) -> None:
        for name, app in sorted(apps.items()):
            if (app.get("properties") or {}).get("provisioningState") == "Deleting":
                continue  # a delete is already under way
            reason = self.reason_to_delete(app, statuses.get(name), hub_active)
            if reason is None:
                self.summary.kept += 1
                continue
            # the entity may have moved on since it was read (a new start): decide again on a fresh read
            fresh = self.storage.get_status(self.options.hub_id, name)
            reason = self.reason_to_delete(app, fresh, hub_active)
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
            if reason == NOT_IN_HUB and fresh is not None:
                self._record_forgotten(fresh)

    def _record_forgotten(self, status: Status) -> None:
        """Say in the server's status why its app went (ETag-conditional: a newer request wins)."""
        message = "the hub no longer counts this server as running, so the reconciler removed its container app"
        try:
            self.storage.write_status(status.with_event(Phase.STOPPED, message, url="", error_code="NotInHub",
                                                        step=""))
        except StatusConflict:
            log.info("Not recording why the app of %s went: its status changed meanwhile", status.server_key)

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


def hub_active_servers(api: HubApi, page_size: int = 200) -> list[tuple[str, str, bool]]:
    """(user, server name, ready) of every server the hub counts as active: ready, or pending a start or stop."""
    servers = []
    for user in api.list_users("active", page_size=page_size):
        for name, server in (user.get("servers") or {}).items():
            servers.append((user["name"], name, bool(server.get("ready"))))
    return servers


# -- 7. the poison queue ----------------------------------------------------------------------------


class PoisonQueue(Protocol):
    """What the reconciler needs of the poison queue's ``QueueClient`` (:attr:`FunctionStorage.poison`)."""

    def receive_messages(self, **kwargs: Any) -> Any: ...

    def delete_message(self, message: Any, pop_receipt: str | None = None, **kwargs: Any) -> None: ...

    def update_message(self, message: Any, pop_receipt: str | None = None, content: Any = None,
                       **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class PoisonVerdict:
    """Why a message was poisoned, told without any part of its body."""

    reason: str
    # authentic (it opened under a configured key) and sealed longer ago than the maximum age
    expired: bool = False


NO_KEYS = "not classified: ACA_SEALING_KEYS not set"


def classify_poison(body: str | bytes, sealer: Sealer | Keyring | None, *, poisoned_at: float, now: float, hub_id: str,
                    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT) -> PoisonVerdict:
    """Why the poison message ``body`` was poisoned, as the lifecycle saw it when it was poisoned.

    The message is opened as of ``poisoned_at`` (its insertion time on the poison
    queue), so a request that was fine then but has aged since still reads as
    "failed every delivery", not "expired". The reason is built from fixed
    texts, exception class names and, for an authentic message, its op, server
    key, generation and hub (none of them secret): never from the body or from
    an exception message, which might quote it.
    """
    try:
        sealed = wire.decode(body)
    except wire.WireError:
        return PoisonVerdict("not valid base64: the Functions host poisons such a body at once, without "
                             "calling the function")
    if sealer is None:
        return PoisonVerdict(NO_KEYS)
    try:
        payload = sealer.open_bytes(sealed, now=poisoned_at)
    except ExpiredMessage:
        return PoisonVerdict(f"expired (ExpiredMessage): sealed more than {int(sealer.max_age)} s before it was "
                             "poisoned; the lifecycle refused it", expired=True)
    except UnknownKey:
        return PoisonVerdict("sealed with a key that is not configured here (UnknownKey): one rotated out of "
                             "ACA_SEALING_KEYS or not added yet, or another deployment's")
    except TamperedMessage:
        return PoisonVerdict("not a sealed message, or altered (TamperedMessage)")
    try:
        sealer.open_bytes(sealed, now=now)
        expired = False
    except ExpiredMessage:
        expired = True
    try:
        message = read_payload(payload)
    except ContractError as e:
        return PoisonVerdict(f"authentic but unreadable ({type(e).__name__}): its schema is unknown or "
                             "invalid (a hub or functions of another version?)", expired=expired)
    by_functions = isinstance(sealer, Keyring) and sealer.sealed_by_functions(sealed)
    if isinstance(sealer, Keyring) and isinstance(message, FollowUp) != by_functions:
        return PoisonVerdict("forged: a follow-up sealed with a hub key, or a request with the functions' own key "
                             "(HubSealedFollowUp, FollowUpSealedRequest): refused by the lifecycle", expired=expired)
    what = (f"follow-up ({message.step.value})" if isinstance(message, FollowUp) else "request")
    what += f" op={message.op.value} server_key={message.server_key} generation={message.generation}"
    if message.hub_id != hub_id:
        return PoisonVerdict(f"authentic {what} for another hub ({message.hub_id}): refused by the lifecycle",
                             expired=expired)
    if not key_belongs_to(message):
        return PoisonVerdict(f"authentic {what} whose server key is not its user's and server's: refused by "
                             "the lifecycle", expired=expired)
    return PoisonVerdict(f"authentic and readable {what}: poisoned by the host after failing "
                         f"{max_dequeue_count} deliveries (maxDequeueCount); the lifecycle's logs have its errors",
                         expired=expired)


def _stamp(when: datetime | None) -> float | None:
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class _PoisonDrain:
    """Look at (and log) the poison queue's messages; delete those older than the sealing maximum age.

    Receive, not peek: peek cannot page past the first 32 messages, nor give
    the pop receipt a delete needs, and a receive cannot pick which messages
    it returns. So each page is received with a visibility timeout
    (:data:`POISON_VISIBILITY`), which keeps a message received once from being
    received again in the same run; the old ones are deleted with their pop
    receipt at once, and those kept are made visible again (visibility 0)
    when the run is done with the queue, so an operator sees them right away and
    the next run looks at them again. If the run dies first, the visibility
    timeout brings them back within a minute. (Each look raises a message's
    dequeue count on the poison queue by one: there it counts the reconciler's
    looks, not the lifecycle's deliveries, which the host does not carry over.)
    """

    def __init__(self, queue: PoisonQueue, sealer: Sealer | Keyring | None, options: ReconcileOptions, now: float,
                 summary: ReconcileSummary):
        self.queue = queue
        self.sealer = sealer
        self.options = options
        self.now = now
        self.summary = summary

    def run(self) -> None:
        kept: list[Any] = []
        try:
            pages = self.queue.receive_messages(
                messages_per_page=min(POISON_PAGE, self.options.poison_max_per_run),
                max_messages=self.options.poison_max_per_run,
                visibility_timeout=POISON_VISIBILITY,
            ).by_page()
            for page in pages:
                for message in page:
                    self.summary.poison_seen += 1
                    if not self.examine(message):
                        kept.append(message)
        except ResourceNotFoundError:
            pass  # no poison queue (yet): nothing was ever poisoned
        finally:
            for message in kept:
                self.release(message)
        if self.summary.poison_seen >= self.options.poison_max_per_run:
            self.summary.notes.append(f"looked at {self.options.poison_max_per_run} poison messages (the most per "
                                      "run); the rest waits for the next run")

    def examine(self, message: Any) -> bool:
        """Log ``message`` and delete it when it is old enough; True when it is gone."""
        inserted = _stamp(message.inserted_on)
        poisoned_at = self.now if inserted is None else inserted
        try:
            verdict = classify_poison(message.content or "", self.sealer, poisoned_at=poisoned_at, now=self.now,
                                      hub_id=self.options.hub_id,
                                      max_dequeue_count=self.options.max_dequeue_count)
        except Exception as e:  # classifying is best effort; deleting must not depend on it
            verdict = PoisonVerdict(f"not classified ({type(e).__name__})")
        # Its age since sealing: verified from the seal when it is authentic and expired, otherwise its time
        # on the poison queue stands in (a lower bound: it was sealed before it was poisoned).
        on_queue = self.now - poisoned_at
        old = verdict.expired or (inserted is not None and on_queue >= self.options.seal_max_age)
        described = (f"Poison message id={message.id} inserted={_iso(message.inserted_on)} "
                     f"dequeue_count={message.dequeue_count}: {verdict.reason}")
        if not old:
            log.warning("%s; kept for now (%s on the poison queue, deleted once older than %d s)", described,
                        _age_s(on_queue), int(self.options.seal_max_age))
            return False
        try:
            self.queue.delete_message(message.id, message.pop_receipt)
        except ResourceNotFoundError:
            log.info("%s; already deleted by someone else", described)
            return True
        except AzureError as e:
            log.error("%s; could not delete it: %s", described, type(e).__name__)
            self.summary.errors.append(f"poison message {message.id}: delete failed ({type(e).__name__})")
            return False
        log.warning("%s; deleted: older than the sealing maximum age of %d s, nothing in it can be replayed",
                    described, int(self.options.seal_max_age))
        self.summary.poison_deleted += 1
        return True

    def release(self, message: Any) -> None:
        """Make a kept message visible again (by id and pop receipt: the content is not sent again)."""
        try:
            self.queue.update_message(message.id, message.pop_receipt, visibility_timeout=0)
        except AzureError as e:  # it comes back when its visibility timeout ends anyway
            log.info("Poison message id=%s stays invisible for up to %d s: %s", message.id, POISON_VISIBILITY,
                     type(e).__name__)


def _iso(when: datetime | None) -> str:
    return when.isoformat() if when is not None else "unknown"


def _age_s(seconds: float) -> str:
    return f"{int(seconds)} s" if seconds < 120 else _age(seconds)


def drain_poison(queue: PoisonQueue, sealer: Sealer | Keyring | None, options: ReconcileOptions, summary: ReconcileSummary,
                 now: float) -> None:
    """Step 7 on its own: storage errors end up in ``summary`` (errors and a note), never raised."""
    try:
        _PoisonDrain(queue, sealer, options, now, summary).run()
    except AzureError as e:
        summary.errors.append(f"poison queue: {type(e).__name__}: {getattr(e, 'message', e)}")
        summary.notes.append("could not drain the poison queue")


def reconcile(
    options: ReconcileOptions,
    storage: StatusStore,
    container_apps: Any,
    *,
    hub_servers: Callable[[], Iterable[tuple[str, str, bool]]] | None = None,
    now: float | None = None,
    poison: PoisonQueue | None = None,
    sealer: Sealer | Keyring | None = None,
    capacity: CapacityLedger | None = None,
) -> ReconcileSummary:
    """One reconciler run against explicit dependencies.

    ``container_apps`` is ``ContainerAppsAPIClient(...).container_apps`` (or
    anything with ``list_by_resource_group`` and ``begin_delete``);
    ``hub_servers`` lists the servers the hub counts active as (user, server, ready) (optional: without
    it, apps of servers the hub forgot are not removed, and missing apps are reported from the table only);
    ``poison`` is the poison queue's client (:attr:`FunctionStorage.poison`;
    None skips step 7) and ``sealer`` opens its messages to tell why they were
    poisoned (None: they are logged as not classified, and still deleted when old);
    ``capacity`` is the lifecycle's capacity ledger (None skips step 6).
    Raises :class:`ReconcilerError` when ARM or the table cannot be read at
    all; a spent budget or throttling ends the run early with a note instead.
    """
    started = time.monotonic()
    now = time.time() if now is None else now
    summary = ReconcileSummary(max_arm_calls=options.max_arm_calls)
    arm = _Arm(container_apps, options.resource_group, options.max_arm_calls, summary)
    run = _ReconcileRun(options, storage, arm, now, summary)
    failure: Exception | None = None
    if poison is not None:
        # first, and on its own: the tokens in poison messages should go even when ARM is in trouble
        drain_poison(poison, sealer, options, summary, now)
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
        servers = None
        if hub_servers is not None:
            try:
                servers = list(hub_servers())
            except HubApiError as e:
                summary.errors.append(f"hub API: {e}")
                summary.notes.append("could not ask the hub which servers run")
        hub_active = None if servers is None else {(user, name) for user, name, _ in servers}
        if hub_active is not None:
            doubt = implausible_hub_answer(hub_active, statuses, now, options.grace)
            if doubt:
                summary.errors.append(f"hub API: {doubt}; no server was removed for being unknown to the hub")
                hub_active = None
        try:
            run.delete_leftovers(apps, statuses, hub_active)
        except _BudgetExhausted as e:
            summary.notes.append(f"ARM call budget ({options.max_arm_calls}) spent before {e}; "
                                 "the rest waits for the next run")
        except _Throttled as e:
            summary.errors.append(str(e))
            summary.notes.append("ARM kept throttling (429) after retries; stopped early")
        if summary.listing_complete:
            ready = None if servers is None else [(user, name) for user, name, is_ready in servers if is_ready]
            run.report_missing(apps, statuses, ready)
        else:
            summary.notes.append("app listing incomplete: missing apps not checked")
        if capacity is not None:
            summary.capacity = repair_capacity(capacity, summary.errors, summary.notes,
                                               apps if summary.listing_complete else None, statuses,
                                               lambda key: storage.get_status(options.hub_id, key),
                                               grace=options.grace, now=now)
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
    same endpoint, credential and retry policy), status table and poison queue
    (:class:`functions.storage.FunctionStorage`); asks the hub which servers run
    when ``ACA_HUB_API_URL`` and ``ACA_HUB_API_TOKEN`` are set. ``ACA_SEALING_KEYS``
    is optional here: it only tells why poison messages were poisoned.
    """
    try:
        options = ReconcileOptions.from_settings(settings)
        config = Settings.from_environ(settings, sealing=False)
        hub_settings = HubApiSettings.from_settings(settings)
    except (ValueError, SettingsError) as e:
        raise ReconcilerError(f"invalid reconciler settings: {e}") from None
    sealer = Keyring(config.sealer(), config.followup_sealer() if config.followup_keys else None) \
        if config.sealing_keys else None
    storage = FunctionStorage(config.storage)
    client = make_client(config)
    hub: HubApi | None = hub_settings.client() if hub_settings.configured else None
    try:
        return reconcile(
            options,
            storage,
            client.container_apps,
            hub_servers=(lambda: hub_active_servers(hub, options.hub_page_size)) if hub else None,
            now=now,
            poison=storage.poison,
            sealer=sealer,
            capacity=CapacityLedger(storage.table, config.hub_id, config.environments),
        )
    finally:
        client.close()
        for storage_client in (storage.poison, storage.table, storage.lifecycle):
            storage_client.close()
        if hub is not None:
            hub.close()
