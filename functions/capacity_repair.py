"""The reconciler's capacity step: bring the reservations back in line with the apps, recount, report.

The lifecycle keeps the capacity ledger (:mod:`functions.capacity`) right as
long as its invocations finish. When one dies between two steps, or an app
outlives its server, the ledger and ARM disagree; each reconciler run, after
it listed this hub's apps and read the statuses:

1. *adopts* every app that holds cores (not failed, not stopped) without a
   held reservation: apps made before placement existed, or one that came
   up after its start was recorded failed; a reservation released less than
   the grace period ago is left alone (its stop may just have finished);
2. *releases* every held reservation whose server has no app holding cores
   and is not active (queued, provisioning, running), once it is older than
   the grace period and the status, read again, still says so;
3. *forgets* every reservation released longer than ``forget_after`` ago
   whose server has no app (ETag-conditional): one row per server ever
   started would otherwise stay for good. What a released reservation still
   does: it fences a start older than the stop that released it, and such a
   start's sealed message has expired once the seal's maximum age has passed
   (``forget_after`` is at least that); and it names the environment a new
   start of the server prefers, which a server gone that long can do without;
4. *recounts* each environment and each user from the held reservations and
   rewrites a count that differs (ETag-conditional: a lifecycle write in
   between wins, the next run looks again);
5. reports, per environment, servers, cores in use and cores left.

Steps 1 to 3 need a complete listing of the apps; without one only 4 and 5 run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError

from acaspawner.contract import Status

from .app_body import TAG_USER
from .arm import app_generation
from .capacity import CapacityBusy, CapacityLedger
from .capacity_rows import Ledger, env_key
from .environments import EnvironmentBudget, environment_name
from .footprint import app_environment, holds_cores, of_app, rounded
from .placement import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvironmentReport:
    """One environment in the reconciler's summary."""

    name: str
    servers: int
    cores_used: float
    cores_budget: float | None  # None: an environment outside the pool (an app left there)

    def text(self) -> str:
        if self.cores_budget is None:
            return f"{self.name} servers={self.servers} cores={self.cores_used:g} (not in ACA_ENVIRONMENTS)"
        left = max(self.cores_budget - self.cores_used, 0.0)
        return (f"{self.name} servers={self.servers} cores={self.cores_used:g}/{self.cores_budget:g} "
                f"cores_left={left:g}")


@dataclass
class CapacityReport:
    """What the capacity step found and did."""

    adopted: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    forgotten: int = 0  # released reservations deleted (old, no app)
    recounted: list[str] = field(default_factory=list)  # environment names whose count was rewritten
    environments: list[EnvironmentReport] = field(default_factory=list)

    def text(self) -> str:
        parts = [e.text() for e in self.environments]
        head = (f"capacity: adopted={len(self.adopted)} released={len(self.released)} forgotten={self.forgotten} "
                f"recounted={len(self.recounted)}")
        return head + (" environments: " + "; ".join(parts) if parts else "")


def _user_sums(ledger: Ledger) -> dict[str, Usage]:
    """Per user: the sum of their held reservations."""
    sums: dict[str, Usage] = {}
    for reservation in ledger.reservations.values():
        if reservation.held and reservation.user:
            usage, fp = sums.get(reservation.user, Usage()), reservation.footprint
            sums[reservation.user] = Usage(rounded(usage.cores + fp.cpu), rounded(usage.memory_gib + fp.memory_gib),
                                           usage.servers + 1)
    return sums


def _same(a: Usage, b: Usage) -> bool:
    return rounded(a.cores) == rounded(b.cores) and rounded(a.memory_gib) == rounded(b.memory_gib) \
        and a.servers == b.servers


def _sums(ledger: Ledger) -> dict[str, tuple[str, Usage]]:
    """Per environment (lower-case id): its id and the sum of its held reservations."""
    sums: dict[str, tuple[str, Usage]] = {}
    for reservation in ledger.reservations.values():
        if not reservation.held or not reservation.environment_id:
            continue
        key = env_key(reservation.environment_id)
        environment_id, usage = sums.get(key, (reservation.environment_id, Usage()))
        fp = reservation.footprint
        sums[key] = (environment_id, Usage(rounded(usage.cores + fp.cpu), rounded(usage.memory_gib + fp.memory_gib),
                                           usage.servers + 1))
    return sums


