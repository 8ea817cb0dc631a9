"""M3: one user cannot take a class's pool; the capacity ledger counts what each user holds (Azurite)."""

from __future__ import annotations

import random
import threading

import pytest
from capacity_support import env_ids, pool_setting
from fn_support import ENV_ID, HUB, deliver, request, status_of

from acaspawner.contract import Op, Phase
from functions.capacity import CapacityLedger, UserLimit
from functions.capacity_repair import repair_capacity
from functions.capacity_rows import UserLimits
from functions.environments import EnvironmentBudget
from functions.footprint import Footprint
from functions.lifecycle import Outcome

HALF, ONE, FOUR = Footprint(0.5, 1.0), Footprint(1.0, 2.0), Footprint(4.0, 8.0)


def ledger_of(table, servers: int = 3, cores: float = 4.0, pool_cores: float = 100) -> CapacityLedger:
    pool = [EnvironmentBudget(i, pool_cores, 2 * pool_cores) for i in env_ids(3)]
    return CapacityLedger(table, HUB, pool, rng=random.Random(1), user_limits=UserLimits(servers, cores))


def test_one_user_may_hold_so_many_servers_and_others_are_not_affected(table):
    ledger = ledger_of(table)
    for i in range(3):
        ledger.reserve(f"mallory-{i}", 1, HALF, user="mallory")
    with pytest.raises(UserLimit, match=r"you have 3 servers running.*ACA_MAX_SERVERS_PER_USER 3"):
        ledger.reserve("mallory-3", 1, HALF, user="mallory")
    ledger.reserve("alice-0", 1, HALF, user="alice")  # another user starts as ever
    assert ledger.reserve("mallory-1", 1, HALF, user="mallory")  # a duplicate of a held one still counts once
    ledger.release("mallory-0", 2, fence=True)
    ledger.reserve("mallory-3", 3, HALF, user="mallory")  # one stopped: room for one more
    users = ledger.read().users
    assert (users["mallory"].usage.servers, users["alice"].usage.servers) == (3, 1)


def test_one_user_may_hold_so_many_cores(table):
    ledger = ledger_of(table)
    ledger.reserve("bob-0", 1, ONE, user="bob")
    with pytest.raises(UserLimit, match=r"4 vCPU and the 1 your servers hold.*ACA_MAX_CORES_PER_USER"):
        ledger.reserve("bob-1", 1, FOUR, user="bob")
    ledger.reserve("bob-1", 1, ONE, user="bob")
    # the same server asking for more (a restart with a bigger size) counts what it holds as its own
    ledger.release("bob-1", 2, fence=True)
    ledger.reserve("bob-1", 3, Footprint(3.0, 6.0), user="bob")


def test_racing_starts_of_one_user_never_pass_the_limit(table):
    """Twenty named servers of one user at once (a script against the REST API): three are placed."""
    ledger = ledger_of(table)
    refused: list[str] = []

    def start(i: int) -> None:
        try:
            ledger.reserve(f"mallory-{i:02d}", 1, HALF, user="mallory")
        except UserLimit:
            refused.append(str(i))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = [r for r in ledger.read().reservations.values() if r.held]
    assert len(held) == 3 and len(refused) == 17
    assert ledger.read().users["mallory"].usage.servers == 3


def test_zero_lifts_a_limit(table):
    ledger = ledger_of(table, servers=0, cores=0)
    for i in range(8):
        ledger.reserve(f"admin-{i}", 1, ONE, user="admin")
    assert ledger.read().users["admin"].usage.servers == 8


def test_the_reconciler_recounts_what_a_user_holds(table):
    ledger = ledger_of(table)
    ledger.reserve("carol-0", 1, ONE, user="carol")
    ledger.reserve("carol-1", 1, ONE, user="carol")
    users = ledger.read().users
    ledger.recount_user("carol", users["carol"].usage.__class__(9.0, 18.0, 7), users["carol"])  # a wrong count
    repair_capacity(ledger, [], [], None, {}, lambda key: None, grace=300, now=0)
    assert ledger.read().users["carol"].usage.servers == 2


def test_a_start_beyond_the_users_limit_fails_at_once_and_says_why(make_deps):
    deps = make_deps(ACA_MAX_SERVERS_PER_USER="2", ACA_ENVIRONMENTS=pool_setting([ENV_ID], 100))
    for name in ("a", "b"):
        assert deliver(deps, request(server_name=name)) is Outcome.APPLIED
    third = request(server_name="c")
    assert deliver(deps, third) is Outcome.FAILED
    status = status_of(deps, third)
    assert status.phase is Phase.FAILED and status.error_code == "UserLimitReached"
    assert "you have 2 servers running" in status.message
    assert deps.apps.count("create") == 2  # no ARM call for the third
    deliver(deps, request(Op.STOP, server_name="a"))
    assert deliver(deps, request(server_name="c")) is Outcome.APPLIED
