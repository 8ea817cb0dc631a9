"""Test support: spawners built the way JupyterHub builds them, and a fake function worker.

The fake worker stands in for the Azure Functions so the spawner's tests do
not depend on them: it reads the lifecycle queue raw (as the Functions host
does), opens requests with the sealer, applies them in generation order and
writes statuses with the functions' own storage class. It emulates
provisioning → running (or → failed) without any container, writing only the
phases, messages and fields the functions write, in their order
(``functions/server_run.py``: ``start``, ``stop``, ``_follow_start``,
``_stopped``); the functions never write ``queued``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue.aio import QueueClient
from hub_support import API_TOKEN, HUB_CONNECT_URL, PUBLIC_URL, make_hub, make_spawner  # noqa: F401 - re-exported
from waiting import wait_until_async

from acaspawner import wire
from acaspawner.contract import Op, Phase, Request, Status
from acaspawner.sealing import Sealer
from acaspawner.storage_config import StorageConfig
from functions.storage import FunctionStorage, StatusConflict


async def wait_until(predicate) -> None:
    """Check ``predicate()`` every 50 ms for at most 10 s."""
    await wait_until_async(predicate, within=10)


@dataclass
class FakeWorker:
    """Processes lifecycle requests like the functions would, without ARM."""

    config: StorageConfig
    sealer: Sealer
    provision_delay: float = 0.3
    #: image name → (message, error code): starting it fails like a bad image would
    failing_images: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: server key → seconds to stay provisioning (a slow start)
    slow: dict[str, float] = field(default_factory=dict)
    url_for: Callable[[Request], str] = lambda r: f"http://{r.server_key}.internal.example.test"
    received: list[Request] = field(default_factory=list)
    #: server keys whose (pretend) container app exists: created by a start, removed by a stop
    apps: set[str] = field(default_factory=set)
    paused: bool = False
    _task: asyncio.Task | None = None

    def __post_init__(self) -> None:
        self.store = FunctionStorage(self.config)
        self.queue = QueueClient.from_connection_string(self.config.connection_string, self.config.queue_name)

    async def __aenter__(self) -> FakeWorker:
        with contextlib.suppress(ResourceExistsError):
            await self.queue.create_queue()
        await asyncio.to_thread(self.store.ensure_table)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.queue.close()

    def ops(self, key: str | None = None) -> list[tuple[str, int]]:
        """(op, generation) of every request received, optionally for one server."""
        return [(r.op.value, r.generation) for r in self.received if key is None or r.server_key == key]

    async def drain_without_processing(self) -> list[Request]:
        """Take every waiting request off the queue and drop it, as a host that crashed with them would."""
        lost = []
        async for message in self.queue.receive_messages(messages_per_page=32, visibility_timeout=60):
            lost.append(self.sealer.open(wire.decode(message.content)))
            await self.queue.delete_message(message)
        return lost

    async def _run(self) -> None:
        handlers: set[asyncio.Task] = set()
        while True:
            if self.paused:
                await asyncio.sleep(0.05)
                continue
            got = False
            async for message in self.queue.receive_messages(messages_per_page=32, visibility_timeout=60):
                got = True
                request = self.sealer.open(wire.decode(message.content))
                self.received.append(request)
                await self.queue.delete_message(message)
                task = asyncio.create_task(self._handle(request))
                handlers.add(task)
                task.add_done_callback(handlers.discard)
            if not got:
                await asyncio.sleep(0.05)

    async def write(self, request: Request, phase: Phase, message: str, **changes) -> bool:
        """Write ``phase`` for ``request`` unless the table already holds a newer generation.

        As the functions' ``ServerRun._next``: a new generation starts a fresh row (url, error and
        step empty, a new event history); the same generation adds an event to its row.
        """
        for _ in range(10):
            current = await asyncio.to_thread(self.store.get_status, request.hub_id, request.server_key)
            if current is not None and current.generation > request.generation:
                return False  # a late request never overrides a newer one
            if current is None or current.generation != request.generation:
                fresh = Status(hub_id=request.hub_id, server_key=request.server_key, phase=phase,
                               generation=request.generation, user=request.user, server_name=request.server_name,
                               etag=current.etag if current else None)
                status = fresh.with_event(phase, message, **changes)
            else:
                status = current.with_event(phase, message, **changes)
            try:
                await asyncio.to_thread(self.store.write_status, status)
                return True
            except StatusConflict:
                continue
        raise RuntimeError("fake worker kept losing races")

    async def _handle(self, request: Request) -> None:
        key = request.server_key
        if request.op is Op.START:
            # the claim, then ARM took the create (a follow-up will look), as ServerRun.start
            if not await self.write(request, Phase.PROVISIONING, f"creating container app {key}", step=""):
                return
            await asyncio.sleep(self.provision_delay / 3)
            self.apps.add(key)
            if not await self.write(request, Phase.PROVISIONING, f"Azure is provisioning container app {key}",
                                    step="create"):
                return
            await asyncio.sleep(self.slow.get(key, self.provision_delay))
            # what a follow-up records once ARM is done, as ServerRun._follow_start and _failed
            if request.spec.image in self.failing_images:
                message, code = self.failing_images[request.spec.image]
                await self.write(request, Phase.FAILED, message, url="", error_code=code, step="")
                return
            await self.write(request, Phase.RUNNING, "server is running", url=self.url_for(request),
                             error_code="", step="")
        else:
            deleting = request.op is Op.DELETE
            if not await self.write(request, Phase.STOPPING, "deleting server" if deleting else "stopping server",
                                    step=""):
                return
            if key in self.apps:  # ARM takes the delete; a follow-up sees the app gone (ServerRun.stop)
                await asyncio.sleep(self.provision_delay / 3)
                if not await self.write(request, Phase.STOPPING, f"Azure is deleting container app {key}",
                                        step="delete"):
                    return
                await asyncio.sleep(self.provision_delay / 3)
                self.apps.discard(key)
            # no app (never created, or gone): recorded at once (ServerRun._stopped)
            await self.write(request, Phase.STOPPED, "server deleted" if deleting else "server stopped",
                             url="", error_code="", step="")
