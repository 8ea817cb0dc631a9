"""One listing of the resource group's apps, shared by every follow-up of a Functions instance.

A follow-up needs to see its app as ARM reports it *after* ARM accepted the
write it follows (``since``). Rather than one GET per pending server, the
instance lists the resource group (one ARM read per page) and lets every
follow-up whose ``since`` the listing postdates read from it. Follow-ups are
delayed by ``Retry-After``, so under a burst one listing answers all of them
that arrive within that interval: ARM reads grow with pages of apps, not with
pending spawns.

A listing counts as fresh for ``ACA_ARM_POLL_INTERVAL``, or longer when
refreshing a listing of that many pages so often would take more than
``READS_PER_SECOND`` ARM reads a second (:meth:`AppListing.freshness`): with
thousands of apps, following a class's starts stays inside ARM's read refill
of 25 a second, which the culler and the reconciler share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

#: ARM reads a second that refreshing the listing may take (ARM refills 25 a second for a subscription and
#: principal; the rest is left to the culler, the reconciler and single GETs)
READS_PER_SECOND = 10.0


class AppLister(Protocol):
    def pages(self) -> Iterator[list[dict[str, Any]]]: ...


class AppListing:
    """The latest listing of the apps, refreshed only when a caller needs a newer one."""

    def __init__(self, apps: AppLister) -> None:
        self._apps = apps
        self._lock = threading.Lock()
        self._by_name: dict[str, dict[str, Any]] = {}
        self._taken = float("-inf")  # when the current listing was requested
        self._pages = 1  # ARM reads the current listing took

    def freshness(self, interval: float) -> float:
        """Seconds a listing may be old and still be fresh, for follow-ups looking every ``interval``: that
        interval, or longer when the listing has so many pages that refreshing it that often would take more
        than ``READS_PER_SECOND`` ARM reads a second."""
        return max(interval, self._pages / READS_PER_SECOND)

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
                pages = list(self._apps.pages())
                self._by_name = {str(app.get("name", "")).lower(): app for page in pages for app in page}
                self._taken, self._pages = taken, max(len(pages), 1)
            return self._taken, self._by_name
