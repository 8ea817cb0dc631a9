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

Where each step lives: 1, 4 and 5 in :mod:`functions.reconcile_apps`, 3 in
:mod:`functions.reconcile_stuck`, 6 in :mod:`functions.capacity_repair`, 7 in
:mod:`functions.poison_drain`; the run's options and summary in
:mod:`functions.reconcile_run`. Every ARM call goes through the functions'
one gateway (:class:`functions.arm.ArmApps`), which counts it against the
run's budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from azure.core.exceptions import AzureError

from .arm import ArmApps, ArmFailure, BudgetExhausted, CallBudget, TransientArmError, make_client
from .capacity import CapacityLedger
from .capacity_repair import repair_capacity
from .followup import Keyring
from .hubapi import HubApi, HubApiError, HubApiSettings
from .poison_drain import PoisonQueue, drain_poison
from .reconcile_apps import AppsStep, Throttled, hub_active_servers, implausible_hub_answer
from .reconcile_run import ReconcileOptions, ReconcileSummary, StatusStore
from .reconcile_stuck import fail_stuck
from .settings import Settings, SettingsError
from .storage import FunctionStorage
from .warm_pool import SlotRows

log = logging.getLogger(__name__)


class ReconcilerError(RuntimeError):
    """A reconciler run could not do its work (settings, ARM unreachable, table unreadable)."""


def _hub_view(hub_servers: Callable[[], Iterable[tuple[str, str, bool]]] | None, statuses: dict[str, Any],
              options: ReconcileOptions, now: float, summary: ReconcileSummary) -> list[tuple[str, str, bool]] | None:
    """The servers the hub counts active as (user, server, ready); None when it could not be asked or is not
    believed (:func:`~functions.reconcile_apps.implausible_hub_answer`)."""
    if hub_servers is None:
        return None
    try:
        servers = list(hub_servers())
    except HubApiError as e:
        summary.errors.append(f"hub API: {e}")
        summary.notes.append("could not ask the hub which servers run")
        return None
    doubt = implausible_hub_answer({(user, name) for user, name, _ in servers}, statuses, now, options.grace)
    if doubt:
        summary.errors.append(f"hub API: {doubt}; no server was removed for being unknown to the hub")
        return None
    return servers


def reconcile(
    options: ReconcileOptions,
    storage: StatusStore,
    arm_client: Any,
    *,
    hub_servers: Callable[[], Iterable[tuple[str, str, bool]]] | None = None,
    now: float | None = None,
    poison: PoisonQueue | None = None,
    sealer: Any = None,
    capacity: CapacityLedger | None = None,
    bound_slots: Callable[[], Mapping[str, str]] | None = None,
) -> ReconcileSummary:
    """One reconciler run against explicit dependencies.

    ``arm_client`` is a ``ContainerAppsAPIClient`` (the functions' own, :func:`functions.arm.make_client`);
    ``hub_servers`` lists the servers the hub counts active as (user, server, ready) (optional: without
    it, apps of servers the hub forgot are not removed, and missing apps are reported from the table only);
    ``poison`` is the poison queue's client (:attr:`FunctionStorage.poison`;
    None skips step 7) and ``sealer`` (a ``Sealer`` or a :class:`~functions.followup.Keyring`) opens its
    messages to tell why they were poisoned (None: they are logged as not classified, and still deleted
    when old); ``capacity`` is the lifecycle's capacity ledger (None skips step 6); ``bound_slots`` reads
    which warm server serves which server (slot name → server key; None: no warm pool).
    Raises :class:`ReconcilerError` when ARM or the table cannot be read at
    all; a spent budget or throttling ends the run early with a note instead.
    """
    started = time.monotonic()
    now = time.time() if now is None else now
    summary = ReconcileSummary(max_arm_calls=options.max_arm_calls)
    budget = CallBudget(options.max_arm_calls)
    # the reconciler reads no operation: no operation URL is allowed
    step = AppsStep(options, storage, ArmApps(arm_client, options.resource_group, "", budget), now, summary)
    failure: Exception | None = None
    if poison is not None:
        # first, and on its own: the tokens in poison messages should go even when ARM is in trouble
        drain_poison(poison, sealer, options, summary, now)
    try:
        # apps first, then the table: an app created after its entity's read cannot be mistaken for an orphan
        try:
            step.list_apps()
        except BudgetExhausted:
            summary.notes.append(f"ARM call budget ({options.max_arm_calls}) spent while listing apps; "
                                 "the rest waits for the next run")
        apps = step.apps
        summary.apps_seen = len(apps) + len(step.slot_apps)
        statuses = {s.server_key: s for s in storage.list_statuses(options.hub_id)}
        holders = step.by_holder(bound_slots() if bound_slots is not None and step.slot_apps else {})
        fail_stuck(statuses, storage, options, now, summary)
        servers = _hub_view(hub_servers, statuses, options, now, summary)
        hub_active = None if servers is None else {(user, name) for user, name, _ in servers}
        try:
            step.delete_leftovers(apps, statuses, hub_active)
            step.forget_warm(statuses, hub_active)
        except BudgetExhausted as e:
            summary.notes.append(f"ARM call budget ({options.max_arm_calls}) spent before {e}; "
                                 "the rest waits for the next run")
        except Throttled as e:
            summary.errors.append(str(e))
            summary.notes.append("ARM kept throttling (429) after retries; stopped early")
        if summary.listing_complete:
            ready = None if servers is None else [(user, name) for user, name, is_ready in servers if is_ready]
            step.report_missing(holders, statuses, ready)
        else:
            summary.notes.append("app listing incomplete: missing apps not checked")
        if capacity is not None:
            summary.capacity = repair_capacity(capacity, summary.errors, summary.notes,
                                               holders if summary.listing_complete else None, statuses,
                                               lambda key: storage.get_status(options.hub_id, key),
                                               grace=options.grace, now=now,
                                               forget_after=options.seal_max_age + options.grace)
    except (AzureError, ArmFailure) as e:
        summary.errors.append(f"{type(e).__name__}: {getattr(e, 'message', e)}")
        if isinstance(e, TransientArmError) and e.throttled:
            summary.notes.append("ARM kept throttling (429) or could not be reached; stopped early")
        failure = e
    finally:
        summary.arm_calls = budget.spent
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
            client,
            hub_servers=(lambda: hub_active_servers(hub, options.hub_page_size)) if hub else None,
            now=now,
            poison=storage.poison,
            sealer=sealer,
            capacity=CapacityLedger.for_settings(storage.table, config),
            bound_slots=lambda: {s.name: s.server_key for s in SlotRows(storage.table, options.hub_id).all()
                                 if s.state == "bound"},
        )
    finally:
        client.close()
        for storage_client in (storage.poison, storage.table, storage.lifecycle):
            storage_client.close()
        if hub is not None:
            hub.close()
