"""Progress of a spawn, from the status table to JupyterHub's spawn-pending page.

``start()`` feeds every status it sees into a :class:`ProgressFeed`; the
spawner's ``progress()`` generator follows the feed. Percentages rise with
the phase (queued → provisioning → starting → ready) and never go back, and
each new event the functions recorded (their own progress messages) becomes
one message on the page.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from .contract import Phase, Status

REQUESTED = 10
QUEUED = 20
PROVISIONING = 40
PROVISIONING_MAX = 80
STARTING = 90
READY = 95  # JupyterHub itself reports 100 once the server answers HTTP

_PHASE_PROGRESS = {
    Phase.QUEUED: QUEUED,
    Phase.PROVISIONING: PROVISIONING,
    Phase.RUNNING: STARTING,
}


class ProgressFeed:
    """An append-only list of progress events that several readers can follow."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed = False
        self._changed = asyncio.Event()
        self._percent = 0
        self._seen: set[tuple[Any, ...]] = set()
        self._phase: Phase | None = None

    def add(self, progress: int, message: str) -> None:
        """Append one event; the percentage never decreases."""
        self._percent = max(self._percent, min(int(progress), 100))
        self.events.append({"progress": self._percent, "message": message})
        self._notify()

    def add_status(self, status: Status) -> None:
        """Append what is new in ``status`` (this generation's): its phase and the functions' events."""
        new_events = []
        for event in status.events:
            mark = (event.get("time"), event.get("phase"), event.get("message"))
            if mark not in self._seen:
                self._seen.add(mark)
                new_events.append(event)
        for event in new_events:
            try:
                phase = Phase(event.get("phase"))
            except ValueError:
                phase = status.phase
            if phase in _PHASE_PROGRESS:
                self.add(self._percent_for(phase), str(event.get("message") or phase.value))
        if status.phase is not self._phase and status.phase in _PHASE_PROGRESS and not new_events:
            # a phase change without an event of its own still shows on the page
            self.add(self._percent_for(status.phase), status.message or f"Server {status.phase.value}")
        self._phase = status.phase

    def _percent_for(self, phase: Phase) -> int:
        base = _PHASE_PROGRESS[phase]
        if phase is Phase.PROVISIONING and self._percent >= PROVISIONING:
            # several provisioning steps: creep towards PROVISIONING_MAX
            return min(self._percent + 10, PROVISIONING_MAX)
        return base

    def close(self) -> None:
        """No more events: followers finish once they have read everything."""
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        # wake every follower waiting on the old event, then start a new one
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    async def follow(self) -> AsyncIterator[dict[str, Any]]:
        """Every event so far, then new ones as they come, until :meth:`close`."""
        index = 0
        while True:
            while index < len(self.events):
                yield dict(self.events[index])
                index += 1
            if self.closed:
                return
            await self._changed.wait()
