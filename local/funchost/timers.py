"""Timer triggers on NCRONTAB schedules, as the Functions host runs them.

An NCRONTAB expression has six fields, seconds first: ``{second} {minute} {hour} {day} {month}
{day-of-week}``. ``croniter`` reads that with ``second_at_beginning=True``; ``day_or=False``
because NCRONTAB requires both day fields to match, where classic cron accepts either. A
TimeSpan (``hh:mm:ss``) is also accepted, meaning "every so long". Times are UTC unless the
``WEBSITE_TIME_ZONE`` (or ``TZ``) setting names an IANA time zone.

One invocation of a timer function runs at a time (the host takes a singleton lock), missed
occurrences are not caught up, and ``runOnStartup`` fires once when the host starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from azure.functions.timer import TimerRequest
from croniter import croniter

from .hostjson import HostConfigError, parse_timespan
from .invoke import Invoker
from .loader import TimerFunction

log = logging.getLogger("local.funchost")


class ScheduleError(ValueError):
    """A timer schedule the Functions host would reject."""


@dataclass(frozen=True)
class CronSchedule:
    """A six-field NCRONTAB schedule evaluated in ``tz``."""

    expression: str
    tz: tzinfo = UTC

    def next_after(self, after: datetime) -> datetime:
        """The first occurrence strictly after ``after`` (an aware datetime), in UTC."""
        it = croniter(self.expression, after.astimezone(self.tz), second_at_beginning=True, day_or=False)
        return it.get_next(datetime).astimezone(UTC)


@dataclass(frozen=True)
class IntervalSchedule:
    """A TimeSpan schedule: one occurrence every ``seconds``."""

    seconds: float

    def next_after(self, after: datetime) -> datetime:
        return after + timedelta(seconds=self.seconds)


Schedule = CronSchedule | IntervalSchedule


def parse_schedule(expression: str, tz: tzinfo = UTC) -> Schedule:
    """Parse an NCRONTAB (six fields) or TimeSpan schedule."""
    parts = expression.split()
    if len(parts) == 6:
        if not croniter.is_valid(" ".join(parts), second_at_beginning=True):
            raise ScheduleError(f"invalid NCRONTAB expression {expression!r}")
        return CronSchedule(" ".join(parts), tz)
    if len(parts) == 1 and ":" in expression:
        try:
            seconds = parse_timespan(expression.strip())
        except HostConfigError as exc:
            raise ScheduleError(str(exc)) from None
        if seconds <= 0:
            raise ScheduleError(f"TimeSpan schedule must be positive: {expression!r}")
        return IntervalSchedule(seconds)
    raise ScheduleError(
        f"schedule {expression!r} must be NCRONTAB with six fields "
        "({second} {minute} {hour} {day} {month} {day-of-week}) or a TimeSpan like '00:05:00'"
    )


def schedule_timezone(settings: Mapping[str, str]) -> tzinfo:
    """The time zone schedules are read in: ``WEBSITE_TIME_ZONE`` or ``TZ`` (IANA names), else UTC."""
    name = (settings.get("WEBSITE_TIME_ZONE") or settings.get("TZ") or "").strip()
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin')") from None


class TimerRunner:
    """Fires one timer function on its schedule. Runs on the host's loop."""

    def __init__(self, fn: TimerFunction, schedule: Schedule, invoker: Invoker) -> None:
        self.fn = fn
        self.schedule = schedule
        self._invoker = invoker
        self._lock = asyncio.Lock()
        self.last_fired: datetime | None = None
        self.next_due: datetime | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        """Fire on schedule (and once at start if ``run_on_startup``) until ``stopping`` is set."""
        if self.fn.run_on_startup and not stopping.is_set():
            await self._fire_quietly("Timer fired because RunOnStartup is set")
        previous = datetime.now(UTC)
        while not stopping.is_set():
            # From the later of now and the previous occurrence, so an early wake-up never fires twice.
            due = self.schedule.next_after(max(datetime.now(UTC), previous))
            self.next_due = due
            wait = (due - datetime.now(UTC)).total_seconds()
            try:
                await asyncio.wait_for(stopping.wait(), timeout=max(wait, 0))
                return
            except TimeoutError:
                pass
            previous = due
            await self._fire_quietly(f"Timer fired at {due.isoformat()}")

    async def fire(self, *, past_due: bool = False, reason: str = "Manual invocation") -> None:
        """Invoke the function now with a ``func.TimerRequest``; raises what the function raised."""
        async with self._lock:
            now = datetime.now(UTC)
            status = {
                "Last": (self.last_fired or now).isoformat(),
                "Next": self.schedule.next_after(now).isoformat(),
                "LastUpdated": now.isoformat(),
            }
            request = TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})
            self.last_fired = now
            await self._invoker.invoke(self.fn, request, reason)

    async def _fire_quietly(self, reason: str) -> None:
        try:
            await self.fire(reason=reason)
        except Exception:  # already logged and counted by the invoker; the schedule goes on
            pass
