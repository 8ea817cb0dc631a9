"""Helpers for the capacity tests: a pool of environments as the ACA_ENVIRONMENTS setting, and what the ledger holds."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter

from fn_support import ENV_ID, HUB

from functions.capacity import CapacityLedger, NoCapacity
from functions.environments import environment_name


def env_ids(n: int, base: str = ENV_ID) -> list[str]:
    """``n`` environment ids: ``base`` (ACA_ENVIRONMENT_ID) and ``base`` with ``-2``, ``-3``, … appended."""
    return [base] + [f"{base}-{i}" for i in range(2, n + 1)]


def pool_setting(ids: list[str], cores: float, memory_gib: float | None = None) -> str:
    """``ACA_ENVIRONMENTS`` for ``ids``, each with the same budget."""
    entries = [{"id": i, "cores": cores} | ({"memory_gib": memory_gib} if memory_gib is not None else {})
               for i in ids]
    return json.dumps(entries)


def held_by_environment(ledger: CapacityLedger) -> Counter:
    """Environment name → number of held reservations, read from the reservation rows themselves."""
    read = ledger.read()
    return Counter(environment_name(r.environment_id) for r in read.reservations.values() if r.held)


def counted(ledger: CapacityLedger) -> dict[str, tuple[float, int]]:
    """Environment name → (cores, servers) as the count rows say."""
    return {environment_name(c.environment_id): (c.usage.cores, c.usage.servers)
            for c in ledger.read().counts.values()}


def race(table, ledger: CapacityLedger, keys: list[str], need, *, workers: int = 12, shuffle_seed: int = 3,
         seeded: bool = False) -> dict[str, list[str]]:
    """Every key reserved twice (``need`` each, generation 7), by ``workers`` threads with a ledger each (as
    Functions instances have, on ``ledger``'s pool and largest server); key → the environments or "full" each
    delivery got. ``seeded``: each worker's placement draws from its own seeded generator."""
    outcomes: dict[str, list[str]] = {}
    lock, barrier = threading.Lock(), threading.Barrier(workers)
    deliveries = keys + keys  # every start twice, by different workers
    random.Random(shuffle_seed).shuffle(deliveries)

    def start(mine: list[str], seed: int) -> None:
        own = CapacityLedger(table, HUB, ledger.pool, rng=random.Random(seed) if seeded else None,
                             largest=ledger.largest)
        barrier.wait()
        for key in mine:
            try:
                result = own.reserve(key, 7, need)
            except NoCapacity:
                result = "full"
            with lock:
                outcomes.setdefault(key, []).append(result)

    threads = [threading.Thread(target=start, args=(deliveries[i::workers], i)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
