"""The reconciler's capacity step: what a crash between two steps leaves is repaired, and the report."""

from __future__ import annotations

import dataclasses
import time

import pytest
from capacity_support import counted, env_ids, pool_setting
from fn_support import HUB, deliver, request, status_of

from acaspawner.contract import Op, Phase, Status
from functions.capacity_repair import CapacityRepair
from functions.capacity_rows import count_key
from functions.footprint import Footprint

GRACE = 300.0
ONE = Footprint(1.0, 2.0)
ONE_CORE = {"cpu": 1.0, "memory": "2Gi"}


@pytest.fixture
def deps(make_deps):
    made = make_deps(ACA_ENVIRONMENTS=pool_setting(env_ids(2), 4))
    made.storage.ensure_table()  # the lifecycle and the reconciler read statuses first, which creates it
    return made


def repair(deps, *, after: float = GRACE + 1, forget_after: float = float("inf")):
    """One capacity step as the reconciler runs it, ``after`` seconds from now."""
    apps = {a["name"]: a for a in deps.apps.list()}
    statuses = {s.server_key: s for s in deps.storage.list_statuses(HUB)}
    step = CapacityRepair(deps.capacity, deps.capacity.pool, GRACE, time.time() + after, forget_after)
    return step.run(apps, statuses, lambda key: deps.storage.get_status(HUB, key))


def put_status(deps, key: str, phase: Phase, user: str = "x") -> None:
    deps.storage.write_status(Status(hub_id=HUB, server_key=key, phase=phase, generation=1, user=user))


def test_a_reservation_nobody_finished_is_released_after_the_grace_period(deps):
    deps.capacity.reserve("crashed", 1, ONE)  # the start died before it recorded anything
    report = repair(deps, after=10)
    assert report.released == []
    assert sum(servers for _, servers in counted(deps.capacity).values()) == 1
    report = repair(deps)
    assert report.released == ["crashed"]
    assert {name: usage for name, usage in counted(deps.capacity).items() if usage[1]} == {}


@pytest.mark.parametrize("phase, kept", [(Phase.FAILED, False), (Phase.STOPPED, False), (Phase.PROVISIONING, True),
                                         (Phase.RUNNING, True)])
def test_a_reservation_is_kept_while_its_server_is_active(deps, phase, kept):
    deps.capacity.reserve("s1", 1, ONE)
    put_status(deps, "s1", phase)
    report = repair(deps)
    assert (report.released == []) is kept


def test_a_reservation_whose_app_runs_is_kept_whatever_the_status_says(deps):
    req = request(Op.START, user="ann", **ONE_CORE)
    deliver(deps, req)
    status = status_of(deps, req)
    deps.storage.write_status(status.with_event(Phase.FAILED, "marked failed, app still up"))
    assert repair(deps).released == []
    assert sum(servers for _, servers in counted(deps.capacity).values()) == 1


def test_an_app_without_a_reservation_is_adopted(deps):
    unplaced = dataclasses.replace(deps, capacity=None)  # as the functions ran before placement existed
    req = request(Op.START, user="ann", **ONE_CORE)
    deliver(unplaced, req)
    assert counted(deps.capacity) == {}
    report = repair(deps)
    assert report.adopted == [req.server_key]
    assert counted(deps.capacity) == {"env": (1.0, 1)}  # ACA_ENVIRONMENT_ID, where it was created
    assert repair(deps).adopted == []  # once
    deliver(deps, request(Op.STOP, user="ann"))  # the lifecycle releases what the reconciler adopted
    assert counted(deps.capacity) == {"env": (0.0, 0)}


def test_an_app_released_a_moment_ago_is_not_adopted_again_yet(deps):
    req = request(Op.START, user="ann", **ONE_CORE)
    deliver(deps, req)
    key = req.server_key
    deps.capacity.release(key, req.generation, exact=True)  # e.g. its start was recorded failed, the app lives on
    assert repair(deps, after=10).adopted == []
    assert repair(deps).adopted == [key]


