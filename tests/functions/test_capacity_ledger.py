"""The capacity ledger in a real table (Azurite): placement, duplicates, releases, fences, concurrent starts."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from capacity_support import counted, env_ids, held_by_environment, race
from fn_support import HUB

from functions.capacity import CapacityLedger, NoCapacity, Superseded
from functions.capacity_rows import partition
from functions.environments import EnvironmentBudget
from functions.footprint import Footprint

ONE = Footprint(1.0, 2.0)
TWO = Footprint(2.0, 4.0)


@pytest.fixture
def make_ledger(table):
    def make(n: int = 3, cores: float = 10, seed: int | None = None) -> CapacityLedger:
        pool = [EnvironmentBudget(i, cores, 2 * cores) for i in env_ids(n)]
        return CapacityLedger(table, HUB, pool, rng=random.Random(seed))

    return make


def test_starts_spread_across_the_pool_and_the_next_one_finds_no_room(make_ledger):
    ledger = make_ledger(3, cores=2)
    placed = Counter(ledger.reserve(f"s{i}", 1, ONE) for i in range(6))
    assert sorted(placed.values()) == [2, 2, 2]
    with pytest.raises(NoCapacity, match=r"no capacity for 1 vCPU / 2 GiB: all 3 environments are full \(6 of 6"):
        ledger.reserve("s7", 1, ONE)
    assert counted(ledger) == {"env": (2.0, 2), "env-2": (2.0, 2), "env-3": (2.0, 2)}
    assert held_by_environment(ledger) == {"env": 2, "env-2": 2, "env-3": 2}


def test_the_ledger_lives_in_a_partition_of_its_own(make_ledger, table):
    make_ledger().reserve("s1", 1, ONE)
    assert {e["PartitionKey"] for e in table.list_entities()} == {partition(HUB)}
    assert list(table.query_entities("PartitionKey eq @p", parameters={"p": HUB})) == []


def test_a_duplicate_counts_once_and_a_release_frees(make_ledger):
    ledger = make_ledger(1, cores=2)
    first = ledger.reserve("s1", 5, ONE)
    assert ledger.reserve("s1", 5, ONE) == first  # the same start delivered again
    assert counted(ledger) == {"env": (1.0, 1)}
    assert ledger.release("s1", 6, fence=True)
    assert not ledger.release("s1", 6, fence=True)  # a duplicate stop
    assert counted(ledger) == {"env": (0.0, 0)}
    ledger.reserve("s2", 1, TWO)
    assert counted(ledger) == {"env": (2.0, 1)}


def test_a_stop_fences_out_an_older_start_and_a_start_of_its_own_generation(make_ledger):
    ledger = make_ledger(1)
    assert not ledger.release("s1", 10, fence=True)  # nothing held yet: the fence is recorded all the same
    for generation in (9, 10):
        with pytest.raises(Superseded):
            ledger.reserve("s1", generation, ONE)
    assert counted(ledger) == {}
    ledger.reserve("s1", 11, ONE)
    assert counted(ledger) == {"env": (1.0, 1)}
    assert not ledger.release("s1", 10, fence=True)  # a late, older stop leaves the newer start's hold alone
    assert counted(ledger) == {"env": (1.0, 1)}


def test_a_failed_start_gives_back_only_what_it_took(make_ledger):
    ledger = make_ledger(1)
    ledger.reserve("s1", 1, ONE)
    assert not ledger.release("s1", 2, exact=True)  # start 2 failed before it reserved: start 1's app still runs
    assert counted(ledger) == {"env": (1.0, 1)}
    ledger.reserve("s1", 3, ONE)  # a newer start of the same server takes the hold over, counted once
    assert counted(ledger) == {"env": (1.0, 1)}
    assert ledger.release("s1", 3, exact=True)
    assert counted(ledger) == {"env": (0.0, 0)}


def test_a_restart_prefers_its_previous_environment(make_ledger):
    ledger = make_ledger(3, seed=1)
    where = ledger.reserve("s1", 1, ONE)
    ledger.release("s1", 2, fence=True)
    for key in ("o1", "o2"):  # s1's environment is the fullest now
        ledger.reserve(key, 1, ONE, pinned=where)
    assert ledger.reserve("s1", 3, ONE) == where
    assert ledger.reserve("o3", 1, ONE) != where  # without a previous one: the emptiest


def test_an_existing_app_keeps_its_environment_and_fails_clearly_when_it_is_full(make_ledger):
    ledger = make_ledger(2, cores=1)
    a, b = env_ids(2)
    ledger.reserve("busy", 1, ONE, pinned=a)
    assert ledger.reserve("s1", 1, ONE, pinned=b) == b
    with pytest.raises(NoCapacity, match="environment env, where this server's container app is, has 0 of 1"):
        ledger.reserve("s2", 1, ONE, pinned=a)
    ledger.release("s1", 2, fence=True)
    # stop mode: the parked app of s1 lives in b, so b it is, even when a has room
    ledger.release("busy", 2, fence=True)
    assert ledger.reserve("s1", 3, ONE, pin_previous=True) == b


def test_a_bigger_restart_needs_room_for_the_difference_only(make_ledger):
    ledger = make_ledger(1, cores=3)
    ledger.reserve("s1", 1, ONE)
    ledger.reserve("s2", 1, ONE)
    assert ledger.reserve("s1", 2, TWO) == env_ids(1)[0]  # 1 core more, 1 core free
    assert counted(ledger) == {"env": (3.0, 2)}
    with pytest.raises(NoCapacity):
        ledger.reserve("s2", 2, TWO)


def test_concurrent_starts_never_take_more_than_the_pool_holds(make_ledger, table):
    """40 servers race for 3 × 10 cores from 12 threads, each start delivered twice."""
    ledger = make_ledger(3, cores=10)
    outcomes = race(table, ledger, [f"s{i:02d}" for i in range(40)], ONE)

    holding = {k for k, r in outcomes.items() if any(x != "full" for x in r)}
    assert len(holding) == 30
    assert held_by_environment(ledger) == {"env": 10, "env-2": 10, "env-3": 10}
    assert counted(ledger) == {"env": (10.0, 10), "env-2": (10.0, 10), "env-3": (10.0, 10)}
    for key in holding:  # a duplicate that came second found the hold, never a second place
        places = {x for x in outcomes[key] if x != "full"}
        assert len(places) == 1


def test_a_twin_delivery_that_took_the_last_core_before_the_counts_were_read_is_found(make_ledger, table):
    """Two deliveries of one start: the twin's hold lands just before this one reads the counts."""
    ledger = make_ledger(1, cores=1)
    twin = CapacityLedger(table, HUB, ledger.pool)
    real_counts = ledger.counts

    def counts():
        ledger.counts = real_counts
        twin.reserve("s1", 7, ONE)
        return real_counts()

    ledger.counts = counts
    assert ledger.reserve("s1", 7, ONE) == env_ids(1)[0]  # the pool is full, but with its own start
    assert counted(ledger) == {"env": (1.0, 1)}


def test_a_twin_delivery_that_took_a_core_freed_while_this_one_looked_is_found(make_ledger, table):
    """The pool looked full; meanwhile a stop freed a core and the twin took it: found, not a full pool."""
    ledger = make_ledger(1, cores=1)
    twin = CapacityLedger(table, HUB, ledger.pool)
    ledger.reserve("other", 1, ONE)
    real_reservation = ledger.reservation

    def reservation(key):
        ledger.reservation = real_reservation
        found = real_reservation(key)
        twin.release("other", 2, fence=True)
        twin.reserve("s1", 7, ONE)
        return found

    ledger.reservation = reservation
    assert ledger.reserve("s1", 7, ONE) == env_ids(1)[0]
    assert counted(ledger) == {"env": (1.0, 1)}
