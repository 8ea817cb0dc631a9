"""The follow-ups an instance has sent that still wait for ARM, so that one look serves many.

In a burst every pending start has a chain of follow-ups of its own. Looking
once every ``ACA_ARM_POLL_INTERVAL`` each, a class of 100 made 100
invocations a second while ARM provisioned, all reading the same shared
listing (:mod:`functions.listing`). So an instance remembers the follow-ups
it sent, and:

- after its own work, every lifecycle invocation *sweeps*: it records
  ``running`` for every remembered start whose app a fresh listing
  (:meth:`AppListing.freshness`) shows running at its generation (the listing was
  requested after that start's last look, as its own look would require).
  Start invocations sweep too: while ARM's write throttling paces a large
  class's starts, the queue holds their follow-ups back behind them;
- a follow-up that finds ARM still at work comes back every
  ``ACA_ARM_POLL_INTERVAL`` while few wait; while many do, it takes the next
  free slot of the instance's looks, ``1 / LOOKS_PER_SECOND`` s apart (at
  most ``LONGEST_GAP`` away). So looks stay spread evenly over time, even
  when a burst's starts all began at once, and every moment some look sees a
  fresh listing.

Each chain still looks on its own: a start this instance does not remember
(its follow-up was sent by another instance, or this one restarted) is found
by its own look, at most ``LONGEST_GAP`` late. A sweep that fails leaves the
start to its own looks.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from acaspawner.contract import Op

from .arm import app_generation
from .followup import FollowUp, Step

#: looks a second that an instance aims at, in all, while many follow-ups wait
LOOKS_PER_SECOND = 10.0
#: the longest a waiting follow-up stays away (well below the 30 s between progress notes)
LONGEST_GAP = 10.0
#: outcomes one invocation records for others, so that no invocation runs long
SWEEP_AT_MOST = 20
#: follow-ups remembered at most (the oldest are forgotten first: their own looks still come)
KEPT_AT_MOST = 5000


def shows_running(follow_up: FollowUp, app: dict[str, Any] | None) -> bool:
    """Whether ``app`` is what ``follow_up`` (a start) waits for, done: running at its generation."""
    if app is None or follow_up.op is not Op.START or follow_up.step not in (Step.CREATE, Step.START):
        return False
    props = app.get("properties") or {}
    return (app_generation(app) == follow_up.generation and props.get("provisioningState") == "Succeeded"
            and props.get("runningStatus") != "Stopped")


class PendingLooks:
    """The follow-ups this instance sent that wait for ARM, by server key (the latest per server)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: OrderedDict[str, FollowUp] = OrderedDict()
        self._next_slot = 0.0  # time.monotonic() of the next free look slot

    def __len__(self) -> int:
        return len(self._waiting)

    def sent(self, follow_up: FollowUp) -> None:
        with self._lock:
            self._waiting.pop(follow_up.server_key, None)
            self._waiting[follow_up.server_key] = follow_up
            while len(self._waiting) > KEPT_AT_MOST:
                self._waiting.popitem(last=False)

    def settled(self, server_key: str, generation: int) -> None:
        """The chain of ``server_key`` at ``generation`` ended (a newer one of the server stays remembered)."""
        with self._lock:
            known = self._waiting.get(server_key)
            if known is not None and known.generation <= generation:
                del self._waiting[server_key]

    def delay(self, interval: float) -> float:
        """Seconds until a waiting follow-up looks again: ``interval`` while few wait; while many do, until the
        next free slot of this instance's looks (``1 / LOOKS_PER_SECOND`` apart), at most ``LONGEST_GAP``."""
        with self._lock:
            if len(self._waiting) <= LOOKS_PER_SECOND * interval:
                return interval
            now = time.monotonic()
            slot = max(now + interval, self._next_slot)
            self._next_slot = slot + 1.0 / LOOKS_PER_SECOND
            return max(interval, min(slot - now, LONGEST_GAP))

    def take_running(self, taken: float, apps: Mapping[str, dict[str, Any]]) -> list[FollowUp]:
        """Remembered starts whose app ``apps`` (a listing requested at ``taken``, by lower-case name) shows
        running, and that looked last before ``taken``; forgotten here, at most ``SWEEP_AT_MOST``."""
        with self._lock:
            found = [f for f in self._waiting.values()
                     if f.since <= taken and shows_running(f, apps.get((f.app or f.server_key).lower()))]
            found = found[:SWEEP_AT_MOST]
            for follow_up in found:
                del self._waiting[follow_up.server_key]
        return found
