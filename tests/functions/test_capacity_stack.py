"""Placement end to end: dev host → ARM emulator with three environments of 10 cores each → Azurite.

The emulator enforces each environment's core quota the way ACA does (a
replica past the quota is refused), so an over-committed environment would
show as a refused provisioning in its own accounting, not only in the
functions' ledger.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from capacity_support import counted, pool_setting
from fn_support import HUB, request
from test_lifecycle_stack import Stack, make_stack  # noqa: F401 - the fixture is used by name
from waiting import wait_until

from acaspawner.contract import Op, Phase, Request
from functions.capacity import CapacityLedger
from functions.placement import NO_CAPACITY
from local.emulator import pytest_fixtures
from local.emulator.emulator import DEFAULT_ENVIRONMENT, DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION
from local.emulator.model import environment_id
from local.tinyapp import APP_COMMAND

aca_emulator_factory = pytest_fixtures.aca_emulator_factory

NAMES = [DEFAULT_ENVIRONMENT, "cae-b", "cae-c"]
IDS = [environment_id(DEFAULT_SUBSCRIPTION, DEFAULT_RESOURCE_GROUP, n) for n in NAMES]
CORES = 10


@pytest.fixture
def pool_stack(make_stack) -> Stack:  # noqa: F811
    """Three emulated environments of 10 cores (quota enforced), the functions' pool set to the same."""
    return make_stack({"more_environments": NAMES[1:], "core_quota": CORES, "provisioning_delay": 0.5,
                       "retry_after": 1}, listen=True, PYTHON_THREADPOOL_THREAD_COUNT="6",
                      ACA_ENVIRONMENTS=pool_setting(IDS, CORES))


def one_core(user: str) -> Request:
    return request(Op.START, user=user, cpu=1.0, memory="2Gi", command=APP_COMMAND, args=[])


def wait_final(stack: Stack, reqs: list[Request], timeout: float = 240) -> dict[str, Phase]:
    """Wait until each request's status is running, stopped or failed at its generation; their phases by key."""
    final = (Phase.RUNNING, Phase.STOPPED, Phase.FAILED)
    deadline = time.monotonic() + timeout
    while True:
        rows = {s.server_key: s for s in stack.storage.list_statuses(HUB)}
        phases = {r.server_key: rows[r.server_key].phase for r in reqs
                  if r.server_key in rows and rows[r.server_key].generation == r.generation
                  and rows[r.server_key].phase in final}
        if len(phases) == len(reqs):
            return phases
        assert time.monotonic() < deadline, f"{len(reqs) - len(phases)} of {len(reqs)} not final"
        time.sleep(0.2)


def apps_per_environment(stack: Stack) -> Counter:
    """From the emulator's own records: apps that hold cores, by environment."""
    usage = stack.emulator.environment_usage
    return Counter({name: usage[name]["apps_holding_cores"] for name in NAMES})


def assert_never_overcommitted(stack: Stack) -> None:
    for name, usage in stack.emulator.environment_usage.items():
        assert usage["peak_cores"] <= CORES, (name, usage)
        assert usage["quota_refusals"] == 0, (name, usage)


def test_a_class_of_thirty_fills_three_environments_and_the_next_start_is_told_why(pool_stack):
    stack = pool_stack
    starts = [one_core(f"s{i:02d}") for i in range(30)]
    for req in starts:
        stack.send(req)
    phases = wait_final(stack, starts)
    assert Counter(phases.values()) == {Phase.RUNNING: 30}, [stack.status(r).message for r in starts
                                                             if phases[r.server_key] is not Phase.RUNNING]
    assert apps_per_environment(stack) == {name: 10 for name in NAMES}
    assert_never_overcommitted(stack)

    # the 31st: refused by the functions themselves, in the invocation that received it. First the earlier
    # starts' own follow-ups come back (a look recorded most of them running before theirs arrived)
    wait_until(lambda: sum(stack.host.queue_lengths().values()) == 0, timeout=60)
    creates, invocations = stack.emulator.stats["creates"], stack.host.stats["lifecycle"].invocations
    late = one_core("late")
    sent = time.monotonic()
    stack.send(late)
    wait_final(stack, [late], timeout=60)
    took = time.monotonic() - sent
    status = stack.status(late)
    assert status.phase is Phase.FAILED and status.error_code == NO_CAPACITY
    assert status.message.startswith("no capacity for 1 vCPU / 2 GiB: all 3 environments are full "
                                     "(30 of 30 cores in use)")
    assert stack.emulator.stats["creates"] == creates  # no ARM write for it ...
    wait_until(lambda: sum(stack.host.queue_lengths().values()) == 0, timeout=60)
    assert stack.host.stats["lifecycle"].invocations == invocations + 1  # ... and no follow-up to wait for
    print(f"the 31st start failed {took:.2f} s after it was sent")

    # five stop, five others start in the room they leave
    stops = [request(Op.STOP, user=f"s{i:02d}") for i in range(5)]
    for req in stops:
        stack.send(req)
    assert set(wait_final(stack, stops).values()) == {Phase.STOPPED}
    assert sum(apps_per_environment(stack).values()) == 25
    again = [one_core(f"t{i}") for i in range(5)]
    for req in again:
        stack.send(req)
    assert set(wait_final(stack, again).values()) == {Phase.RUNNING}
    assert sum(apps_per_environment(stack).values()) == 30
    assert_never_overcommitted(stack)


def test_forty_starts_with_duplicates_never_overcommit_an_environment(pool_stack):
    stack = pool_stack
    starts = [one_core(f"d{i:02d}") for i in range(40)]
    sealed = {}
    for i, req in enumerate(starts):
        sealed[req.server_key] = stack.send(req)
        if i % 3 == 0:  # a duplicate delivery, racing the first
            stack.host.send("lifecycle", sealed[req.server_key])
    phases = wait_final(stack, starts)
    failed = [stack.status(r) for r in starts if phases[r.server_key] is Phase.FAILED]
    assert Counter(phases.values()) == {Phase.RUNNING: 30, Phase.FAILED: 10}, [s.message for s in failed]
    assert {s.error_code for s in failed} == {NO_CAPACITY}, [s.message for s in failed]
    assert_never_overcommitted(stack)
    assert apps_per_environment(stack) == {name: 10 for name in NAMES}
    assert stack.emulator.stats["creates"] == 30  # every app created once, duplicates or not

    # late duplicates of every start change nothing
    for body in sealed.values():
        stack.host.send("lifecycle", body)
    stack.drain(timeout=120)
    ledger = CapacityLedger(stack.storage.table, HUB, stack.settings.environments)
    assert counted(ledger) == {name: (10.0, 10) for name in NAMES}
    assert stack.emulator.stats["creates"] == 30
    assert Counter(s.phase for s in stack.storage.list_statuses(HUB)) == {Phase.RUNNING: 30, Phase.FAILED: 10}
    assert_never_overcommitted(stack)
