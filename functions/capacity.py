"""The functions' record of what they hold in each environment, kept in the status table.

Where it lives: the status table, in a partition of its own per hub
(``<hub id>~capacity``, so the hub's and the functions' status queries never
see it), with three kinds of rows:

- one *count* per environment (``environment-<digest of its id>``, split
  over several rows, :mod:`functions.count_shards`): cores, memory and
  servers held there, and its budget (read by admins' gauges);
- one *reservation* per server key (``server-<key>``): the environment, the
  footprint, its user, whether it is held, and the generation of the request
  that last changed it;
- one *count* per user (``user-<digest of the name>``): what that user's
  servers hold, checked against the per-user limits (``ACA_MAX_SERVERS_PER_USER``,
  ``ACA_MAX_CORES_PER_USER``), so that one user cannot take a class's pool.

How it stays consistent: every change is one entity group transaction of that partition, conditional
on the ETags that were read: the reservation (created only if absent, else replaced only if unchanged)
with the count of every environment and user it changes. The counts are therefore always the sum of
the held reservations, and two starts racing for the last cores of an environment cannot both commit:
the loser re-reads and places again. A duplicate delivery finds its reservation already held at its
generation and changes nothing (the counts are read before the reservation, and once more before "no
room" is answered, so a twin delivery's fresh hold is never taken for a full pool). The generation is
a fence: a reservation changed by a newer request (a stop releasing it) refuses an older start.

What a crash leaves: a reservation held although its start or stop never
got to record an outcome. The reconciler (:mod:`functions.capacity_repair`)
releases reservations of servers that are neither active nor have an app,
adopts apps that hold cores without a reservation, and recounts.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from acaspawner.report import prefix_query

from .capacity_rows import (
    COUNT_PREFIX,
    RESERVATION_PREFIX,
    USER_PREFIX,
    Count,
    Ledger,
    Reservation,
    UserCount,
    UserLimits,
    count_fields,
    count_key,
    env_key,
    partition,
    read_counts,
    read_reservation,
    read_user_count,
    user_key,
    user_limit_refusal,
)
from .count_shards import plan, shard_suffix
from .environments import EnvironmentBudget, budget_of
from .footprint import Footprint, rounded
from .placement import Usage, choose, fits, full_message, usage_of

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger(__name__)

#: how often one call re-reads and tries again after losing a race
MAX_RACES = 64
_CONFLICTS = {"UpdateConditionNotSatisfied", "EntityAlreadyExists", "ResourceNotFound", "EntityNotFound"}


class NoCapacity(Exception):
    """No environment has room; the message is for the user and the admin."""


class UserLimit(NoCapacity):
    """The user already holds what one user may hold; the message says which limit."""


class Superseded(Exception):
    """A newer request (a stop, or a newer start) changed this server's reservation: this one must not act."""


class CapacityBusy(Exception):
    """Lost the race for the counts too often in a row; try again later."""


def _refuse_if_superseded(server_key: str, before: Reservation | None, generation: int) -> None:
    """Raise Superseded when a newer request, or a stop of this one, changed the server's reservation."""
    if before is not None and (before.generation > generation or (before.generation == generation and before.stopped)):
        raise Superseded(f"the reservation of {server_key} was changed by generation {before.generation}")


class _Raced(Exception):
    pass


