"""Helpers for the capacity tests: a pool of environments as the ACA_ENVIRONMENTS setting, and what the ledger holds."""

from __future__ import annotations

import json
from collections import Counter

from fn_support import ENV_ID

from functions.capacity import CapacityLedger
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
