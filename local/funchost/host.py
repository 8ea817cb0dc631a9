"""``FunctionsHost``: runs a Python v2 function app locally with the Functions host's semantics.

The host owns one background thread with its own asyncio loop. On it run a listener per queue
trigger and a runner per timer trigger; storage calls run in a small I/O pool, and the functions
either in a worker thread pool of this process or, as on Azure, in Python worker processes of
their own (``worker_processes``, :mod:`local.funchost.worker`). The public methods are
synchronous and thread-safe; ``a``-prefixed twins (``astart``, ``adrain``, ...) serve async
callers without blocking their loop.

Typical use in a test::

    with FunctionsHost(app_file, settings={"AzureWebJobsStorage": conn}) as host:
        host.send("lifecycle", b"payload")
        host.drain(timeout=10)
        assert host.stats["lifecycle"].succeeded == 1
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import LinearRetry, QueueClient

from acaspawner.http_env import transport_options

from .hostjson import HostConfig, load_host_json
from .invoke import FunctionStats, Invoker
from .loader import AppIndex, LoadedApp, QueueFunction, index_functions, load_function_app
from .queues import QueueListener, encode_body
from .settings import EnvironmentPatch, merge_settings, read_local_settings
from .timers import Schedule, TimerRunner, parse_schedule, schedule_timezone
from .worker import WorkerProcesses

log = logging.getLogger("local.funchost")

T = TypeVar("T")

DEFAULT_APP_PATH = Path(__file__).resolve().parents[2] / "function_app.py"


class FunctionsHost:
    """Loads, indexes and runs a function app's queue and timer triggers against Azure Storage.

    :param app_path: the app's ``function_app.py``; its folder is the app root.
    :param settings: app settings that win over the environment and ``local.settings.json``.
    :param host_json: a host.json path or mapping; None reads ``<app root>/host.json`` if present.
    :param local_settings: a ``local.settings.json`` path; None reads the one in the app root if present.
    :param dev_storage_connection_string: used where a connection setting is ``UseDevelopmentStorage=true``.
    :param shutdown_grace: seconds ``stop()`` lets running invocations finish before cancelling them.
    :param worker_processes: run the functions in this many worker processes of their own (0: in this
        process, where tests can reach the app's module; None: ``FUNCTIONS_WORKER_PROCESS_COUNT``, else 1).
    """

    def __init__(
        self,
        app_path: str | Path = DEFAULT_APP_PATH,
        settings: Mapping[str, str] | None = None,
        host_json: str | Path | Mapping[str, Any] | None = None,
        *,
        local_settings: str | Path | None = None,
        dev_storage_connection_string: str | None = None,
        shutdown_grace: float = 5.0,
        worker_processes: int | None = 0,
    ) -> None:
        self.app_path = Path(app_path).resolve()
        self._explicit = dict(settings or {})
        self._host_json = host_json
        self._local_settings = local_settings
        self._dev_storage = dev_storage_connection_string
        self.shutdown_grace = shutdown_grace
        self._worker_processes = worker_processes
        self._processes: WorkerProcesses | None = None
        self.settings: dict[str, str] = {}
        self.config = HostConfig()
        self.stats: dict[str, FunctionStats] = {}
        self._index: AppIndex | None = None
        self._loaded: LoadedApp | None = None  # the app as currently imported (None once unloaded)
        self._module: ModuleType | None = None
        self._env: EnvironmentPatch | None = None
        self._schedules: dict[str, Schedule] = {}
        self._clients: list[QueueClient] = []
        self._queue_clients: dict[str, tuple[QueueClient, QueueClient]] = {}
        self._listeners: dict[str, QueueListener] = {}
        self._runners: dict[str, TimerRunner] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._workers: ThreadPoolExecutor | None = None
        self._io: ThreadPoolExecutor | None = None
        self.listening = False

    # -- loading ---------------------------------------------------------------------------

    @property
    def index(self) -> AppIndex:
        """The indexed app: loads it on first use, and stays readable after ``stop()``."""
        return self._index if self._index is not None else self.load()

    @property
    def functions(self) -> dict[str, Any]:
        """Drivable functions by name (``QueueFunction`` / ``TimerFunction``)."""
        return self.index.functions

    @property
    def module(self) -> ModuleType:
        """The imported app module: loads it on first use, and stays readable after ``stop()``."""
        if self._module is None:
            self.load()
        assert self._module is not None
        return self._module

    @property
    def totals(self) -> FunctionStats:
        """All functions' counters summed."""
        return sum(self.stats.values(), FunctionStats())

    def load(self) -> AppIndex:
        """Apply settings to ``os.environ``, read host.json, import and index the app.

        Once per run: after ``stop()`` the next ``load()`` or ``start()`` imports the app afresh.
        """
        if self._loaded is not None and self._index is not None:
            return self._index
        root = self.app_path.parent
        settings_file = Path(self._local_settings) if self._local_settings else root / "local.settings.json"
        file_values = read_local_settings(settings_file) if settings_file.is_file() else {}
        self.settings = merge_settings(file_values, os.environ, self._explicit)
        # Functions read configuration from the environment, at import time as well as when invoked.
        self._env = EnvironmentPatch({k: v for k, v in self.settings.items() if os.environ.get(k) != v})
        self._env.apply()
        try:
            host_json = self._host_json
            if host_json is None and (root / "host.json").is_file():
                host_json = root / "host.json"
            self.config = load_host_json(host_json)
            self._loaded = load_function_app(self.app_path)
            index = index_functions(
                self._loaded.app, self.settings, dev_storage_connection_string=self._dev_storage, app_directory=root
            )
            tz = schedule_timezone(self.settings)
            self._schedules = {fn.name: parse_schedule(fn.schedule, tz) for fn in index.timer_functions}
        except BaseException:
            self._unload()
            raise
        for name, reason in index.skipped.items():
            log.warning("Function '%s' is not run by the dev host: %s", name, reason)
        log.info("Found functions: %s", ", ".join(f"Functions.{n}" for n in index.functions) or "(none)")
        self.stats = {name: FunctionStats() for name in index.functions}
        self._index, self._module = index, self._loaded.module
        return index

    def _unload(self) -> None:
        if self._loaded is not None:
            self._loaded.unload()
            self._loaded = None
        if self._env is not None:
            self._env.restore()
            self._env = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, *, listen: bool = True) -> FunctionsHost:
        """Start the loop thread; with ``listen`` also poll queues and run timers in the background.

        Without ``listen`` nothing happens on its own: ``run_once()``, ``drain()`` and
        ``run_timer()`` drive the functions, which keeps tests deterministic.
        """
        if self._thread is not None:
            raise RuntimeError("the functions host is already started")
        index = self.load()
        try:
            self._open_storage(index)
            self._workers = ThreadPoolExecutor(self._worker_count(), thread_name_prefix="funchost-worker")
            self._io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="funchost-io")
            count = self._process_count()
            if count:
                self._processes = WorkerProcesses(self.app_path, count, threads=self._worker_count(),
                                                  function_timeout=self.config.function_timeout,
                                                  dev_storage_connection_string=self._dev_storage,
                                                  shutdown_grace=self.shutdown_grace).start()
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._run_loop, name="funchost-loop", daemon=True)
            self._thread.start()
            self._call(self._setup(index, listen), timeout=10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, give invocations ``shutdown_grace`` to finish, cancel the rest, join the thread.

        Messages whose processing was cut short become visible again. Settings are taken back out
        of ``os.environ`` and the app module is unloaded. Safe to call more than once.
        """
        deadline = time.monotonic() + timeout
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            try:
                self._call(self._shutdown(), timeout=max(0.1, min(self.shutdown_grace + 1, timeout)))
            except Exception as exc:
                log.warning("Functions host shutdown: %s", exc)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(max(0.1, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("Functions host loop thread did not stop within %.1fs", timeout)
            else:
                for listener in self._listeners.values():
                    listener.release_unfinished()
        elif loop is not None and not loop.is_closed():
            loop.close()  # start() failed before the thread ran
        for pool in (self._workers, self._io):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        if self._processes is not None:
            self._processes.stop()
            self._processes = None
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._queue_clients.clear()
        self._listeners.clear()
        self._runners.clear()
        self._loop = self._thread = self._workers = self._io = self._stopping = None
        self.listening = False
        self._unload()

    close = stop

    def __enter__(self) -> FunctionsHost:
        # `with FunctionsHost(...).start(listen=False) as host:` works too.
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FunctionsHost:
        return self if self._thread is not None else await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # -- driving functions -----------------------------------------------------------------

    def run_once(self, timeout: float = 30.0) -> int:
        """Receive one batch from every trigger queue and process it to the end; returns the message count."""
        return self._call(self._run_once(), timeout)

    def drain(self, timeout: float = 30.0) -> None:
        """Process until every trigger queue is empty and nothing is in flight; TimeoutError otherwise.

        Messages waiting out a ``visibilityTimeout`` after a failure count as not drained, so a
        failing message is followed until it succeeds or reaches the poison queue.
        """
        try:
            self._call(self._drain(), timeout)
        except TimeoutError:
            raise TimeoutError(f"trigger queues not drained within {timeout}s: {self.queue_lengths()}") from None

    def run_timer(self, name: str, *, past_due: bool = False, timeout: float = 60.0) -> None:
        """Invoke timer function ``name`` now; raises what the function raised."""
        self._call(self._runner(name).fire(past_due=past_due), timeout)

    def timer_next_due(self, name: str) -> datetime | None:
        """When timer function ``name`` fires next on its schedule: None until its runner, after any
        ``runOnStartup`` invocation, is waiting for that time (a hook for tests)."""
        return self._runner(name).next_due

    def send(self, target: str, data: bytes | str) -> str:
        """Enqueue ``data`` for a queue function (by function or queue name), encoded per host.json; returns the id."""
        listener = self._listener_for(target)
        text = encode_body(data, self.config.queues.message_encoding)
        message_id = listener.client.send_message(text).id
        if self._loop is not None:
            self._loop.call_soon_threadsafe(listener.wake)  # the host notices its own writes at once
        return message_id

    def wait_for_empty_poll(self, target: str, timeout: float = 10.0) -> None:
        """Block until ``target``'s listener has found its queue empty and waits for its next poll.

        A hook for tests of the polling itself (e.g. that :meth:`send` wakes a waiting listener).
        """
        if not self._listener_for(target).waiting.wait(timeout):
            raise TimeoutError(f"the listener of {target!r} did not find its queue empty within {timeout} s")

    def queue_client(self, target: str, *, poison: bool = False) -> QueueClient:
        """The raw-text client for a queue function's queue (or its poison queue)."""
        listener = self._listener_for(target)
        return listener.poison_client if poison else listener.client

    def queue_lengths(self) -> dict[str, int]:
        """Approximate message counts (invisible messages included) of the trigger queues."""
        return {
            listener.fn.queue_name: listener.client.get_queue_properties().approximate_message_count
            for listener in self._listeners.values()
        }

    # -- async twins (bound them with the caller's own ``asyncio.timeout``) ------------------

    async def astart(self, *, listen: bool = True) -> FunctionsHost:
        return await asyncio.to_thread(self.start, listen=listen)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def arun_once(self) -> int:
        return await self._acall(self._run_once())

    async def adrain(self) -> None:
        await self._acall(self._drain())

    async def arun_timer(self, name: str, *, past_due: bool = False) -> None:
        await self._acall(self._runner(name).fire(past_due=past_due))

    async def asend(self, target: str, data: bytes | str) -> str:
        return await asyncio.to_thread(self.send, target, data)

    # -- internals -------------------------------------------------------------------------

    def _open_storage(self, index: AppIndex) -> None:
        for fn in index.queue_functions:
            pair = (self._client(fn, fn.queue_name), self._client(fn, fn.poison_queue_name))
            for client in pair:
                try:
                    client.create_queue()
                except ResourceExistsError:
                    pass
            self._queue_clients[fn.name] = pair

    def _count_setting(self, name: str) -> int | None:
        configured = self.settings.get(name, "").strip()
        return int(configured) if configured.isdigit() and int(configured) > 0 else None

    def _process_count(self) -> int:
        if self._worker_processes is not None:
            return self._worker_processes
        return self._count_setting("FUNCTIONS_WORKER_PROCESS_COUNT") or 1

    def _worker_count(self) -> int:
        # The Python worker's sync pool: PYTHON_THREADPOOL_THREAD_COUNT, else Python's default size.
        return self._count_setting("PYTHON_THREADPOOL_THREAD_COUNT") or min(32, (os.cpu_count() or 1) + 4)

    def _client(self, fn: QueueFunction, queue_name: str) -> QueueClient:
        client = QueueClient.from_connection_string(
            fn.connection_string,
            queue_name,
            # Raw text both ways: the host, not the SDK, decides how bodies are encoded.
            message_encode_policy=None,
            message_decode_policy=None,
            # Short retries and timeouts: a local emulator either answers quickly or is down.
            retry_policy=LinearRetry(backoff=1, retry_total=2, random_jitter_range=0),
            connection_timeout=5,
            read_timeout=30,
            **transport_options(),
        )
        self._clients.append(client)
        return client

    def _run_loop(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _setup(self, index: AppIndex, listen: bool) -> None:
        assert self._workers is not None and self._io is not None
        self._stopping = asyncio.Event()
        invoker = Invoker(self._workers, self.config.function_timeout, self.stats, self._processes)
        for fn in index.queue_functions:
            client, poison = self._queue_clients[fn.name]
            self._listeners[fn.name] = QueueListener(fn, client, poison, self.config.queues, invoker, self._io)
        for fn in index.timer_functions:
            self._runners[fn.name] = TimerRunner(fn, self._schedules[fn.name], invoker)
        if listen:
            for worker in [*self._listeners.values(), *self._runners.values()]:
                asyncio.ensure_future(worker.run(self._stopping)).add_done_callback(_report_crash)
            self.listening = True
            log.info(
                "Functions host started: %d queue and %d timer functions", len(self._listeners), len(self._runners)
            )

    async def _shutdown(self) -> None:
        assert self._stopping is not None
        self._stopping.set()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            _, still_running = await asyncio.wait(others, timeout=self.shutdown_grace)
            if still_running:
                log.warning("Cancelling %d unfinished task(s) after %ss", len(still_running), self.shutdown_grace)

    async def _drain(self, interval: float = 0.05) -> None:
        while True:
            if not self.listening:
                await self._run_once()
            if await self._idle():
                return
            await asyncio.sleep(interval)

    async def _run_once(self) -> int:
        counts = await asyncio.gather(*(listener.poll_once() for listener in self._listeners.values()))
        return sum(counts)

    async def _idle(self) -> bool:
        if any(listener.busy for listener in self._listeners.values()):
            return False
        loop = asyncio.get_running_loop()
        lengths = await asyncio.gather(
            *(
                loop.run_in_executor(self._io, listener.client.get_queue_properties)
                for listener in self._listeners.values()
            )
        )
        return all(p.approximate_message_count == 0 for p in lengths) and not any(
            listener.busy for listener in self._listeners.values()
        )

    def _runner(self, name: str) -> TimerRunner:
        runner = self._runners.get(name)
        if runner is None:
            raise KeyError(f"no timer function {name!r} (timer functions: {', '.join(self._runners) or 'none'})")
        return runner

    def _listener_for(self, target: str) -> QueueListener:
        if not self._listeners:
            raise RuntimeError("start() the functions host first")
        listener = self._listeners.get(target)
        if listener is None:
            matches = [lst for lst in self._listeners.values() if lst.fn.queue_name == target.lower()]
            if not matches:
                raise KeyError(f"no queue function or trigger queue named {target!r}")
            listener = matches[0]
        return listener

    async def _acall(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("start() the functions host first")
        if asyncio.get_running_loop() is self._loop:
            return await coro
        # Cancelling the caller's await cancels the work on the host loop too.
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("start() the functions host first")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking host call from the host's own loop; use the a-prefixed methods elsewhere")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise


def _report_crash(task: asyncio.Task[None]) -> None:
    # A listener or timer loop only ends on stop; anything else is a bug worth seeing at once.
    if not task.cancelled() and task.exception() is not None:
        log.error("Functions host background loop failed", exc_info=task.exception())