class CapacityLedger:
    """Reservations and per-environment counts of one hub, changed only by ETag-conditional transactions."""

    def __init__(self, table: TableClient, hub_id: str, pool: Sequence[EnvironmentBudget],
                 rng: random.Random | None = None, user_limits: UserLimits | None = None,
                 largest: Footprint | None = None) -> None:
        self.table = table
        self.hub_id = hub_id
        self.pool = tuple(pool)
        self.user_limits = user_limits or UserLimits()
        self.largest = largest  # the most one server may hold (the policy's); None: counts never spread
        self.partition = partition(hub_id)
        self._rng = rng or random.Random()

    @classmethod
    def for_settings(cls, table: TableClient, settings: Settings) -> CapacityLedger:
        """The ledger of ``settings``' hub: its pool of environments and its per-user limits."""
        return cls(table, settings.hub_id, settings.environments,
                   user_limits=UserLimits(settings.max_servers_per_user, settings.max_cores_per_user),
                   largest=Footprint(settings.max_cpu, settings.max_memory_gi))

    # -- reading ----------------------------------------------------------------------------------------

    def reservation(self, server_key: str) -> Reservation | None:
        try:
            return read_reservation(self.table.get_entity(self.partition, RESERVATION_PREFIX + server_key))
        except ResourceNotFoundError:
            return None

    def user_count(self, user: str) -> UserCount | None:
        if not user:
            return None
        try:
            return read_user_count(self.table.get_entity(self.partition, user_key(user)))
        except ResourceNotFoundError:
            return None

    def counts(self) -> dict[str, Count]:
        query, bounds = prefix_query(self.partition, COUNT_PREFIX)
        return read_counts(self.table.query_entities(query, parameters=bounds))

    def read(self) -> Ledger:
        """The whole partition in one query (the reconciler's view)."""
        count_rows, reservations, users = [], {}, {}
        for entity in self.table.query_entities("PartitionKey eq @p", parameters={"p": self.partition}):
            key = entity["RowKey"]
            if key.startswith(COUNT_PREFIX):
                count_rows.append(entity)
            elif key.startswith(RESERVATION_PREFIX):
                reservation = read_reservation(entity)
                reservations[reservation.server_key] = reservation
            elif key.startswith(USER_PREFIX):
                user_count = read_user_count(entity)
                users[user_count.user] = user_count
        return Ledger(read_counts(count_rows), reservations, users)

    # -- writing ----------------------------------------------------------------------------------------

    def _entity(self, reservation: Reservation) -> dict[str, Any]:
        return {
            "PartitionKey": self.partition,
            "RowKey": RESERVATION_PREFIX + reservation.server_key,
            "environment_id": reservation.environment_id,
            "cpu": float(reservation.footprint.cpu),
            "memory_gib": float(reservation.footprint.memory_gib),
            "generation": (reservation.generation, "Edm.Int64"),
            "held": reservation.held,
            "stopped": reservation.stopped,
            "user": reservation.user,
            "updated": time.time(),
        }

    def _count_entity(self, environment_id: str, usage: Usage, shard: int = 0) -> dict[str, Any]:
        return self._usage_entity(count_key(environment_id) + shard_suffix(shard), usage,
                                  **count_fields(self.pool, environment_id))

    def _user_entity(self, user: str, usage: Usage) -> dict[str, Any]:
        return self._usage_entity(user_key(user), usage, user=user)

    def _usage_entity(self, row_key: str, usage: Usage, **what: str | float) -> dict[str, Any]:
        return {
            "PartitionKey": self.partition,
            "RowKey": row_key,
            **what,
            "cores": float(rounded(max(usage.cores, 0.0))),
            "memory_gib": float(rounded(max(usage.memory_gib, 0.0))),
            "servers": max(usage.servers, 0),
            "updated": time.time(),
        }

    @staticmethod
    def _conditional(entity: dict[str, Any], etag: str | None) -> tuple:
        if etag is None:
            return ("create", entity)
        return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": etag,
                                   "match_condition": MatchConditions.IfNotModified})

    def _submit(self, operations: list[tuple]) -> None:
        try:
            self.table.submit_transaction(operations)
        except TableTransactionError as e:
            if e.error_code in _CONFLICTS or e.status_code == 412:
                raise _Raced() from e
            raise  # e.g. TableNotFound: no race, a fault
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as e:
            raise _Raced() from e

    def _commit(self, before: Reservation | None, after: Reservation, counts: dict[str, Count],
                user_count: UserCount | None = None, *, spread: bool = True) -> None:
        """Write ``after`` over ``before`` and move the counts (environments', the user's) by the difference,
        in one transaction. ``user_count``: the user's count as read (None: there is none yet); ``spread``:
        an environment's count may change in one shard when far from its budget (functions.count_shards)."""
        deltas: dict[tuple[str, str], tuple[str, float, float, int]] = {}

        def add(kind: str, name: str, fp: Footprint, sign: int) -> None:
            key = (kind, env_key(name) if kind == "environment" else name)
            _, cpu, memory, servers = deltas.get(key, (name, 0.0, 0.0, 0))
            deltas[key] = (name, cpu + sign * fp.cpu, memory + sign * fp.memory_gib, servers + sign)

        for reservation, sign in ((before, -1), (after, +1)):
            if reservation is not None and reservation.held:
                add("environment", reservation.environment_id, reservation.footprint, sign)
                if reservation.user:
                    add("user", reservation.user, reservation.footprint, sign)
        operations = []
        for (kind, key), (name, cpu, memory, servers) in deltas.items():
            if rounded(cpu) == 0 and rounded(memory) == 0 and servers == 0:
                continue
            if kind == "environment":
                shards = counts[key].shards if key in counts else {}
                for shard, usage in plan(shards, Usage(cpu, memory, servers), budget_of(self.pool, name),
                                         self.largest, self._rng, spread=spread).items():
                    etag = shards[shard].etag if shard in shards else None
                    operations.append(self._conditional(self._count_entity(name, usage, shard), etag))
                continue
            usage = user_count.usage if user_count else Usage()
            moved = Usage(usage.cores + cpu, usage.memory_gib + memory, usage.servers + servers)
            operations.append(self._conditional(self._user_entity(name, moved), user_count and user_count.etag))
        operations.append(self._conditional(self._entity(after), before.etag if before else None))
        self._submit(operations)

    def _pause(self, attempt: int) -> None:
        # a little jitter, so racers do not collide again in lockstep
        time.sleep(self._rng.uniform(0, min(0.005 * attempt, 0.1)))

    def _races(self, what: str) -> Iterator[int]:
        """Attempt numbers, a short random pause between them; CapacityBusy once they run out."""
        for attempt in range(MAX_RACES):
            yield attempt
            self._pause(attempt + 1)
        raise CapacityBusy(f"{what}: the capacity counts kept changing")

    # -- the lifecycle's operations ----------------------------------------------------------------------

    def reserve(self, server_key: str, generation: int, need: Footprint, *, pinned: str = "",
                pin_previous: bool = False, user: str = "") -> str:
        """Hold ``need`` for ``server_key`` (a server of ``user``) and return the environment's id.

        ``pinned``: the environment of an app the server already has (it cannot move);
        ``pin_previous``: treat the environment it held last as pinned (a parked app lives there).
        Raises :class:`NoCapacity` (:class:`UserLimit` when the user holds all one user may),
        :class:`Superseded`, :class:`CapacityBusy`.
        """
        for _ in self._races(f"reserving for {server_key}"):
            try:
                return self._reserve_once(server_key, generation, need, pinned, pin_previous, user)
            except _Raced:
                continue
        raise AssertionError("unreachable")

    def _reserve_once(self, server_key: str, generation: int, need: Footprint, pinned: str,
                      pin_previous: bool, user: str) -> str:
        # the counts first: a twin delivery's hold that they include shows in the reservation read after
        counts, user_count = self.counts(), self.user_count(user)
        before = self.reservation(server_key)
        _refuse_if_superseded(server_key, before, generation)
        if before is not None and before.held and before.generation == generation and before.footprint == need \
                and (not pinned or env_key(pinned) == env_key(before.environment_id)):
            return before.environment_id  # a duplicate delivery: already held
        if before is not None and before.held:
            where = pinned or before.environment_id  # a held reservation stays where it is
        elif pinned:
            where = pinned
        elif pin_previous and before is not None and before.environment_id:
            where = before.environment_id
        else:
            where = ""
        self._check_user(user, user_count, before, need)
        used = {k: c.usage for k, c in counts.items()}
        if where:
            if not self._room_for(where, before, need, used):
                self._full(server_key, generation, need, before, full_message(self.pool, used, need, where))
            target = where
        else:
            preferred = before.environment_id if before is not None else ""
            chosen = choose(self.pool, used, need, preferred=preferred, rng=self._rng)
            if chosen is None:
                self._full(server_key, generation, need, before, full_message(self.pool, used, need))
            target = chosen.id
        after = Reservation(server_key, target, need, max(generation, before.generation if before else 0), held=True,
                            user=user)
        self._commit(before, after, counts, user_count)
        log.info("reserved %s for %s (generation %s) in %s", need, server_key, generation, target)
        return target

    def take_over(self, server_key: str, generation: int, need: Footprint, slot: str, slot_generation: int,
                  user: str) -> bool:
        """Hold for ``server_key`` (``user``'s) what the warm server ``slot`` holds, in one transaction: the
        slot's reservation released at ``slot_generation``, the server's held in its environment, the user's
        count moved; the environment's count stays as it is (no race for it). False when that does not apply
        (the slot holds nothing or another size, or the server holds something): reserve, then release.
        Raises :class:`UserLimit`, :class:`Superseded`, :class:`CapacityBusy`."""
        for _ in self._races(f"handing {slot} over to {server_key}"):
            user_count, before, held = self.user_count(user), self.reservation(server_key), self.reservation(slot)
            _refuse_if_superseded(server_key, before, generation)
            if before is not None and before.held and before.generation == generation and held is not None \
                    and not held.held and env_key(before.environment_id) == env_key(held.environment_id):
                return True  # a duplicate delivery: handed over already
            if not user or (before is not None and before.held) or held is None or not held.held or held.user \
                    or held.footprint != need:
                return False
            self._check_user(user, user_count, before, need)
            after = Reservation(server_key, held.environment_id, need, generation, held=True, user=user)
            had = user_count.usage if user_count else Usage()
            moved = Usage(had.cores + need.cpu, had.memory_gib + need.memory_gib, had.servers + 1)
            released = replace(held, generation=slot_generation, held=False, stopped=True)
            try:
                self._submit([self._conditional(self._user_entity(user, moved), user_count and user_count.etag),
                              self._conditional(self._entity(after), before.etag if before else None),
                              self._conditional(self._entity(released), held.etag)])
            except _Raced:
                continue
            log.info("handed %s of %s over to %s (generation %s)", need, slot, server_key, generation)
            return True
        raise AssertionError("unreachable")

    def _check_user(self, user: str, user_count: UserCount | None, before: Reservation | None,
                    need: Footprint) -> None:
        """Raise UserLimit when holding ``need`` too would take ``user`` past a per-user limit."""
        refusal = user_limit_refusal(self.user_limits, user, user_count, before, need)
        if refusal:
            raise UserLimit(refusal)

    def _full(self, server_key: str, generation: int, need: Footprint, before: Reservation | None,
              message: str) -> NoReturn:
        """Raise NoCapacity, unless a twin delivery of this start took its hold meanwhile (a race to retry)."""
        now = self.reservation(server_key)
        if now is not None and now.held and now.generation == generation and now.footprint == need \
                and (before is None or now.etag != before.etag):
            raise _Raced()
        raise NoCapacity(message)

    def _room_for(self, environment_id: str, before: Reservation | None, need: Footprint,
                  used: dict[str, Usage]) -> bool:
        budget = budget_of(self.pool, environment_id)
        if budget is None:
            return True  # an app in an environment outside the pool: its quota is not ours to count
        usage = usage_of(used, environment_id)
        if before is not None and before.held and env_key(before.environment_id) == env_key(environment_id):
            # what it holds already counts as room for itself
            usage = Usage(usage.cores - before.footprint.cpu, usage.memory_gib - before.footprint.memory_gib,
                          usage.servers - 1)
        return fits(budget, usage, need)

    def release(self, server_key: str, generation: int, *, fence: bool = False, exact: bool = False,
                etag: str | None = None) -> bool:
        """Stop holding what ``server_key`` holds, if no newer request holds it; True when something was released.

        ``fence``: record ``generation`` even when nothing is held (a stop: an older start that has not
        reserved yet must not hold afterwards). ``exact``: only a reservation of ``generation`` itself (a
        failed start gives back what it took, never what an older app of the server holds). ``etag``:
        release only the reservation as read then (the reconciler), else leave it.
        """
        for _ in self._races(f"releasing {server_key}"):
            before = self.reservation(server_key)
            if before is None:
                if not fence:
                    return False
                after = Reservation(server_key, "", Footprint(0.0, 0.0), generation, held=False, stopped=True)
            elif (etag is not None and before.etag != etag) or before.generation > generation \
                    or (exact and before.generation != generation):
                return False  # changed since the reconciler read it, or another request's
            elif not before.held:
                if not fence or (before.generation == generation and before.stopped):
                    return False  # nothing held, and fenced already where a fence is wanted
                after = replace(before, generation=generation, stopped=True)
            else:
                after = replace(before, generation=generation, held=False, stopped=fence)
            holding = before is not None and before.held
            try:
                self._commit(before, after, self.counts() if holding else {},
                             self.user_count(before.user) if holding else None)
            except _Raced:
                if etag is not None:
                    return False
                continue
            if before is not None and before.held:
                log.info("released %s of %s (generation %s) in %s", before.footprint, server_key, generation,
                         before.environment_id)
                return True
            return False
        raise AssertionError("unreachable")

    # -- the reconciler's operations -------------------------------------------------------------------

    def adopt(self, server_key: str, environment_id: str, footprint: Footprint, generation: int,
              before: Reservation | None, user: str = "") -> bool:
        """Hold what an app of ``user`` holds that has no reservation (``before`` as read: absent, or released); once."""
        after = Reservation(server_key, environment_id, footprint,
                            max(generation, before.generation if before else 0), held=True, user=user)
        try:
            self._commit(before, after, self.counts(), self.user_count(user), spread=False)
        except _Raced:
            return False
        return True

    def forget(self, server_key: str, etag: str | None) -> bool:
        """Delete a released reservation as read (``etag``); False when it changed since, or is gone."""
        try:
            self.table.delete_entity(self.partition, RESERVATION_PREFIX + server_key, etag=etag,
                                     match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def recount(self, environment_id: str, usage: Usage, count: Count | None) -> bool:
        """Set an environment's count to ``usage`` (the sum of its held reservations): all of it in shard 0, the
        other shards zero; unless one of them changed since read."""
        shards = count.shards if count else {}
        return self._rewrite([self._conditional(self._count_entity(environment_id, usage if i == 0 else Usage(), i),
                                                shards[i].etag if i in shards else None) for i in sorted({0, *shards})])

    def recount_user(self, user: str, usage: Usage, count: UserCount | None) -> bool:
        """Set a user's count to ``usage`` (the sum of their held reservations), unless it changed since read."""
        return self._rewrite([self._conditional(self._user_entity(user, usage), count.etag if count else None)])

    def _rewrite(self, operations: list[tuple]) -> bool:
        try:
            self._submit(operations)
        except _Raced:
            return False
        return True
