"""The lifecycle's ordering rules, pure: what one delivery may do given the status row it finds.

See :mod:`functions.lifecycle` for the design these rules serve.
"""

from __future__ import annotations

from enum import StrEnum

from acaspawner.contract import Op, Phase, Request, Status

from .followup import FollowUp

#: how often one invocation re-reads and re-decides after losing an ETag race
MAX_RACES = 8


class Outcome(StrEnum):
    """What became of one delivery (the host only cares whether the function raised)."""

    APPLIED = "applied"  # the request's effect is in place and recorded
    ACCEPTED = "accepted"  # ARM took the write; a follow-up will observe it
    PENDING = "pending"  # a follow-up found ARM still working and sent the next one
    DUPLICATE = "duplicate"  # it had been applied already; made sure of it
    IGNORED = "ignored"  # stale, or overtaken by a newer/terminal request
    REJECTED = "rejected"  # refused by policy: failed status, no ARM call
    CONFLICT = "conflict"  # the key's row or app belongs to another server: left untouched
    FAILED = "failed"  # ARM refused, the app failed, the deadline passed, or errors outlasted the last delivery
    POISONED = "poisoned"  # untrusted or unreadable: on the poison queue


class Verdict(StrEnum):
    PROCEED = "proceed"
    STALE = "stale"  # the table holds a newer generation
    SUPERSEDED = "superseded"  # same generation, a stop/delete got there first
    DONE = "done"  # same generation, already applied


class RetryLater(Exception):
    """A transient failure: the host should deliver the message again."""


def decide(current: Status | None, request: Request | FollowUp) -> Verdict:
    """Whether ``request`` may act, given the status entity ``current`` (pure)."""
    if current is None or current.generation < request.generation:
        return Verdict.PROCEED
    if current.generation > request.generation:
        return Verdict.STALE
    if request.op is Op.START:
        if current.phase in (Phase.STOPPING, Phase.STOPPED):
            return Verdict.SUPERSEDED
        if current.phase in (Phase.RUNNING, Phase.FAILED):
            return Verdict.DONE  # a failure of this generation is final too
        return Verdict.PROCEED  # queued/provisioning: an earlier delivery was cut short
    if request.op is Op.STOP and current.phase is Phase.STOPPED:
        return Verdict.DONE
    return Verdict.PROCEED  # a stop/delete overrides anything else at its generation


_FINAL = (Phase.RUNNING, Phase.STOPPED, Phase.FAILED)


def settled(found: Phase, wanted: Phase) -> bool:
    """True when ``found`` (same generation) should stand instead of writing ``wanted``."""
    if found is wanted:
        return True
    if wanted not in _FINAL:  # a progress note never overwrites an outcome
        return found in _FINAL
    return wanted is Phase.FAILED and found is Phase.RUNNING  # the app exists: success stands
