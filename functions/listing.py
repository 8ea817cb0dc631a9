"""One listing of the resource group's apps, shared by every follow-up of a Functions instance.

A follow-up needs to see its app as ARM reports it *after* ARM accepted the
write it follows (``since``). Rather than one GET per pending server, the
instance lists the resource group (one ARM read per page) and lets every
follow-up whose ``since`` the listing postdates read from it. Follow-ups are
delayed by ``Retry-After``, so under a burst one listing answers all of them
that arrive within that interval: ARM reads grow with pages of apps, not with
pending spawns, and stay far below ARM's read refill of 25/s.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol


class AppLister(Protocol):
    def list(self) -> list[dict[str, Any]]: ...


class AppListing:
    """The latest listing of the apps, refreshed only when a caller needs a newer one."""

    def __init__(self, apps: AppLister) -> None:
        self._apps = apps
        self._lock = threading.Lock()
        self._by_name: dict[str, dict[str, Any]] = {}
        self._taken = float("-inf")  # when the current listing was requested

    def find(self, name: str, since: float) -> dict[str, Any] | None:
        """App ``name`` as a listing requested at or after ``since`` shows it; None if it is not there."""
        return self.latest(since)[1].get(name.lower())

    def latest(self, since: float = float("-inf")) -> tuple[float, dict[str, dict[str, Any]]]:
        """A listing requested at or after ``since`` (the current one, when it is): when it was requested, and
        the apps by lower-case name."""
        # one listing at a time: callers that queue behind it usually find it recent enough
        with self._lock:
            if self._taken < since:
                taken = time.time()
                self._by_name = {str(app.get("name", "")).lower(): app for app in self._apps.list()}
                self._taken = taken
            return self._taken, self._by_name
