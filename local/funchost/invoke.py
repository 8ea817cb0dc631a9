"""Calling user functions the way the Python worker does, with the host's logging and counters.

Synchronous functions run in a thread pool (sized like the worker's: ``PYTHON_THREADPOOL_THREAD_COUNT``
or ``min(32, cpus + 4)``); ``async def`` functions are awaited on the host's event loop. With worker
processes (:mod:`local.funchost.worker`) every function runs there instead, and only its outcome,
its return value and the seconds it ran come back. A parameter
named ``context`` receives a ``func.Context``. Logs carry function names, invocation ids and
message ids, never trigger payloads.

``functionTimeout`` is enforced as far as Python allows: a coroutine is cancelled when it runs
over (the invocation fails, as on Azure); a thread cannot be stopped, so a synchronous function
that runs over is logged as such and its outcome still counts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
from concurrent.futures import Executor, Future
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeVar

from azure.functions import _abc as azf_abc

from .loader import CONTEXT_PARAM, FunctionInfo

log = logging.getLogger("local.funchost")

T = TypeVar("T")


class FunctionTimeoutError(TimeoutError):
    """An invocation ran longer than host.json's ``functionTimeout``."""


class FunctionError(Exception):
    """A function raised in a worker process; the message holds the worker's traceback."""


@dataclass(frozen=True)
class Reply:
    """How an invocation in a worker process ended."""

    succeeded: bool
    value: Any  # the function's return value, or the error's text
    busy_s: float
    timed_out: bool = False


class WorkerCalls(Protocol):
    """Worker processes that run functions (:class:`local.funchost.worker.WorkerProcesses`)."""

    def call(self, name: str, trigger_value: Any, invocation_id: str) -> Future[Reply]: ...


@dataclass
class FunctionStats:
    """Counters for one function (or, summed, for the host). Written only on the host's loop."""

    invocations: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    poisoned: int = 0
    busy_s: float = 0.0  # seconds spent running the function (in its worker thread), not waiting for one

    def __add__(self, other: FunctionStats) -> FunctionStats:
        return FunctionStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


class _TraceContext(azf_abc.TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(azf_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(azf_abc.Context):
    """The ``func.Context`` handed to a function's ``context`` parameter."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._local = threading.local()
        self._trace = _TraceContext()
        self._retry = _RetryContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> azf_abc.TraceContext:
        return self._trace

    @property
    def retry_context(self) -> azf_abc.RetryContext:
        return self._retry


class Invoker:
    """Runs one invocation of a function and keeps its counters; re-raises what the function raised."""

    def __init__(self, workers: Executor, function_timeout: float | None, stats: dict[str, FunctionStats],
                 processes: WorkerCalls | None = None) -> None:
        self._workers = workers
        self._processes = processes  # when set, every function runs there instead
        self._timeout = function_timeout
        self.stats = stats
        self._busy_lock = threading.Lock()

    async def invoke(self, fn: FunctionInfo, trigger_value: Any, reason: str, details: str = "") -> Any:
        invocation_id = str(uuid.uuid4())
        stats = self.stats.setdefault(fn.name, FunctionStats())
        stats.invocations += 1
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", fn.name, reason, invocation_id)
        if details:
            log.info("Trigger Details: %s", details)
        started = time.monotonic()
        try:
            if self._processes is not None:
                result = await self._call_worker_process(fn, trigger_value, invocation_id)
            else:
                kwargs = call_kwargs(fn, trigger_value, invocation_id)
                result = await (self._call_async(fn, kwargs) if fn.is_async else self._call_sync(fn, kwargs))
        except BaseException as exc:
            stats.failed += 1
            if isinstance(exc, FunctionTimeoutError):
                stats.timed_out += 1
            outcome = "Cancelled" if isinstance(exc, asyncio.CancelledError) else "Failed"
            log.error(
                "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)",
                fn.name,
                outcome,
                invocation_id,
                _ms(started),
                exc_info=not isinstance(exc, asyncio.CancelledError),
            )
            raise
        stats.succeeded += 1
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", fn.name, invocation_id, _ms(started))
        return result

    async def _call_async(self, fn: FunctionInfo, kwargs: dict[str, Any]) -> Any:
        started = time.monotonic()
        try:
            return await await_bounded(fn, kwargs, self._timeout)
        finally:
            self.stats[fn.name].busy_s += time.monotonic() - started

    async def _call_sync(self, fn: FunctionInfo, kwargs: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._workers, functools.partial(self._run_in_thread, fn, kwargs))
        return await self._outlast(fn, future)

    async def _call_worker_process(self, fn: FunctionInfo, trigger_value: Any, invocation_id: str) -> Any:
        assert self._processes is not None
        reply = await self._outlast(fn, asyncio.wrap_future(self._processes.call(fn.name, trigger_value,
                                                                                  invocation_id)))
        self.stats[fn.name].busy_s += reply.busy_s  # on the host's loop, like the counters
        if reply.timed_out:
            raise FunctionTimeoutError(reply.value)
        if not reply.succeeded:
            raise FunctionError(reply.value)
        return reply.value

    async def _outlast(self, fn: FunctionInfo, future: asyncio.Future[T]) -> T:
        """What ``future`` (a function running in a thread) gives; past functionTimeout it is only logged (a
        coroutine is cancelled where it runs instead)."""
        if self._timeout is not None and not fn.is_async:
            done, _ = await asyncio.wait({future}, timeout=self._timeout)
            if not done:
                log.warning(
                    "Function '%s' exceeded functionTimeout (%ss); a thread cannot be stopped, waiting for it",
                    fn.name,
                    self._timeout,
                )
        return await future

    def _run_in_thread(self, fn: FunctionInfo, kwargs: dict[str, Any]) -> Any:
        started = time.monotonic()
        try:
            return call_in_this_thread(fn, kwargs)
        finally:
            with self._busy_lock:  # worker threads finish concurrently
                self.stats[fn.name].busy_s += time.monotonic() - started





def call_kwargs(fn: FunctionInfo, trigger_value: Any, invocation_id: str) -> dict[str, Any]:
    """The arguments of one invocation: the trigger's value, and a ``func.Context`` if the function takes one."""
    kwargs: dict[str, Any] = {fn.arg_name: trigger_value}
    if fn.wants_context:
        kwargs[CONTEXT_PARAM] = InvocationContext(invocation_id, fn.name, fn.directory)
    return kwargs


def call_in_this_thread(fn: FunctionInfo, kwargs: dict[str, Any]) -> Any:
    """Call a synchronous function in the calling thread."""
    context = kwargs.get(CONTEXT_PARAM)
    if isinstance(context, InvocationContext):
        # The worker sets this so that logging from the function's thread is tied to the invocation.
        context.thread_local_storage.invocation_id = context.invocation_id
    return fn.func(**kwargs)


async def await_bounded(fn: FunctionInfo, kwargs: dict[str, Any], function_timeout: float | None) -> Any:
    """Await an ``async def`` function, cancelled past ``function_timeout`` with :class:`FunctionTimeoutError`."""
    try:
        async with asyncio.timeout(function_timeout) as deadline:
            return await fn.func(**kwargs)
    except TimeoutError:
        if deadline.expired():  # ours, not a TimeoutError raised by the function itself
            raise FunctionTimeoutError(
                f"Timeout value of {function_timeout}s exceeded by function '{fn.name}'") from None
        raise


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
