"""One look serves many: what an instance remembers of the follow-ups it sent, and the sweep (real table, scripted ARM)."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

import pytest
from fn_support import request, status_of

from acaspawner.contract import Op, Phase
from functions import listing, pending_looks
from functions.app_body import TAG_GENERATION
from functions.followup import FollowUp, Step
from functions.lifecycle import Outcome, handle_message
from functions.pending_looks import LONGEST_GAP, SWEEP_AT_MOST, PendingLooks, shows_running


def follow_up(user: str = "ann", step: Step = Step.CREATE, op: Op = Op.START, since: float = 100.0,
              generation: int | None = None) -> FollowUp:
    req = request(op, user=user) if generation is None else dataclasses.replace(request(op, user=user),
                                                                                generation=generation)
    return FollowUp.first(req, step, since=since, delay=1, deadline=since + 600)


def app(f: FollowUp, state: str = "Succeeded", running: str = "Running", generation: int | None = None) -> dict:
    tags = {TAG_GENERATION: str(f.generation if generation is None else generation)}
    return {"name": f.server_key, "tags": tags, "properties": {"provisioningState": state, "runningStatus": running}}


# -- what an instance remembers ------------------------------------------------------------------------


def test_few_waiting_starts_look_every_interval_and_many_take_slots_a_tenth_of_a_second_apart():
    looks = PendingLooks()
    for i in range(10):
        looks.sent(follow_up(f"u{i}"))
    assert [looks.delay(1.0) for _ in range(3)] == [1.0, 1.0, 1.0]  # 10 a second at most: no slots needed
    looks.sent(follow_up("u10"))
    delays = [looks.delay(1.0) for _ in range(30)]
    assert delays == pytest.approx([1.0 + i / 10 for i in range(30)], abs=0.05)
    assert max(looks.delay(1.0) for _ in range(200)) == LONGEST_GAP  # booked out: never further away
    assert looks.delay(20.0) == 20.0  # never more often than the setting asks


def test_only_a_start_running_at_its_generation_in_a_listing_taken_after_its_last_look_is_taken():
    looks = PendingLooks()
    waiting = {name: follow_up(name) for name in ("done", "busy", "old", "parked", "late", "gone")}
    stop = follow_up("stopping", Step.DELETE, Op.STOP)
    for f in [*waiting.values(), stop]:
        looks.sent(f)
    late = dataclasses.replace(waiting["late"], since=200.0)
    looks.sent(late)
    listing = {
        waiting["done"].server_key: app(waiting["done"]),
        waiting["busy"].server_key: app(waiting["busy"], state="InProgress"),
        waiting["old"].server_key: app(waiting["old"], generation=waiting["old"].generation - 1),
        waiting["parked"].server_key: app(waiting["parked"], running="Stopped"),
        late.server_key: app(late),
        stop.server_key: app(stop),
    }
    taken = looks.take_running(150.0, {k.lower(): v for k, v in listing.items()})
    assert [f.server_key for f in taken] == [waiting["done"].server_key]
    assert len(looks) == 6  # the one taken is forgotten; the rest wait for their looks
    assert looks.take_running(150.0, {k.lower(): v for k, v in listing.items()}) == []


def test_a_sweep_takes_at_most_its_share_and_a_newer_chain_outlives_the_end_of_an_older_one():
    looks = PendingLooks()
    many = [follow_up(f"u{i:03d}") for i in range(SWEEP_AT_MOST + 5)]
    for f in many:
        looks.sent(f)
    listing = {f.server_key.lower(): app(f) for f in many}
    assert len(looks.take_running(150.0, listing)) == SWEEP_AT_MOST
    assert len(looks.take_running(150.0, listing)) == 5
    newer = follow_up("ann", generation=10**13)
    looks.sent(newer)
    looks.settled(newer.server_key, newer.generation - 1)
    assert len(looks) == 1
    looks.settled(newer.server_key, newer.generation)
    assert len(looks) == 0


def test_the_oldest_are_forgotten_past_the_limit(monkeypatch):
    monkeypatch.setattr(pending_looks, "KEPT_AT_MOST", 3)
    looks = PendingLooks()
    for i in range(5):
        looks.sent(follow_up(f"u{i}"))
    assert len(looks) == 3


@pytest.mark.parametrize("step", [Step.STOP, Step.DELETE])
def test_a_stop_is_never_recorded_by_another_look(step):
    f = follow_up(step=step, op=Op.STOP)
    assert not shows_running(f, app(f))


# -- in the lifecycle ------------------------------------------------------------------------------------

POLL = 0.05  # ACA_ARM_POLL_INTERVAL here: a listing older than this is taken again


@pytest.fixture
def quick(make_deps, monkeypatch):
    """Deps whose listings count as stale after ``POLL`` s (the scripted ARM finishes the moment it is told)."""
    monkeypatch.setattr(listing, "READS_PER_SECOND", 1 / POLL)  # and one page may be read that often
    return make_deps(ACA_ARM_POLL_INTERVAL=str(POLL))


def arm_done(deps) -> None:
    """ARM finishes what it holds, and every listing taken before is stale."""
    deps.apps.hold = False
    time.sleep(POLL * 2)


def held_starts(deps, *users: str) -> tuple[list, list[bytes]]:
    """Starts of ``users`` whose writes ARM works on: the requests, and their first looks (taken off the queue)."""
    starts = [request(user=user) for user in users]
    deps.apps.hold = True
    for start in starts:
        assert handle_message(deps.sealer.seal(start), deps) is Outcome.ACCEPTED
    return starts, deps.follow_ups.queue.take()


def test_a_look_records_the_other_starts_it_sees_running_and_their_own_looks_end_quietly(quick):
    starts, first_looks = held_starts(quick, "user0", "user1", "user2", "user3")
    arm_done(quick)
    assert handle_message(first_looks[0], quick) is Outcome.APPLIED
    assert all(status_of(quick, s).phase is Phase.RUNNING for s in starts)
    assert all(status_of(quick, s).url.startswith("http://") for s in starts)
    assert len(quick.looks) == 0
    assert [handle_message(body, quick) for body in first_looks[1:]] == [Outcome.IGNORED] * 3


def test_a_start_another_instance_sent_is_found_by_its_own_look(quick):
    (start,), (body,) = held_starts(quick, "ann")
    arm_done(quick)
    elsewhere = dataclasses.replace(quick, looks=PendingLooks())  # an instance that never saw this start
    assert handle_message(body, elsewhere) is Outcome.APPLIED
    assert status_of(quick, start).phase is Phase.RUNNING


def test_while_many_wait_their_next_looks_are_spread_about_ten_a_second(quick):
    _, first_looks = held_starts(quick, *(f"user{i}" for i in range(40)))
    for body in first_looks:  # all at once
        assert handle_message(body, quick) is Outcome.PENDING
    delays = [delay for _, delay in quick.follow_ups.queue.messages]
    assert delays == sorted(delays) and max(delays) in (4, 5)
    assert max(Counter(delays).values()) <= 11  # whole seconds of queue visibility: about 10 in each


def test_a_sweep_that_fails_for_another_start_leaves_it_to_its_own_look(quick, monkeypatch):
    (_, ben), first_looks = held_starts(quick, "ann", "ben")
    arm_done(quick)
    real_read = quick.storage.get_status

    def failing_for_ben(hub_id, key):
        if key == ben.server_key:
            raise RuntimeError("table unavailable")
        return real_read(hub_id, key)

    monkeypatch.setattr(quick.storage, "get_status", failing_for_ben)
    assert handle_message(first_looks[0], quick) is Outcome.APPLIED  # ann's own look is not failed by ben's
    monkeypatch.setattr(quick.storage, "get_status", real_read)
    assert status_of(quick, ben).phase is Phase.PROVISIONING
    assert handle_message(first_looks[1], quick) is Outcome.APPLIED
    assert status_of(quick, ben).phase is Phase.RUNNING


def test_a_start_a_stop_overtook_is_not_recorded_running_by_another_look(quick):
    (_, ben), first_looks = held_starts(quick, "ann", "ben")
    stop = dataclasses.replace(request(Op.STOP, user="ben"), generation=ben.generation + 1, created=time.time())
    handle_message(quick.sealer.seal(stop), quick)  # while ARM still works on ben's create
    arm_done(quick)
    handle_message(first_looks[0], quick)
    assert status_of(quick, ben).phase in (Phase.STOPPING, Phase.STOPPED)


def test_a_start_invocation_records_the_earlier_starts_that_are_done_before_their_follow_ups_arrive(quick):
    """A class larger than ARM's write bucket: starts queue ahead of the earlier starts' follow-ups."""
    (first,), waiting = held_starts(quick, "ann")  # ann's follow-up, not yet delivered
    arm_done(quick)
    handle_message(quick.sealer.seal(request(user="ben")), quick)
    assert status_of(quick, first).phase is Phase.RUNNING
    assert handle_message(waiting[0], quick) is Outcome.IGNORED
