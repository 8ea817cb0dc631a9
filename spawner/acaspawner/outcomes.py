"""What a status in the table means for the spawner: pure decisions, no I/O.

The spawner knows the generation and op of the last request it sent; the
table holds whatever generation the functions applied last. Requests are
at-least-once and unordered, so "the table shows an older generation" means
"ours is still queued" (for a while), and "a newer one" means somebody sent a
later request for the same server (this hub before a restart, or a stop).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from .contract import Op, Phase, Status

#: exit statuses poll() reports (JupyterHub only logs them)
EXIT_STOPPED = 0
EXIT_FAILED = 1


class StartOutcome(StrEnum):
    WAIT = "wait"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"
    SUPERSEDED = "superseded"


def owned(status: Status | None, user: str, server_name: str) -> Status | None:
    """``status`` if it records this user's server; None if the row under the key is another server's.

    Keys are unique in practice (65-bit hashes), but a row naming someone else
    must never be adopted: its URL would send this user's browser to another
    user's server.
    """
    if status is None or (status.user, status.server_name) == (user, server_name):
        return status
    return None


def in_flight(generation: int, max_age: float, now: float | None = None) -> bool:
    """Could a request of ``generation`` (milliseconds) still be waiting in the queue?

    The functions drop requests older than the sealing max age, so after that a
    request that never reached the table never will.
    """
    now_ms = (time.time() if now is None else now) * 1000
    return now_ms - generation < max_age * 1000


def start_outcome(status: Status | None, generation: int) -> StartOutcome:
    """Where the start of ``generation`` stands, given the server's status."""
    if status is None or status.generation < generation:
        return StartOutcome.WAIT  # not applied yet
    if status.generation > generation:
        return StartOutcome.SUPERSEDED
    if status.phase is Phase.RUNNING:
        return StartOutcome.RUNNING if status.url else StartOutcome.WAIT
    if status.phase is Phase.FAILED:
        return StartOutcome.FAILED
    if status.phase in (Phase.STOPPING, Phase.STOPPED):
        return StartOutcome.STOPPED
    return StartOutcome.WAIT


def stop_done(status: Status | None, generation: int) -> bool:
    """Has the stop of ``generation`` been carried out (or overtaken)?"""
    if status is None:
        return True  # no such server (any more)
    if status.generation < generation:
        return False
    if status.generation > generation:
        return True  # a later request owns the server now
    return status.phase in (Phase.STOPPED, Phase.FAILED)


@dataclass(frozen=True)
class PollAnswer:
    """``exit_status`` for ``poll()`` (``None`` = running or starting); ``adopt`` = a newer generation to take over."""

    exit_status: int | None
    adopt: Status | None = None


def poll_answer(
    status: Status | None,
    generation: int,
    last_op: str,
    max_age: float,
    now: float | None = None,
    starting: bool = False,
) -> PollAnswer:
    """Is the server of the spawner whose last request was ``last_op`` at ``generation`` alive?"""
    if not generation:
        return PollAnswer(EXIT_STOPPED)  # never started, nothing loaded
    if status is None:
        alive = last_op == Op.START and in_flight(generation, max_age, now)
        return PollAnswer(None if alive else EXIT_STOPPED)
    adopt = None
    if status.generation > generation:
        if starting:
            return PollAnswer(None)  # start() sees it too and fails as superseded
        # a later request for this very server: this hub sent it before a restart
        adopt, generation, last_op = status, status.generation, Op.START if status.phase.is_active else Op.STOP
    if status.generation < generation:
        if last_op != Op.START:
            return PollAnswer(EXIT_STOPPED)  # our stop or delete is on its way
        return PollAnswer(None if in_flight(generation, max_age, now) else EXIT_FAILED)
    if status.phase.is_active:
        return PollAnswer(None, adopt)
    if status.phase is Phase.FAILED:
        return PollAnswer(EXIT_FAILED, adopt)
    return PollAnswer(EXIT_STOPPED, adopt)
