"""What statuses mean for poll(), start() and stop(), and how they become progress events."""

from __future__ import annotations

import asyncio

import pytest

from acaspawner.contract import Phase, Status
from acaspawner.outcomes import (
    EXIT_FAILED,
    EXIT_STOPPED,
    StartOutcome,
    in_flight,
    poll_answer,
    start_outcome,
    stop_done,
)
from acaspawner.progress import PROVISIONING_MAX, ProgressFeed

NOW = 1_764_000_000.0
GEN = int(NOW * 1000)
MAX_AGE = 900


def status(phase: Phase, generation: int = GEN, url: str = "", events=()) -> Status:
    return Status(hub_id="h", server_key="jl-x-1", phase=phase, generation=generation, url=url, events=list(events))


def answer(st, generation=GEN, op="start", now=NOW, starting=False):
    return poll_answer(st, generation, op, MAX_AGE, now=now, starting=starting)


@pytest.mark.parametrize(
    "st, expected",
    [
        (status(Phase.QUEUED), None),
        (status(Phase.PROVISIONING), None),
        (status(Phase.RUNNING, url="http://a"), None),
        (status(Phase.STOPPING), EXIT_STOPPED),
        (status(Phase.STOPPED), EXIT_STOPPED),
        (status(Phase.FAILED), EXIT_FAILED),
        (None, None),  # sent a moment ago, not in the table yet
        (status(Phase.STOPPED, GEN - 5), None),  # the previous run's status, ours still queued
    ],
)
def test_poll_answers_for_our_start(st, expected):
    assert answer(st).exit_status == expected


def test_a_request_that_never_arrived_is_dead_after_the_max_age():
    later = NOW + MAX_AGE + 1
    assert answer(None, now=later).exit_status == EXIT_STOPPED
    assert answer(status(Phase.STOPPED, GEN - 5), now=later).exit_status == EXIT_FAILED
    assert in_flight(GEN, MAX_AGE, NOW + 10) and not in_flight(GEN, MAX_AGE, later)


def test_after_a_stop_an_older_status_means_stopped():
    assert answer(status(Phase.RUNNING, GEN - 5, url="http://a"), op="stop").exit_status == EXIT_STOPPED
    assert answer(None, op="stop").exit_status == EXIT_STOPPED


def test_never_started_is_stopped():
    assert answer(None, generation=0).exit_status == EXIT_STOPPED


def test_a_newer_generation_is_adopted_after_a_restart():
    newer = status(Phase.PROVISIONING, GEN + 100)
    got = answer(newer, op="stop")
    assert got.exit_status is None and got.adopt is newer
    got = answer(status(Phase.STOPPED, GEN + 100))
    assert got.exit_status == EXIT_STOPPED and got.adopt is not None
    # but never while our own start() is waiting: start() fails as superseded instead
    assert answer(newer, starting=True).adopt is None


@pytest.mark.parametrize(
    "st, expected",
    [
        (None, StartOutcome.WAIT),
        (status(Phase.RUNNING, GEN - 1, url="http://old"), StartOutcome.WAIT),
        (status(Phase.QUEUED), StartOutcome.WAIT),
        (status(Phase.RUNNING), StartOutcome.WAIT),  # running but no URL yet
        (status(Phase.RUNNING, url="http://a"), StartOutcome.RUNNING),
        (status(Phase.FAILED), StartOutcome.FAILED),
        (status(Phase.STOPPED), StartOutcome.STOPPED),
        (status(Phase.PROVISIONING, GEN + 1), StartOutcome.SUPERSEDED),
    ],
)
def test_start_outcomes(st, expected):
    assert start_outcome(st, GEN) is expected


def test_stop_done():
    assert stop_done(None, GEN)
    assert not stop_done(status(Phase.RUNNING, GEN - 1), GEN)
    assert not stop_done(status(Phase.STOPPING), GEN)
    assert stop_done(status(Phase.STOPPED), GEN) and stop_done(status(Phase.FAILED), GEN)
    assert stop_done(status(Phase.QUEUED, GEN + 1), GEN)


async def test_progress_follows_phases_and_events():
    feed = ProgressFeed()
    seen = []

    async def follow():
        async for event in feed.follow():
            seen.append(event)

    follower = asyncio.create_task(follow())
    feed.add(10, "requested")
    events = [{"phase": "queued", "message": "accepted", "time": 1}]
    feed.add_status(status(Phase.QUEUED, events=events))
    events.append({"phase": "provisioning", "message": "creating app", "time": 2})
    feed.add_status(status(Phase.PROVISIONING, events=events))
    feed.add_status(status(Phase.PROVISIONING, events=events))  # nothing new: nothing added
    for t in range(3, 10):
        events.append({"phase": "provisioning", "message": f"step {t}", "time": t})
        feed.add_status(status(Phase.PROVISIONING, events=events))
    events.append({"phase": "running", "message": "app running", "time": 10})
    feed.add_status(status(Phase.RUNNING, url="http://a", events=events))
    feed.close()
    await asyncio.wait_for(follower, 2)
    messages = [e["message"] for e in seen]
    assert messages[:3] == ["requested", "accepted", "creating app"]
    assert messages[-1] == "app running" and len(messages) == 11
    percents = [e["progress"] for e in seen]
    assert percents == sorted(percents)
    assert max(p for e, p in zip(seen, percents, strict=True) if e["message"].startswith("step")) <= PROVISIONING_MAX
    assert percents[-1] == 90
    # a second reader gets the whole story too
    assert [e async for e in feed.follow()] == seen


def test_phase_change_without_event_still_shows():
    feed = ProgressFeed()
    feed.add_status(status(Phase.PROVISIONING))
    assert feed.events[-1]["message"] == "Server provisioning"
