"""A spawner for the culler tests: 'runs' a server without starting any process.

Loaded by the test hub (its directory is on the hub's PYTHONPATH). ``start()``
answers the address of one tiny HTTP server shared by all users, in the
hub's own event loop, so a thousand running servers cost nothing. Users
whose name starts with ``slow`` take ``SLOW_STOP`` seconds to stop, which
makes the hub answer 202 to a DELETE when its ``slow_stop_timeout`` is shorter.
"""

from __future__ import annotations

import asyncio

from jupyterhub.spawner import Spawner
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

SLOW_STOP = 3.0

_port: int | None = None
_lock = asyncio.Lock()


class _Ok(web.RequestHandler):
    def get(self, *args):
        self.write({"ok": True})


async def _shared_port() -> int:
    global _port
    async with _lock:
        if _port is None:
            sockets = bind_sockets(0, "127.0.0.1")
            server = HTTPServer(web.Application([(r"/(.*)", _Ok)]))
            server.add_sockets(sockets)
            _port = sockets[0].getsockname()[1]
    return _port


class TinySpawner(Spawner):
    """Running as soon as started; stopped as soon as stopped (or after SLOW_STOP for 'slow*' users)."""

    running = False

    def load_state(self, state):
        super().load_state(state)
        self.running = bool(state.get("running"))

    def get_state(self):
        state = super().get_state()
        if self.running:
            state["running"] = True
        return state

    def clear_state(self):
        super().clear_state()
        self.running = False

    async def start(self):
        port = await _shared_port()
        self.running = True
        return ("127.0.0.1", port)

    async def poll(self):
        return None if self.running else 0

    async def stop(self, now=False):
        if self.user.name.startswith("slow"):
            await asyncio.sleep(SLOW_STOP)
        self.running = False
