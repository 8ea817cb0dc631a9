"""Which environment of the pool a server goes to, and what a user is told when none has room (pure).

A server keeps the environment of an app it already has (an app cannot
move). Otherwise it goes back to the environment it ran in last, if that
has room, and else to the environment with the most cores free, so a class
spreads across the pool. Room is counted from the functions' own
reservations (:mod:`functions.capacity`) against each environment's budget
(:mod:`functions.environments`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .environments import EnvironmentBudget, budget_of, environment_name
from .footprint import Footprint

#: the error code of a start refused for want of room (status ``failed``)
NO_CAPACITY = "NoCapacity"
# float sums of quarter cores are exact, but a budget given as 0.1-steps is not: allow for rounding
_EPSILON = 1e-6
ADVICE = "Try again when other servers have stopped; an admin can add an environment or raise a budget " \
         "(ACA_ENVIRONMENTS) and the environment's core quota."


@dataclass(frozen=True)
class Usage:
    """What the functions hold in one environment."""

    cores: float = 0.0
    memory_gib: float = 0.0
    servers: int = 0


def usage_of(used: Mapping[str, Usage], environment_id: str) -> Usage:
    """The usage of ``environment_id`` in ``used`` (keyed by lower-case environment id)."""
    return used.get(environment_id.rstrip("/").lower(), Usage())


def fits(budget: EnvironmentBudget, usage: Usage, need: Footprint) -> bool:
    return (usage.cores + need.cpu <= budget.cores + _EPSILON
            and usage.memory_gib + need.memory_gib <= budget.memory_gib + _EPSILON)


def choose(pool: Sequence[EnvironmentBudget], used: Mapping[str, Usage], need: Footprint, *, preferred: str = "",
           rng: random.Random | None = None) -> EnvironmentBudget | None:
    """The environment for a new reservation of ``need``: ``preferred`` if it has room, else the one with the most
    cores free (ties at random, so concurrent starts race on different environments); None when none has room."""
    home = budget_of(pool, preferred) if preferred else None
    if home is not None and fits(home, usage_of(used, home.id), need):
        return home
    candidates = [b for b in pool if fits(b, usage_of(used, b.id), need)]
    if not candidates:
        return None
    most = max(b.cores - usage_of(used, b.id).cores for b in candidates)
    best = [b for b in candidates if b.cores - usage_of(used, b.id).cores >= most - _EPSILON]
    return (rng or random).choice(best)


def full_message(pool: Sequence[EnvironmentBudget], used: Mapping[str, Usage], need: Footprint,
                 pinned: str = "") -> str:
    """What a user and an admin read when ``need`` fits nowhere (``pinned``: the environment it had to go to)."""
    if pinned:
        budget = budget_of(pool, pinned)
        usage = usage_of(used, pinned)
        where = f"environment {environment_name(pinned)}, where this server's container app is,"
        if budget is None:
            return f"no capacity for {need}: {where} is not in the pool any more. {ADVICE}"
        free = max(budget.cores - usage.cores, 0.0)
        return (f"no capacity for {need}: {where} has {free:g} of {budget.cores:g} cores free "
                f"({usage.servers} servers). {ADVICE}")
    if not pool:
        return f"no capacity for {need}: no environment is configured (ACA_ENVIRONMENTS)."
    if not any(b.cores + _EPSILON >= need.cpu and b.memory_gib + _EPSILON >= need.memory_gib for b in pool):
        largest = max(pool, key=lambda b: b.cores)
        return (f"no capacity for {need}: larger than any environment's budget (the largest, "
                f"{largest.name}, allows {largest.cores:g} vCPU / {largest.memory_gib:g} GiB). {ADVICE}")
    total = sum(b.cores for b in pool)
    in_use = sum(usage_of(used, b.id).cores for b in pool)
    which = "the environment is full" if len(pool) == 1 else f"all {len(pool)} environments are full"
    return f"no capacity for {need}: {which} ({in_use:g} of {total:g} cores in use). {ADVICE}"
