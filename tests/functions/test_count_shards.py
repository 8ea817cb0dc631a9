"""Environment counts over several rows: which rows a commit writes, and that the budget still holds in Azurite."""

from __future__ import annotations

import random

import pytest
from capacity_support import counted, env_ids, race
from fn_support import HUB

from acaspawner.report import Report
from functions.capacity import CapacityLedger
from functions.capacity_rows import count_key, partition
from functions.count_shards import SHARDS, CountShard, may_ever_spread, moved, plan, shard_index, spreads, total
from functions.environments import EnvironmentBudget
from functions.footprint import Footprint
from functions.placement import Usage

LARGEST = Footprint(4.0, 8.0)  # the policy's defaults (ACA_MAX_CPU, ACA_MAX_MEMORY)
BIG = EnvironmentBudget("/e/big", 400.0, 800.0)
SMALL = EnvironmentBudget("/e/small", 10.0, 20.0)
ONE = Footprint(1.0, 2.0)


def shards(*usages: tuple[float, float, int]) -> dict[int, CountShard]:
    return {i: CountShard(i, Usage(*u), etag=f"e{i}") for i, u in enumerate(usages)}


# -- which rows one commit writes ---------------------------------------------------------------------


def test_far_from_the_budget_a_start_adds_to_one_shard_chosen_at_random():
    read = shards((10, 20, 10), (5, 10, 5))
    seen = set()
    for seed in range(40):
        writes = plan(read, Usage(1, 2, 1), BIG, LARGEST, random.Random(seed))
        assert len(writes) == 1
        (index, usage), = writes.items()
        before = read[index].usage if index in read else Usage()
        assert usage == Usage(before.cores + 1, before.memory_gib + 2, before.servers + 1)
        seen.add(index)
    assert seen == set(range(SHARDS))  # absent shards too: they are created


def test_near_the_budget_a_start_writes_every_shard_so_any_concurrent_change_makes_it_lose():
    # 400 - 373 = 27 cores left after it: less than 7 servers of 4 cores
    read = shards((300, 600, 300), (72, 144, 72))
    writes = plan(read, Usage(1, 2, 1), BIG, LARGEST, random.Random(0))
    assert sorted(writes) == list(range(SHARDS))
    assert writes[0] == Usage(301, 602, 301)
    assert writes[1] == Usage(72, 144, 72)  # as read: written only as a condition
    assert all(writes[i] == Usage() for i in range(2, SHARDS))  # absent: created, so a creator elsewhere loses


def test_the_margin_is_one_largest_server_per_other_shard_in_cores_and_in_memory():
    margin = SHARDS - 1
    assert spreads(BIG, Usage(400 - margin * 4, 0, 0), ONE, LARGEST)
    assert not spreads(BIG, Usage(400 - margin * 4 + 0.5, 0, 0), ONE, LARGEST)
    assert not spreads(BIG, Usage(0, 800 - margin * 8 + 1, 0), ONE, LARGEST)
    assert not spreads(BIG, Usage(), Footprint(4.5, 8), LARGEST)  # bigger than any server may be: serialize
    assert not spreads(BIG, Usage(), ONE, None)  # no largest known: never
    assert spreads(None, Usage(10_000, 0, 0), ONE, LARGEST)  # outside the pool: no budget of ours


def test_an_environment_too_small_to_ever_spread_keeps_one_row():
    assert not may_ever_spread(SMALL, LARGEST)
    assert may_ever_spread(BIG, LARGEST)
    assert plan(shards((3, 6, 3)), Usage(1, 2, 1), SMALL, LARGEST, random.Random(0)) == {0: Usage(4, 8, 4)}
    assert plan({}, Usage(1, 2, 1), SMALL, LARGEST, random.Random(0)) == {0: Usage(1, 2, 1)}


def test_asked_not_to_spread_a_commit_serializes_even_far_from_the_budget():
    writes = plan(shards((1, 2, 1)), Usage(1, 2, 1), BIG, LARGEST, random.Random(0), spread=False)
    assert sorted(writes) == list(range(SHARDS)) and writes[0] == Usage(2, 4, 2)


