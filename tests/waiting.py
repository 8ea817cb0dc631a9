"""Waiting in tests: call a check until it holds, or fail naming what did not happen.

The one polling helper of the tests, in a blocking and an async flavour. A
check returns something truthy once the wait is over; that value is returned,
so a check can hand over what it found. After ``timeout`` seconds the wait
fails with an AssertionError naming ``what`` it waited for, and whatever
``describe`` adds (a log tail, the state seen last).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT = 15.0
INTERVAL = 0.05


def _timed_out(timeout: float, what: str, describe: Callable[[], str] | None) -> AssertionError:
    detail = describe() if describe is not None else ""
    return AssertionError(f"timed out after {timeout:g} s waiting for {what}" + (f"; {detail}" if detail else ""))


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    what: str = "the condition",
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, describe)
        time.sleep(interval)


async def wait_until_async(
    check: Callable[[], T | Awaitable[T]],
    *,
    within: float = TIMEOUT,
    interval: float = INTERVAL,
    what: str = "the condition",
    describe: Callable[[], str] | None = None,
) -> T:
    """:func:`wait_until` on the event loop (``within`` is its ``timeout``): ``check`` may also be a coroutine
    function, or return an awaitable."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise _timed_out(within, what, describe)
        await asyncio.sleep(interval)
