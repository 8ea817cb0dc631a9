"""One status watcher per event loop and hub: a reflector over the status table.

Every spawner of a hub needs the status of its own server, but asking the
table once per spawner would make table traffic grow with the number of
users. Instead one background task per (event loop, storage config, hub id)
reads the hub's partition (one paged query) per interval and keeps the result
in memory; spawners subscribe and read from it.

What a read costs follows what changed, not how many servers run: a full
read of the partition at most once per ``interval`` (the safety net: it also
sees rows that were deleted), and in between only the rows the table's server
wrote since the newest one already seen, less ``CHANGE_MARGIN``. The table
stamps each row with its own clock (``Timestamp``), the same for every row
of a partition, so the hub's clock never enters the comparison.

The interval is short (``fast_interval``) while any subscriber is starting or
stopping a server, long (``interval``) otherwise, and the task ends once
nobody has been subscribed for ``idle_timeout`` seconds; the next subscriber
starts it again. Concurrent callers of :meth:`StatusWatcher.refresh` share one
query in flight, so even a burst of ``poll()`` calls after a hub restart
costs a single table request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from datetime import datetime, timedelta

from . import metrics
from .contract import Status
from .hub_storage import HubStorage
from .logs import describe
from .storage_config import StorageConfig

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 15.0
DEFAULT_FAST_INTERVAL = 1.0
DEFAULT_IDLE_TIMEOUT = 60.0
QUERY_TIMEOUT = 30.0
#: how often the functions' report (environments, warm pool, timers) is read for the hub's gauges
REPORT_INTERVAL = 60.0
#: rows written this long before the newest row seen are read again: a write whose commit is seen after a later
#: one's (the table's server stamps both) is not missed, at the cost of reading recent rows a few times
CHANGE_MARGIN = timedelta(seconds=5)

_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[StorageConfig, str], StatusWatcher]] = (
    weakref.WeakKeyDictionary()
)


class StatusUnavailable(Exception):
    """The status table could not be read (a transient condition, never a server's death)."""


class Subscription:
    """A spawner's interest in the watcher; ``fast`` while it waits for a transition."""

    def __init__(self, watcher: StatusWatcher, fast: bool = False):
        self._watcher = watcher
        self._fast = fast
        self.closed = False

    @property
    def fast(self) -> bool:
        return self._fast

    @fast.setter
    def fast(self, value: bool) -> None:
        if value != self._fast:
            self._fast = value
            self._watcher._wake()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._watcher._unsubscribe(self)


class StatusWatcher:
    """The shared, periodically refreshed view of one hub's statuses."""

    def __init__(
        self,
        storage: HubStorage,
        hub_id: str,
        interval: float = DEFAULT_INTERVAL,
        fast_interval: float = DEFAULT_FAST_INTERVAL,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        report_interval: float = REPORT_INTERVAL,
    ):
        self.storage = storage
        self.report_interval = report_interval
        self.hub_id = hub_id
        self.interval = interval
        self.fast_interval = fast_interval
        self.idle_timeout = idle_timeout
        self.statuses: dict[str, Status] = {}
        #: monotonic time at which the last successful query started
        self.last_success: float | None = None
        self.last_error: BaseException | None = None
        self.consecutive_errors = 0
        self.refreshes = 0
        self.full_reads = 0
        self.first_read = asyncio.Event()
        #: the newest row the table's server wrote, among those read (its clock); None: read everything next
        self._newest: datetime | None = None
        self._last_full = -math.inf  # monotonic start of the last full read that succeeded
        self._subscriptions: set[Subscription] = set()
        self._task: asyncio.Task | None = None
        self._inflight: asyncio.Future | None = None
        self._tick = asyncio.Event()
        self._wake_event = asyncio.Event()
        self._idle_since: float | None = time.monotonic()
        self._last_attempt = -math.inf
        self._report_read = -math.inf
        self._report_task: asyncio.Task | None = None

    @classmethod
    def shared(
        cls,
        config: StorageConfig,
        hub_id: str,
        interval: float = DEFAULT_INTERVAL,
        fast_interval: float = DEFAULT_FAST_INTERVAL,
        report_interval: float = REPORT_INTERVAL,
    ) -> StatusWatcher:
        """The watcher for ``hub_id`` in ``config`` on the running event loop (intervals follow the latest caller)."""
        loop = asyncio.get_running_loop()
        per_loop = _shared.setdefault(loop, {})
        watcher = per_loop.get((config, hub_id))
        if watcher is None:
            watcher = per_loop[(config, hub_id)] = cls(HubStorage.shared(config), hub_id, interval, fast_interval,
                                                       report_interval=report_interval)
        else:
            watcher.interval, watcher.fast_interval = interval, fast_interval
            watcher.report_interval = report_interval
        return watcher

    def __repr__(self) -> str:
        return f"StatusWatcher(hub={self.hub_id!r}, subscribers={len(self._subscriptions)}, running={self.running})"

    # subscriptions ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, fast: bool = False) -> Subscription:
        """Register interest (keeps the background refresh going); close the subscription when done."""
        subscription = Subscription(self, fast)
        self._subscriptions.add(subscription)
        self._idle_since = None
        self.ensure_running()
        self._wake()  # recompute the wait: faster now, or no longer idle
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        if not self._subscriptions:
            self._idle_since = time.monotonic()

    def _wake(self) -> None:
        self._wake_event.set()

    def ensure_running(self) -> None:
        """Start the background refresh task if it is not running."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"acaspawner-watcher-{self.hub_id}")

    # reading ---------------------------------------------------------------------------------

    def get(self, server_key: str) -> Status | None:
        """The last known status of ``server_key`` (no I/O)."""
        return self.statuses.get(server_key)

    def age(self) -> float | None:
        """Seconds since the last successful read started, ``None`` before the first one."""
        return None if self.last_success is None else time.monotonic() - self.last_success

    async def current(self, server_key: str, max_age: float) -> Status | None:
        """The status of ``server_key`` read at most ``max_age`` seconds ago; refreshes if older.

        Raises :class:`StatusUnavailable` when a needed refresh fails.
        """
        age = self.age()
        if age is None or age > max_age:
            await self.refresh()
        return self.statuses.get(server_key)

    async def refresh(self) -> dict[str, Status]:
        """Read the hub's statuses now (what changed, or everything once per interval), sharing a query already
        in flight."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._query())
            # mark the outcome as retrieved even if every waiter was cancelled
            self._inflight.add_done_callback(lambda f: f.cancelled() or f.exception())
        return await asyncio.shield(self._inflight)

    async def _query(self) -> dict[str, Status]:
        started = self._last_attempt = time.monotonic()
        full = self._newest is None or started - self._last_full >= self.interval
        since = None if full else self._newest - CHANGE_MARGIN
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                read = await self.storage.read_statuses(self.hub_id, changed_since=since)
        except Exception as e:
            self.consecutive_errors += 1
            self.last_error = e
            cause = describe(e, QUERY_TIMEOUT)  # never empty: a timeout says "timed out after 30 s"
            log.warning("reading statuses of hub %s failed (%d in a row): %s", self.hub_id, self.consecutive_errors,
                        cause)
            self._notify()
            raise StatusUnavailable(f"the status table could not be read: {cause}") from e
        metrics.count_read(full, len(read.statuses))
        if full:
            self.statuses = read.statuses  # rows deleted since the last full read go too
            self._last_full = started
            self.full_reads += 1
            if started - self._report_read >= self.report_interval and not self._report_task:
                self._report_read = started
                self._report_task = asyncio.ensure_future(self._read_report())
        else:
            self.statuses.update(read.statuses)
        if read.latest is not None and (self._newest is None or read.latest > self._newest):
            self._newest = read.latest
        self.last_success = started
        self.consecutive_errors = 0
        self.refreshes += 1
        self.first_read.set()
        self._notify()
        return self.statuses

    async def _read_report(self) -> None:
        """Refresh the admins' gauges (:func:`metrics.show_report`); a failure only leaves them as they were."""
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                metrics.show_report(await self.storage.read_report(self.hub_id))
        except Exception as e:
            log.info("reading the functions' report of hub %s failed: %s", self.hub_id, describe(e, QUERY_TIMEOUT))
        finally:
            self._report_task = None

    def _notify(self) -> None:
        old, self._tick = self._tick, asyncio.Event()
        old.set()

    async def next_refresh(self) -> None:
        """Wait for the next refresh attempt, successful or not (the background task makes one per interval)."""
        tick = self._tick
        self.ensure_running()
        await tick.wait()

    # the background task ---------------------------------------------------------------------

    def _current_interval(self) -> float:
        fast = any(s.fast for s in self._subscriptions)
        if self.consecutive_errors:
            # retry sooner than the slow interval, backing off while the table stays unreachable
            backoff = self.fast_interval * 2 ** min(self.consecutive_errors, 6)
            return min(backoff, self.fast_interval if fast else self.interval)
        return self.fast_interval if fast else self.interval

    async def _run(self) -> None:
        log.debug("status watcher for hub %s started", self.hub_id)
        try:
            while True:
                # wait until an interval has passed since the last query (anyone's: a burst of polls
                # counts too); a subscriber turning fast shortens the wait but never causes more than
                # one query per fast interval
                while True:
                    remaining = self._last_attempt + self._current_interval() - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake_event.clear()
                    try:
                        async with asyncio.timeout(remaining):
                            await self._wake_event.wait()
                    except TimeoutError:
                        break
                if not self._subscriptions:
                    # nobody needs fresh statuses: no queries; linger a while for the next subscriber
                    idle_left = (self._idle_since or time.monotonic()) + self.idle_timeout - time.monotonic()
                    if idle_left <= 0:
                        break
                    self._wake_event.clear()
                    try:
                        async with asyncio.timeout(idle_left):
                            await self._wake_event.wait()
                    except TimeoutError:
                        pass
                    continue
                try:
                    await self.refresh()
                except StatusUnavailable:
                    pass  # logged in _query; retried after the (backed-off) interval
        finally:
            log.debug("status watcher for hub %s stopped", self.hub_id)

    async def close(self) -> None:
        """Stop the background task (hub shutdown, tests)."""
        for subscription in list(self._subscriptions):
            subscription.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self._report_task is not None:
            self._report_task.cancel()


async def close_watchers() -> None:
    """Stop every watcher of the running loop."""
    loop = asyncio.get_running_loop()
    for watcher in _shared.pop(loop, {}).values():
        await watcher.close()
