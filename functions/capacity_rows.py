"""The rows of the capacity ledger (:mod:`functions.capacity`): their keys, what each holds, how each is read.

One partition per hub (``<hub id>~capacity``) with three kinds of rows:
a count per environment (``environment-<digest of its id>``, whose shape
admins' readers share: :mod:`acaspawner.report`), a reservation
per server (``server-<key>``) and a count per user (``user-<digest of the
name>``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from acaspawner.report import ENVIRONMENT_PREFIX as COUNT_PREFIX
from acaspawner.report import capacity_partition as partition
from acaspawner.report import env_key
from acaspawner.report import environment_key as count_key

from .count_shards import CountShard, shard_index, total
from .environments import EnvironmentBudget, budget_of
from .footprint import Footprint, rounded
from .placement import Usage

RESERVATION_PREFIX = "server-"
USER_PREFIX = "user-"
__all__ = ["COUNT_PREFIX", "RESERVATION_PREFIX", "USER_PREFIX", "count_key", "env_key", "partition"]


def count_fields(pool: Sequence[EnvironmentBudget], environment_id: str) -> dict[str, str | float]:
    """What an environment's count row names besides its usage: the environment and, for admins' readers
    (:mod:`acaspawner.report`), the budget the functions may fill there."""
    budget = budget_of(pool, environment_id)
    fields: dict[str, str | float] = {"environment_id": environment_id}
    if budget is not None:
        fields.update(cores_budget=float(budget.cores), memory_gib_budget=float(budget.memory_gib))
    return fields


def user_key(user: str) -> str:
    return USER_PREFIX + hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:24]


@dataclass(frozen=True)
class Reservation:
    """What one server holds (``held``) or last held (its environment is preferred when it starts again)."""

    server_key: str
    environment_id: str
    footprint: Footprint
    generation: int
    held: bool
    stopped: bool = False  # last changed by a stop: a start of the same generation is superseded
    updated: float = 0.0
    etag: str | None = None
    user: str = ""  # "" for reservations written before per-user counts: they count for no user


@dataclass(frozen=True)
class Count:
    """The rows (shards, :mod:`functions.count_shards`) that sum an environment's held reservations."""

    environment_id: str
    usage: Usage  # the sum of the shards
    shards: Mapping[int, CountShard] = field(default_factory=dict)  # by shard index, as read (with their ETags)


@dataclass(frozen=True)
class UserCount:
    """The row that sums one user's held reservations."""

    user: str
    usage: Usage
    etag: str | None = None


@dataclass(frozen=True)
class UserLimits:
    """What one user's servers may hold together (0: no limit)."""

    servers: int = 0
    cores: float = 0.0


@dataclass(frozen=True)
class Ledger:
    """One read of the whole capacity partition."""

    counts: dict[str, Count]  # by lower-case environment id
    reservations: dict[str, Reservation]  # by server key
    users: dict[str, UserCount] = field(default_factory=dict)  # by user name


def _value(entity: dict[str, Any], name: str, default: Any = 0) -> Any:
    value = entity.get(name, default)
    return getattr(value, "value", value)


def read_reservation(entity: dict[str, Any]) -> Reservation:
    return Reservation(
        server_key=entity["RowKey"][len(RESERVATION_PREFIX):],
        environment_id=str(_value(entity, "environment_id", "")),
        footprint=Footprint(float(_value(entity, "cpu", 0.0)), float(_value(entity, "memory_gib", 0.0))),
        generation=int(_value(entity, "generation", 0)),
        held=bool(_value(entity, "held", False)),
        stopped=bool(_value(entity, "stopped", False)),
        updated=float(_value(entity, "updated", 0.0)),
        etag=_etag(entity),
        user=str(_value(entity, "user", "")),
    )


def _etag(entity: Any) -> str | None:
    return entity.metadata.get("etag") if hasattr(entity, "metadata") else None


def _usage(entity: dict[str, Any]) -> Usage:
    return Usage(float(_value(entity, "cores", 0.0)), float(_value(entity, "memory_gib", 0.0)),
                 int(_value(entity, "servers", 0)))


def read_counts(entities: Iterable[dict[str, Any]]) -> dict[str, Count]:
    """The environments' counts among ``entities`` (rows of the count prefix), each its shards summed; by
    :func:`env_key`. A row whose key is no shard of the environment it names is left out."""
    shards: dict[str, dict[int, CountShard]] = {}
    named: dict[str, str] = {}
    for entity in entities:
        environment_id = str(_value(entity, "environment_id", ""))
        base, row_key = count_key(environment_id), str(entity.get("RowKey", ""))
        index = shard_index(row_key[len(base):]) if row_key.startswith(base) else None
        if index is None:
            continue
        key = env_key(environment_id)
        named.setdefault(key, environment_id)
        shards.setdefault(key, {})[index] = CountShard(index, _usage(entity), _etag(entity))
    return {key: Count(named[key], total(rows), rows) for key, rows in shards.items()}


def read_user_count(entity: dict[str, Any]) -> UserCount:
    return UserCount(str(_value(entity, "user", "")), _usage(entity), _etag(entity))


def user_limit_refusal(limits: UserLimits, user: str, user_count: UserCount | None, before: Reservation | None,
                       need: Footprint) -> str:
    """Why holding ``need`` too would take ``user`` past a per-user limit (for the user); ``""``: it would not."""
    if not user or not (limits.servers or limits.cores):
        return ""
    usage = user_count.usage if user_count else Usage()
    if before is not None and before.held and before.user == user:  # what it holds already is its own
        usage = Usage(usage.cores - before.footprint.cpu, usage.memory_gib - before.footprint.memory_gib,
                      usage.servers - 1)
    if limits.servers and usage.servers + 1 > limits.servers:
        return (f"you have {usage.servers} servers running, the most one user may run here "
                f"(ACA_MAX_SERVERS_PER_USER {limits.servers}); stop one of them first")
    if limits.cores and rounded(usage.cores + need.cpu) > limits.cores:
        return (f"this server's {need.cpu:g} vCPU and the {usage.cores:g} your servers hold would be "
                f"more than one user may hold here ({limits.cores:g} vCPU, ACA_MAX_CORES_PER_USER); "
                "stop a server or choose a smaller one")
    return ""
