"""The lifecycle places starts in environments with room (scripted ARM, real table in Azurite)."""

from __future__ import annotations

import dataclasses

import pytest
from capacity_support import counted, env_ids, held_by_environment, pool_setting
from fn_support import deliver, request, status_of

from acaspawner.contract import Op, Phase
from functions.arm import TerminalArmError
from functions.capacity import NoCapacity
from functions.footprint import Footprint
from functions.lifecycle import Outcome, handle_message
from functions.placement import NO_CAPACITY

ONE_CORE = {"cpu": 1.0, "memory": "2Gi"}


@pytest.fixture
def pool_deps(make_deps):
    """``make(n, cores, **settings)`` → Deps whose pool is ``n`` environments of ``cores`` cores."""

    def make(n: int = 3, cores: float = 1, **overrides: str):
        return make_deps(ACA_ENVIRONMENTS=pool_setting(env_ids(n), cores), **overrides)

    return make


def start(user: str, **changes):
    return request(Op.START, user=user, **{**ONE_CORE, **changes})


def environment_of(deps, req) -> str:
    return deps.apps.apps[req.server_key]["properties"]["environmentId"]


def test_starts_spread_over_the_pool_and_the_arm_body_names_the_environment(pool_deps):
    deps = pool_deps(3, cores=1)
    starts = [start(f"u{i}") for i in range(3)]
    for req in starts:
        assert deliver(deps, req) is Outcome.APPLIED
        assert status_of(deps, req).phase is Phase.RUNNING
    assert sorted(environment_of(deps, r) for r in starts) == sorted(env_ids(3))
    assert counted(deps.capacity) == {"env": (1.0, 1), "env-2": (1.0, 1), "env-3": (1.0, 1)}


def test_when_every_environment_is_full_a_start_fails_at_once_with_its_own_code(pool_deps):
    deps = pool_deps(3, cores=1)
    for i in range(3):
        deliver(deps, start(f"u{i}"))
    creates = deps.apps.count("create")
    late = start("late")
    assert handle_message(deps.sealer.seal(late), deps) is Outcome.FAILED
    status = status_of(deps, late)
    assert status.phase is Phase.FAILED and status.error_code == NO_CAPACITY
    assert status.message.startswith("no capacity for 1 vCPU / 2 GiB: all 3 environments are full (3 of 3 cores")
    assert deps.apps.count("create") == creates  # no ARM write, no follow-up to wait for
    assert deps.follow_ups.queue.messages == []
    assert late.server_key not in {r.server_key for r in deps.capacity.read().reservations.values() if r.held}


def test_a_stop_or_delete_gives_the_room_back(pool_deps):
    deps = pool_deps(1, cores=1)
    deliver(deps, start("ann"))
    assert deliver(deps, start("ben")) is Outcome.FAILED
    deliver(deps, request(Op.STOP, user="ann"))
    assert counted(deps.capacity) == {"env": (0.0, 0)}
    assert deliver(deps, start("ben")) is Outcome.APPLIED
    deliver(deps, request(Op.DELETE, user="ben"))
    assert counted(deps.capacity) == {"env": (0.0, 0)}


def test_a_duplicate_start_counts_once(pool_deps):
    deps = pool_deps(1, cores=2)
    req = start("ann")
    sealed = deps.sealer.seal(req)
    handle_message(sealed, deps)
    handle_message(sealed, deps)  # delivered again before ARM finished
    deliver(deps, sealed)  # and once it runs
    assert status_of(deps, req).phase is Phase.RUNNING
    assert counted(deps.capacity) == {"env": (1.0, 1)}
    assert deps.apps.count("create") == 1


@pytest.mark.parametrize("how", ["refused", "operation failed"])
def test_a_failed_create_gives_the_room_back(pool_deps, how):
    deps = pool_deps(1, cores=1)
    if how == "refused":
        deps.apps.failures_for["create"] = [TerminalArmError("ContainerAppInvalidResourceTotal", "no such pair")]
    else:
        deps.apps.fail_next = TerminalArmError("ContainerAppOperationError", "image pull failed")
    req = start("ann")
    assert deliver(deps, req) is Outcome.FAILED
    assert counted(deps.capacity) == {"env": (0.0, 0)}
    assert deliver(deps, start("ben")) is Outcome.APPLIED


def fill(deps, environment_id: str, name: str) -> None:
    """Another server holding one core in ``environment_id``."""
    deps.capacity.reserve(name, 1, Footprint(1.0, 2.0), pinned=environment_id)


def test_a_restart_goes_back_to_its_environment(pool_deps):
    deps = pool_deps(2, cores=4)
    first = start("ann")
    deliver(deps, first)
    home = environment_of(deps, first)
    deliver(deps, request(Op.STOP, user="ann"))
    fill(deps, home, "filler")  # her environment is the fuller one now ...
    again = start("ann")
    deliver(deps, again)
    assert environment_of(deps, again) == home  # ... but she goes back while it has room
    assert held_by_environment(deps.capacity)[home.rsplit("/", 1)[1]] == 2
    newcomer = start("ben")
    deliver(deps, newcomer)
    assert environment_of(deps, newcomer) != home  # a newcomer goes where most cores are free


