"""Helpers for the integration tests: the stack, and a hub that crashes (spawners: ``hub_support``, waits: ``waiting``).

The stack is real everywhere but the cloud: Azurite for the queue and the
table, the function app (``function_app.py``) run by the functions dev host
with the host's own listening semantics, and the ACA emulator answering the
functions' ARM calls over HTTPS and running each container app as a local
process. No fake worker: every status the spawner reads was written by the
functions after a real ARM operation.

Named uniquely (no ``conftest``) so test modules can import it directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
import threading
import urllib.request
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from acaspawner.hub_storage import close_shared
from acaspawner.spawner import AcaSpawner
from acaspawner.watcher import close_watchers
from local.emulator.model import AppInfo
from local.emulator.threaded import EmulatorThread
from local.funchost import FunctionsHost

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
APP_SCRIPT = Path(__file__).resolve().parent / "integration_app.py"

#: the servers' command: a tiny HTTP server that starts in a blink (see integration_app.py)
APP_COMMAND = [sys.executable, str(APP_SCRIPT)]
IMAGE = "example.org/notebook:1"  # any image: the emulator runs the template's command
BAD_IMAGE = "bad/notebook:1"  # allowed by the functions' policy; the emulator can be told to fail it
ALLOWED_IMAGES = "example.org/*, bad/*"


#: how long any single wait in these tests may take before it counts as a failure (not a benchmark)
WAIT = 120.0


# --- the stack --------------------------------------------------------------------------------


@dataclass
class IntegrationStack:
    """One test's stack: its emulator, its running functions host and the names both sides share."""

    emulator: EmulatorThread
    host: FunctionsHost
    hub_id: str
    queue_name: str
    table_name: str
    connection_string: str
    sealing_key: str

    def spawner_kwargs(self, **changes: Any) -> dict[str, Any]:
        """Traits of a spawner of this stack's hub, with test-sized poll intervals (start_timeout stays 600 s)."""
        kwargs: dict[str, Any] = {
            "hub_id": self.hub_id,
            "queue_name": self.queue_name,
            "table_name": self.table_name,
            "storage_connection_string": self.connection_string,
            "sealing_keys": self.sealing_key,
            "image": IMAGE,
            "cmd": APP_COMMAND,
            "cpu": 0.5,
            "memory": "1Gi",
            "status_poll_interval": 1.0,
            "status_poll_interval_fast": 0.2,
            "stop_timeout": 90,
        }
        kwargs.update(changes)
        return kwargs

    async def apps(self) -> dict[str, AppInfo]:
        """The emulator's container apps (read off the test's event loop: the call blocks briefly)."""
        return await asyncio.to_thread(lambda: self.emulator.apps)

    async def stats(self) -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self.emulator.stats)

    async def drain(self, within: float = WAIT) -> None:
        """Wait until the functions have processed every queued request (nothing queued, nothing in flight)."""
        async with asyncio.timeout(within):
            await self.host.adrain()


# --- HTTP ----------------------------------------------------------------------------------------


def _get_json(url: str) -> tuple[int, dict]:
    # straight to the URL: its host is the app's fqdn, so the Host header is what the ingress routes by
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


async def http_get_json(url: str) -> tuple[int, dict]:
    """GET ``url`` (off the event loop) → (status, decoded JSON)."""
    return await asyncio.to_thread(_get_json, url)


# --- a hub that crashes -------------------------------------------------------------------------


class CrashingHub:
    """The event loop of a hub process that can die mid-spawn, on a thread of its own.

    Spawners run on this loop get their own shared watcher and storage clients
    (they are per event loop), as a separate hub process would. :meth:`crash`
    stops the loop where it stands: pending tasks are never resumed, so nothing
    they would have done on the way out (a cancelled ``start()`` sends a stop)
    happens, exactly as when the process is killed.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="crashing-hub", daemon=True)
        self._thread.start()
        self.crashed = False

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def crash(self, timeout: float = 10.0) -> None:
        """Stop the loop after its current step (any synchronous work in it completes, nothing after)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the crashing hub's loop did not stop"
        self.crashed = True

    def bury(self, spawners: list[AcaSpawner]) -> None:
        """Release what the dead hub left behind, without it acting again (blocking; call it off-loop).

        A real crash frees sockets with the process. Here the loop is run once
        more to cancel its tasks and close its clients; the dead hub's spawners
        first lose the ability to send, so their cancelled starts cannot
        enqueue the stop a dead hub never sent.
        """
        if not self.crashed:
            self.crash()

        async def cannot_send(*args: Any, **kwargs: Any) -> None:
            return None

        for spawner in spawners:
            spawner.send_request = cannot_send  # type: ignore[method-assign]

        leftovers = asyncio.all_tasks(self.loop)

        async def release() -> None:
            async with asyncio.timeout(30):
                for task in leftovers:
                    task.cancel()
                await asyncio.gather(*leftovers, return_exceptions=True)
                await close_watchers()
                await close_shared()

        try:
            self.loop.run_until_complete(release())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
