"""Python worker processes: where the functions run when the host keeps its queue and timer work apart.

On Azure the Functions host (a .NET process) polls the queues and fires the
timers, and hands each invocation to a language worker process, as many of
them as ``FUNCTIONS_WORKER_PROCESS_COUNT`` says (1 by default), each running
synchronous functions in its own thread pool (``PYTHON_THREADPOOL_THREAD_COUNT``).
:class:`WorkerProcesses` is that split for the dev host: the host process keeps
its listeners and timers, and each worker process imports the app and runs the
invocations it is sent. Neither then takes the other's share of a Python
interpreter (its GIL), as on Azure.

Host and worker talk over a pipe: ``(call id, function name, trigger value,
invocation id)`` one way (``None`` asks the worker to finish and exit), ``(call
id, succeeded, result or error text, busy seconds, timed out)`` the other. A worker that exits fails the calls it held
(their messages are retried as after any failure) and is started again on the
next call. Run a worker by hand with ``python -m local.funchost.worker --app
function_app.py --fd N`` only from a host.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .invoke import FunctionError, FunctionTimeoutError, Reply, await_bounded, call_in_this_thread, call_kwargs
from .loader import index_functions, load_function_app

log = logging.getLogger("local.funchost")

ROOT = Path(__file__).resolve().parents[2]
#: where the worker finds the connection string meant by ``UseDevelopmentStorage=true``
DEV_STORAGE_VARIABLE = "FUNCHOST_DEV_STORAGE"


class _Worker:
    """One worker process and the calls it has not answered yet."""

    def __init__(self, command: list[str], env: dict[str, str], index: int) -> None:
        here, there = Pipe()
        self.conn = here
        self.pending: dict[int, Future[Reply]] = {}
        self._send_lock = threading.Lock()
        self.process = subprocess.Popen([*command, "--fd", str(there.fileno())], env=env,
                                        pass_fds=(there.fileno(),))
        there.close()
        self._reader = threading.Thread(target=self._read, name=f"funchost-worker-{index}-replies", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and self._reader.is_alive()

    def call(self, call_id: int, future: Future[Reply], message: tuple) -> None:
        self.pending[call_id] = future
        try:
            with self._send_lock:
                self.conn.send((call_id, *message))
        except (OSError, ValueError) as exc:
            self.pending.pop(call_id, None)
            future.set_exception(FunctionError(f"the worker process could not be reached: {exc}"))
            return
        if not self._reader.is_alive() and self.pending.pop(call_id, None) is not None:
            # its replies ended while this call was sent: no answer will come
            future.set_exception(FunctionError("the worker process exited during the invocation"))

    def _read(self) -> None:
        try:
            while True:
                call_id, *reply = self.conn.recv()
                future = self.pending.pop(call_id, None)
                if future is not None:
                    future.set_result(Reply(*reply))
        except (EOFError, OSError):
            pass
        except Exception:  # a reply that cannot be read: this worker is of no more use
            log.exception("Worker process %s answered what the host cannot read", self.process.pid)
        for future in list(self.pending.values()):
            if not future.done():
                future.set_exception(FunctionError("the worker process exited during the invocation"))
        self.pending.clear()

    def stop(self, grace: float) -> None:
        """Let the worker finish what it holds and exit (killed after ``grace`` seconds)."""
        try:
            with self._send_lock:
                self.conn.send(None)
        except (OSError, ValueError):
            pass  # gone already
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(1)  # the worker's exit ended its replies
        self.conn.close()


class WorkerProcesses:
    """``count`` worker processes for the app at ``app_path``; calls go to the one with the fewest in flight."""

    def __init__(self, app_path: Path, count: int, *, threads: int, function_timeout: float | None,
                 dev_storage_connection_string: str | None = None, shutdown_grace: float = 5.0) -> None:
        if count < 1:
            raise ValueError("at least one worker process")
        self.count = count
        self.shutdown_grace = shutdown_grace
        self._command = [sys.executable, "-m", "local.funchost.worker", "--app", str(app_path),
                         "--threads", str(threads)]
        if function_timeout is not None:
            self._command += ["--timeout", str(function_timeout)]
        self._dev_storage = dev_storage_connection_string
        self._workers: list[_Worker | None] = [None] * count
        self._lock = threading.Lock()
        self._next_id = 0

    def _env(self) -> dict[str, str]:
        # the host's settings are in os.environ already (FunctionsHost.load applied them)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        if self._dev_storage:
            env[DEV_STORAGE_VARIABLE] = self._dev_storage
        return env

    def start(self) -> WorkerProcesses:
        with self._lock:
            for i in range(self.count):
                self._workers[i] = _Worker(self._command, self._env(), i)
        return self

    def call(self, name: str, trigger_value: Any, invocation_id: str) -> Future[Reply]:
        """Run function ``name`` with ``trigger_value`` in a worker; the future holds its :class:`Reply`."""
        future: Future[Reply] = Future()
        with self._lock:
            for i, worker in enumerate(self._workers):
                if worker is None or not worker.alive:
                    if worker is not None:
                        log.warning("Worker process %d exited (code %s); starting it again", i,
                                    worker.process.poll())
                        worker.stop(0)
                    self._workers[i] = _Worker(self._command, self._env(), i)
            worker = min(self._workers, key=lambda w: len(w.pending))  # type: ignore[arg-type, union-attr]
            self._next_id += 1
            call_id = self._next_id
        worker.call(call_id, future, (name, trigger_value, invocation_id))  # type: ignore[union-attr]
        return future

    def stop(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, [None] * self.count
        for worker in workers:
            if worker is not None:
                worker.stop(self.shutdown_grace)


# -- the worker process ----------------------------------------------------------------------------------


def _run(fn: Any, trigger_value: Any, invocation_id: str, timeout: float | None,
         loop: asyncio.AbstractEventLoop | None) -> Reply:
    kwargs = call_kwargs(fn, trigger_value, invocation_id)
    started = time.monotonic()
    try:
        if fn.is_async:
            # cut off at functionTimeout on the worker's loop, as the host does with a coroutine
            assert loop is not None
            value = asyncio.run_coroutine_threadsafe(await_bounded(fn, kwargs, timeout), loop).result()
        else:
            value = call_in_this_thread(fn, kwargs)
    except FunctionTimeoutError as exc:
        return Reply(False, str(exc), time.monotonic() - started, timed_out=True)
    except BaseException as exc:
        return Reply(False, "".join(traceback.format_exception(exc)).rstrip(), time.monotonic() - started)
    try:
        pickle.dumps(value)
    except Exception:
        value = None  # output bindings are not carried; the host logs the outcome only
    return Reply(True, value, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.funchost.worker")
    parser.add_argument("--app", type=Path, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=None)
    args = parser.parse_args(argv)
    # the host stops its workers through their pipes, once their invocations are done: a Ctrl-C or a SIGTERM
    # that reaches the whole process group must not cut those short
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    app_path = args.app.resolve()
    index = index_functions(load_function_app(app_path).app, dict(os.environ),
                            dev_storage_connection_string=os.environ.get(DEV_STORAGE_VARIABLE),
                            app_directory=app_path.parent)
    conn = Connection(args.fd)
    send_lock = threading.Lock()
    loop: asyncio.AbstractEventLoop | None = None
    if any(fn.is_async for fn in index.functions.values()):
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="funchost-worker-loop", daemon=True).start()

    def serve(call_id: int, name: str, trigger_value: Any, invocation_id: str) -> None:
        fn = index.functions.get(name)
        reply = (_run(fn, trigger_value, invocation_id, args.timeout, loop) if fn is not None
                 else Reply(False, f"no function {name!r} in this worker", 0.0))
        with send_lock:
            try:
                conn.send((call_id, reply.succeeded, reply.value, reply.busy_s, reply.timed_out))
            except OSError:
                pass  # the host is gone

    with ThreadPoolExecutor(args.threads, thread_name_prefix="funchost-worker") as pool:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message is None:  # the host stops this worker
                break
            pool.submit(serve, *message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