def test_giving_back_comes_out_of_the_shards_holding_it_and_never_goes_below_zero():
    read = shards((0.5, 1, 1), (0.25, 0.5, 1), (0, 0, 0))
    writes = plan(read, Usage(-0.75, -1.5, -2), BIG, LARGEST, random.Random(0))
    assert writes == {0: Usage(0, 0, 0), 1: Usage(0, 0, 0)}  # shard 2 untouched: it held nothing
    assert moved(shards((1, 2, 1)), Usage(-1, -2, -1), 5) == {0: Usage(0, 0, 0)}
    assert moved(shards((0, 0, 0)), Usage(-1, -2, -1), 0) == {}  # nothing to give back from


def test_a_move_within_one_environment_adds_and_takes_in_one_plan():
    writes = moved(shards((4, 8, 1), (0, 0, 0)), Usage(-2, 2, 0), 1)  # fewer cores, more memory
    assert total({i: CountShard(i, u) for i, u in {**{0: Usage(4, 8, 1), 1: Usage()}, **writes}.items()}) \
        == Usage(2, 10, 1)


@pytest.mark.parametrize(("suffix", "index"), [("", 0), ("-1", 1), ("-7", 7), ("-0", None), ("-x", None),
                                               ("x", None), ("-", None), ("-1000", None)])
def test_a_row_key_names_a_shard_only_in_its_own_form(suffix, index):
    assert shard_index(suffix) == index


# -- in a real table ------------------------------------------------------------------------------------


@pytest.fixture
def make_ledger(table):
    def make(cores: float, n: int = 1, seed: int | None = None, largest: Footprint | None = LARGEST):
        pool = [EnvironmentBudget(i, cores, 2 * cores) for i in env_ids(n)]
        return CapacityLedger(table, HUB, pool, rng=random.Random(seed), largest=largest)

    return make


def test_a_burst_spreads_over_the_shards_and_still_fills_the_environment_exactly(make_ledger, table):
    """60 starts (each delivered twice) race for 40 cores: the first land on several rows, the last serialize."""
    ledger = make_ledger(40.0)
    outcomes = race(table, ledger, [f"s{i:02d}" for i in range(60)], ONE, shuffle_seed=5, seeded=True)
    holding = {k for k, r in outcomes.items() if any(x != "full" for x in r)}
    assert len(holding) == 40
    assert counted(ledger) == {"env": (40.0, 40)}
    rows = [e for e in table.list_entities() if e["RowKey"].startswith(count_key(env_ids(1)[0]))]
    assert len(rows) == SHARDS  # spread over all of them (and the serialized commits created the rest)
    assert sum(1 for e in rows if e["servers"] > 0) > 1
    report = Report()
    for entity in table.list_entities():
        report.add(entity)
    (use,) = report.environments.values()
    assert (use.cores, use.servers, use.cores_budget) == (40.0, 40, 40.0)  # the hub's reader adds them up


def test_without_the_largest_server_known_the_count_stays_one_row(make_ledger, table):
    ledger = make_ledger(400.0, largest=None)
    race(table, ledger, [f"s{i:02d}" for i in range(24)], ONE, workers=6, shuffle_seed=5, seeded=True)
    assert counted(ledger) == {"env": (24.0, 24)}
    assert [e["RowKey"] for e in table.list_entities() if e["RowKey"].startswith("environment-")] \
        == [count_key(env_ids(1)[0])]


def test_releases_and_a_recount_keep_the_sum_and_a_count_from_an_older_release_is_read_as_shard_0(make_ledger,
                                                                                                   table):
    ledger = make_ledger(400.0, seed=1)
    env = env_ids(1)[0]
    # an older release wrote one row per environment
    table.create_entity({"PartitionKey": partition(HUB), "RowKey": count_key(env), "environment_id": env,
                         "cores": 3.0, "memory_gib": 6.0, "servers": 3})
    for i in range(10):
        ledger.reserve(f"s{i}", 1, ONE)
    assert counted(ledger) == {"env": (13.0, 13)}
    for i in range(10):
        assert ledger.release(f"s{i}", 2, fence=True)
    assert counted(ledger) == {"env": (3.0, 3)}
    count = ledger.read().counts[env.lower()]
    assert ledger.recount(env, Usage(0.0, 0.0, 0), count)
    after = ledger.read().counts[env.lower()]
    assert after.usage == Usage(0.0, 0.0, 0) and set(after.shards) == set(count.shards)
    assert not ledger.recount(env, Usage(5.0, 10.0, 5), count)  # read before the last change: refused