def test_a_count_that_drifted_is_recounted(deps):
    deps.capacity.reserve("s1", 1, ONE, pinned=env_ids(2)[1])
    put_status(deps, "s1", Phase.RUNNING)
    entity = deps.capacity.table.get_entity(deps.capacity.partition, count_key(env_ids(2)[1]))
    entity["cores"], entity["servers"] = 7.0, 5
    deps.capacity.table.update_entity(entity)
    entity["RowKey"] = count_key(env_ids(2)[0])  # and a count for an environment nothing holds anything in
    deps.capacity.table.upsert_entity({**entity, "environment_id": env_ids(2)[0]})
    report = repair(deps)
    assert sorted(report.recounted) == ["env", "env-2"]
    assert counted(deps.capacity) == {"env": (0.0, 0), "env-2": (1.0, 1)}


def test_the_report_gives_servers_cores_in_use_and_cores_left_per_environment(deps):
    deps.capacity.reserve("s1", 1, ONE, pinned=env_ids(2)[0])
    deps.capacity.reserve("s2", 1, Footprint(0.5, 1.0), pinned=env_ids(2)[0])
    deps.capacity.reserve("s3", 1, ONE, pinned="/subscriptions/s/resourceGroups/r/providers/Microsoft.App/"
                                                "managedEnvironments/retired")
    for key in ("s1", "s2", "s3"):
        put_status(deps, key, Phase.RUNNING)
    text = repair(deps).text()
    assert ("environments: env servers=2 cores=1.5/4 cores_left=2.5; env-2 servers=0 cores=0/4 cores_left=4; "
            "retired servers=1 cores=1 (not in ACA_ENVIRONMENTS)") in text


def test_without_a_complete_listing_nothing_is_adopted_or_released(deps):
    deps.capacity.reserve("crashed", 1, ONE)
    step = CapacityRepair(deps.capacity, deps.capacity.pool, GRACE, time.time() + 3600)
    report = step.run(None, {}, lambda key: None)
    assert report.released == [] and report.adopted == []
    assert sum(e.servers for e in report.environments) == 1


FORGET_AFTER = 15 * 60 + GRACE  # the seal's maximum age and the grace period, as the reconciler passes it


def reservation_rows(deps) -> set[str]:
    return set(deps.capacity.read().reservations)


def test_reservations_released_long_ago_whose_server_has_no_app_are_forgotten(make_deps):
    deps = make_deps(ACA_ENVIRONMENTS=pool_setting(env_ids(2), 4), ACA_STOP_MODE="stop")
    deps.storage.ensure_table()
    deps.capacity.reserve("gone", 1, ONE)
    deps.capacity.release("gone", 2, fence=True)  # its stop: released, the app deleted
    deps.capacity.reserve("held", 1, ONE)
    put_status(deps, "held", Phase.RUNNING)
    parked = request(Op.START, user="pat", **ONE_CORE)
    deliver(deps, parked)
    deliver(deps, request(Op.STOP, user="pat"))  # parked: released, its app kept (stopped) for the next start
    assert not deps.capacity.read().reservations[parked.server_key].held
    before = reservation_rows(deps)
    assert before == {"gone", "held", parked.server_key}

    report = repair(deps, after=FORGET_AFTER - 60, forget_after=FORGET_AFTER)
    assert report.forgotten == 0 and reservation_rows(deps) == before  # not old enough
    report = repair(deps, after=FORGET_AFTER + 1, forget_after=FORGET_AFTER)
    assert report.forgotten == 1 and "forgotten=1" in report.text()
    assert reservation_rows(deps) == {"held", parked.server_key}
    assert sorted(counted(deps.capacity).values()) in ([(0.0, 0), (1.0, 1)], [(1.0, 1)])  # "held" is untouched


def test_a_reservation_that_changed_since_it_was_read_is_not_forgotten(deps):
    deps.capacity.reserve("s1", 1, ONE)
    deps.capacity.release("s1", 2, fence=True)
    read = deps.capacity.read().reservations["s1"]
    deps.capacity.reserve("s1", 3, ONE)  # a new start of the server, between the reconciler's read and its delete
    assert deps.capacity.forget("s1", read.etag) is False
    assert deps.capacity.read().reservations["s1"].held
