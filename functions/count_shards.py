"""An environment's count as several rows (shards), so a class starting at once does not race for one row.

Every start in a burst reads the counts and then commits its reservation
conditional on the ETag of the count row it changes. With one row per
environment, every commit that lands makes every other start in flight for
that environment lose and read again (a burst of 100 lost about as many
races as it won). So each environment's count is split over ``SHARDS`` rows:
``environment-<digest>`` (shard 0, the row older releases wrote) and
``environment-<digest>-<n>``. The environment's usage is their sum, and the
prefix query that reads the counts reads them all.

Why the budget still holds: a start that adds to one shard, conditional on
that shard alone, is blind to at most one concurrent commit on each other
shard, and no commit adds more than the largest server (``ACA_MAX_CPU``,
``ACA_MAX_MEMORY``). So a start *spreads* (adds to a random shard) only
while the room left after it is at least ``SHARDS - 1`` largest servers;
nearer the budget it *serializes*: it adds to shard 0 and rewrites every
other shard as read, so any concurrent change to the environment makes it
lose, as with one row. What a stop gives back comes out of the shards that
hold it; giving back never needs the others.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from .environments import EnvironmentBudget
from .footprint import Footprint, rounded
from .placement import Usage

#: count rows per environment
SHARDS = 8

_EPSILON = 1e-9


@dataclass(frozen=True)
class CountShard:
    """One row of an environment's count, as read."""

    index: int
    usage: Usage
    etag: str | None = None


def shard_suffix(index: int) -> str:
    """What follows the environment's count key in the row key of shard ``index``."""
    return "" if index == 0 else f"-{index}"


def shard_index(suffix: str) -> int | None:
    """The shard a row key's suffix (after the environment's count key) names; None: not a shard's."""
    if suffix == "":
        return 0
    if suffix.startswith("-") and suffix[1:].isdigit() and 0 < int(suffix[1:]) < 1000:
        return int(suffix[1:])
    return None


def total(shards: Mapping[int, CountShard]) -> Usage:
    """The environment's usage: the sum of its shards."""
    cores = sum(s.usage.cores for s in shards.values())
    memory = sum(s.usage.memory_gib for s in shards.values())
    return Usage(rounded(cores), rounded(memory), sum(s.usage.servers for s in shards.values()))


def may_ever_spread(budget: EnvironmentBudget | None, largest: Footprint | None) -> bool:
    """Whether a start could ever spread in this environment (else one row, shard 0, is all it needs)."""
    if largest is None:
        return False
    if budget is None:
        return True  # outside the pool: no budget of ours to keep
    margin = SHARDS - 1
    return budget.cores > margin * largest.cpu and budget.memory_gib > margin * largest.memory_gib


def spreads(budget: EnvironmentBudget | None, after: Usage, adds: Footprint, largest: Footprint | None) -> bool:
    """Whether a commit that adds ``adds`` (leaving ``after``, as read) may change one shard only."""
    if largest is None or adds.cpu > largest.cpu + _EPSILON or adds.memory_gib > largest.memory_gib + _EPSILON:
        return False
    if budget is None:
        return True
    margin = SHARDS - 1
    return (budget.cores - after.cores >= margin * largest.cpu - _EPSILON
            and budget.memory_gib - after.memory_gib >= margin * largest.memory_gib - _EPSILON)


def moved(shards: Mapping[int, CountShard], delta: Usage, target: int) -> dict[int, Usage]:
    """The shards ``delta`` changes, with their usage after it.

    What ``delta`` adds goes to shard ``target``; what it takes comes out of
    the shards holding the most, so that no shard goes below zero.
    """
    usage = {i: [s.usage.cores, s.usage.memory_gib, float(s.usage.servers)] for i, s in shards.items()}
    changed: set[int] = set()
    for dim, amount in enumerate((delta.cores, delta.memory_gib, float(delta.servers))):
        if amount > _EPSILON:
            usage.setdefault(target, [0.0, 0.0, 0.0])[dim] += amount
            changed.add(target)
            continue
        owed = -amount
        for i in sorted(usage, key=lambda i: (-usage[i][dim], i)):
            if owed <= _EPSILON:
                break
            take = min(owed, usage[i][dim])
            if take > _EPSILON:
                usage[i][dim] -= take
                owed -= take
                changed.add(i)
    return {i: Usage(rounded(max(usage[i][0], 0.0)), rounded(max(usage[i][1], 0.0)), int(round(max(usage[i][2], 0))))
            for i in sorted(changed)}


def plan(shards: Mapping[int, CountShard], delta: Usage, budget: EnvironmentBudget | None,
         largest: Footprint | None, rng: random.Random, *, spread: bool = True) -> dict[int, Usage]:
    """The shard rows one commit writes (each conditional on its ETag as read; an absent one created), and
    their usage: the changed shards, and when the commit serializes, every shard as well."""
    adds = Footprint(max(delta.cores, 0.0), max(delta.memory_gib, 0.0))
    if adds.cpu <= _EPSILON and adds.memory_gib <= _EPSILON and delta.servers <= 0:
        return moved(shards, delta, 0)  # giving back: never an overcommit
    now = total(shards)
    after = Usage(now.cores + delta.cores, now.memory_gib + delta.memory_gib, now.servers + delta.servers)
    if spread and spreads(budget, after, adds, largest):
        return moved(shards, delta, rng.randrange(SHARDS))
    writes = moved(shards, delta, 0)
    others = set(shards) | (set(range(SHARDS)) if may_ever_spread(budget, largest) else set())
    for i in others - set(writes):
        writes[i] = shards[i].usage if i in shards else Usage()
    return dict(sorted(writes.items()))