def test_a_parked_app_is_started_where_it_is(pool_deps):
    deps = pool_deps(2, cores=2, ACA_STOP_MODE="stop")
    first = start("ann")
    deliver(deps, first)
    home = environment_of(deps, first)
    other = next(e for e in env_ids(2) if e != home)
    deliver(deps, request(Op.STOP, user="ann"))
    assert deps.apps.apps[first.server_key]["properties"]["runningStatus"] == "Stopped"
    assert counted(deps.capacity)[home.rsplit("/", 1)[1]] == (0.0, 0)  # a parked app holds no cores
    fill(deps, other, "filler")
    blocker = start("ben")
    deliver(deps, blocker)
    assert environment_of(deps, blocker) == home  # the emptiest: ben takes one of ann's cores ...
    fill(deps, home, "filler2")  # ... and another server the second
    again = start("ann")
    assert deliver(deps, again) is Outcome.FAILED  # the other environment has room, but her app cannot move
    status = status_of(deps, again)
    assert status.error_code == NO_CAPACITY and "where this server's container app is" in status.message
    assert environment_of(deps, again) == home


def test_a_stop_that_overtakes_a_start_leaves_nothing_held(pool_deps):
    deps = pool_deps(1, cores=1)
    req = start("ann")
    stop = request(Op.STOP, user="ann")
    deps.apps.after_create = lambda: deliver(deps, stop)  # the stop arrives while ARM creates the app
    deliver(deps, req)
    assert status_of(deps, stop).phase is Phase.STOPPED
    assert deps.apps.apps == {}
    assert counted(deps.capacity) == {"env": (0.0, 0)}


def test_a_start_claimed_before_a_stop_that_finished_first_does_not_hold(pool_deps):
    deps = pool_deps(1, cores=1)
    req = start("ann")
    stop = request(Op.STOP, user="ann", generation=req.generation + 1)
    original = deps.capacity.reserve

    def stop_first(*args, **kwargs):  # the stop runs between the start's claim and its reservation
        deps.capacity.reserve = original
        deliver(deps, stop)
        return original(*args, **kwargs)

    deps.capacity.reserve = stop_first
    assert deliver(deps, req) is Outcome.IGNORED
    assert deps.apps.count("create") == 0
    assert status_of(deps, req).phase is Phase.STOPPED
    assert counted(deps.capacity) == {}


class StaleListing:
    """For a look at any age (a start's): a listing taken before the app it shows was deleted; for a look
    that needs a fresh one (a follow-up's): the real listing."""

    def __init__(self, apps: dict[str, dict], real):
        self.apps = apps
        self.real = real

    def find(self, name: str, since: float) -> dict | None:
        return self.apps.get(name) if since == 0.0 else self.real.find(name, since)

    def latest(self, since: float = float("-inf")):
        return self.real.latest(since)

    def freshness(self, interval: float) -> float:
        return self.real.freshness(interval)


def test_an_app_a_stale_listing_still_shows_does_not_pin_a_restart(pool_deps):
    deps = pool_deps(2, cores=1)
    first = start("ann")
    deliver(deps, first)
    home = environment_of(deps, first)
    shown = {first.server_key: dict(deps.apps.apps[first.server_key])}
    deliver(deps, request(Op.STOP, user="ann"))
    assert first.server_key not in deps.apps.apps
    fill(deps, home, "filler")  # her old environment is full now
    stale = dataclasses.replace(deps, listing=StaleListing(shown, deps.listing))
    again = start("ann")
    assert deliver(stale, again) is Outcome.APPLIED
    assert environment_of(deps, again) != home


def test_a_twin_delivery_told_no_capacity_leaves_the_others_hold(pool_deps):
    """A start delivered twice at once: the one that found no room must not give back what the other holds."""
    deps = pool_deps(1, cores=1)
    req = start("ann")
    sealed = deps.sealer.seal(req)
    real_reserve = deps.capacity.reserve

    def full(*args, **kwargs):
        raise NoCapacity("no capacity for 1 vCPU / 2 GiB: the environment is full")

    def twin_arrives():  # while the first delivery's create is with ARM (its hold taken)
        deps.capacity.reserve = full
        try:
            assert handle_message(sealed, deps) is Outcome.FAILED
        finally:
            deps.capacity.reserve = real_reserve

    deps.apps.before_create = twin_arrives
    handle_message(sealed, deps)
    assert req.server_key in deps.apps.apps  # the first delivery's app exists ...
    assert counted(deps.capacity) == {"env": (1.0, 1)}  # ... and so does its hold