class CapacityRepair:
    """One run of the capacity step against a ledger and the pool's budgets."""

    def __init__(self, ledger: CapacityLedger, pool: Sequence[EnvironmentBudget], grace: float, now: float,
                 forget_after: float = float("inf")) -> None:
        self.ledger = ledger
        self.pool = tuple(pool)
        self.grace = grace
        self.now = now
        self.forget_after = max(forget_after, grace)
        self.report = CapacityReport()

    def run(self, apps: Mapping[str, dict[str, Any]] | None, statuses: Mapping[str, Status],
            read_status: Callable[[str], Status | None]) -> CapacityReport:
        """``apps``: this hub's apps by name (None when the listing is incomplete); ``statuses`` by server key."""
        if apps is not None:
            ledger = self.ledger.read()
            self._adopt(apps, ledger, statuses)
            self._release(apps, ledger, statuses, read_status)
            self._forget(apps, ledger)
        self._recount()
        return self.report

    def _adopt(self, apps: Mapping[str, dict[str, Any]], ledger: Ledger, statuses: Mapping[str, Status]) -> None:
        for key, app in sorted(apps.items()):
            environment_id = app_environment(app)
            if not environment_id or not holds_cores(app):
                continue
            before = ledger.reservations.get(key)
            if before is not None and before.held:
                continue
            if before is not None and self.now - before.updated < self.grace:
                continue  # released a moment ago: the app may be on its way out
            status = statuses.get(key)
            user = status.user if status is not None else str((app.get("tags") or {}).get(TAG_USER, ""))
            if self.ledger.adopt(key, environment_id, of_app(app), app_generation(app) or 0, before, user):
                log.warning("Capacity: adopted container app %s in %s (%s): it held cores without a reservation",
                            key, environment_name(environment_id), of_app(app))
                self.report.adopted.append(key)

    def _release(self, apps: Mapping[str, dict[str, Any]], ledger: Ledger, statuses: Mapping[str, Status],
                 read_status: Callable[[str], Status | None]) -> None:
        for key, reservation in sorted(ledger.reservations.items()):
            if not reservation.held or self.now - reservation.updated < self.grace:
                continue
            app = apps.get(key)
            if app is not None and holds_cores(app):
                continue
            status = statuses.get(key)
            if status is not None and status.phase.is_active:
                continue
            fresh = read_status(key)  # the lifecycle may have moved on since the statuses were read
            if fresh is not None and fresh.phase.is_active:
                continue
            if self.ledger.release(key, reservation.generation, etag=reservation.etag):
                phase = fresh.phase.value if fresh is not None else "no status"
                log.warning("Capacity: released %s of %s in %s: no app holds it and its server is %s",
                            reservation.footprint, key, environment_name(reservation.environment_id), phase)
                self.report.released.append(key)

    def _forget(self, apps: Mapping[str, dict[str, Any]], ledger: Ledger) -> None:
        for key, reservation in sorted(ledger.reservations.items()):
            if reservation.held or key in apps or self.now - reservation.updated < self.forget_after:
                continue
            if self.ledger.forget(key, reservation.etag):
                self.report.forgotten += 1
        if self.report.forgotten:
            log.info("Capacity: forgot %d reservations released over %g s ago", self.report.forgotten,
                     self.forget_after)

    def _recount(self) -> None:
        ledger = self.ledger.read()
        sums = _sums(ledger)
        for key in sorted(set(sums) | set(ledger.counts)):
            count = ledger.counts.get(key)
            # an environment with a count but nothing held any more counts zero
            environment_id, usage = sums.get(key) or (count.environment_id if count else key, Usage())
            if count is not None and _same(count.usage, usage):
                continue
            if self.ledger.recount(environment_id, usage, count):
                was = count.usage if count is not None else Usage()
                log.warning("Capacity: recounted %s: %g cores, %d servers (the count said %g cores, %d servers)",
                            environment_name(environment_id), usage.cores, usage.servers, was.cores, was.servers)
                self.report.recounted.append(environment_name(environment_id))
        user_sums = _user_sums(ledger)
        for user in sorted(set(user_sums) | set(ledger.users)):
            count, usage = ledger.users.get(user), user_sums.get(user, Usage())
            if count is not None and _same(count.usage, usage):
                continue
            if self.ledger.recount_user(user, usage, count):
                log.warning("Capacity: recounted what user %r holds: %g cores, %d servers", user, usage.cores,
                            usage.servers)
        self._describe(sums)

    def _describe(self, sums: Mapping[str, tuple[str, Usage]]) -> None:
        listed = {env_key(b.id) for b in self.pool}
        for budget in self.pool:
            _, usage = sums.get(env_key(budget.id), (budget.id, Usage()))
            self.report.environments.append(EnvironmentReport(budget.name, usage.servers, usage.cores, budget.cores))
        for key, (environment_id, usage) in sorted(sums.items()):
            if key not in listed:
                self.report.environments.append(EnvironmentReport(environment_name(environment_id), usage.servers,
                                                                  usage.cores, None))


def repair_capacity(ledger: CapacityLedger, errors: list[str], notes: list[str],
                    apps: Mapping[str, dict[str, Any]] | None, statuses: Mapping[str, Status],
                    read_status: Callable[[str], Status | None], *, grace: float, now: float,
                    forget_after: float = float("inf")) -> CapacityReport:
    """The reconciler's capacity step; a storage error or a busy ledger is added to ``errors`` and ``notes``,
    never raised (the other steps' results stand)."""
    repair = CapacityRepair(ledger, ledger.pool, grace, now, forget_after)
    try:
        return repair.run(apps, statuses, read_status)
    except (AzureError, CapacityBusy) as e:
        errors.append(f"capacity: {type(e).__name__}: {getattr(e, 'message', e)}")
        notes.append("could not repair the capacity ledger")
        return repair.report
