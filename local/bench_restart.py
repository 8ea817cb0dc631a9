"""The benchmark's restart section: a real JupyterHub coming back with ``N`` servers running, against none.

What an admin waits for after a hub roll-out: the ``jupyterhub`` process (the
demo's configuration, its configurable-http-proxy, the status page service)
from launch until it logs "JupyterHub is now running", once with no server and
once with ``N`` running servers in its database. Each is the second launch on
its database: the first (not measured) does what only a new database needs. On the way JupyterHub loads
its users, calls ``poll()`` of every running server (the spawners share one
status watcher: one read of the status table answers all of them), and adds a
proxy route for each. The servers exist as the hub's database rows and as
running status rows (as the functions wrote them). JupyterHub asks each server
it finds running whether it answers (``/user/<name>/api``) before it trusts
it: one small HTTP responder in this process stands in for every server (all
at one address, each under its own prefix), so the hub's check passes at once
as it does for servers that run.

The same two launches run again with :class:`local.instant_spawner.InstantSpawner`,
a spawner that answers without any I/O: JupyterHub's own floor. What the
AcaSpawner adds to a restart is the difference between the two in
JupyterHub's ``init_spawners``, the part of a launch that grows with servers.

Each measured launch runs ``repeats`` times, the two spawners in turn (so the
machine's drift falls on both alike); the section reports the median launch
of each, their ratios, JupyterHub's own "Initialized N spawners in S seconds"
and the routes the proxy holds once the hub runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient

from acaspawner.naming import server_key
from acaspawner.sealing import generate_key
from local.bench_scale import delete_rows, seed_running
from local.procs import NODE_BIN, REPO, free_port, stop_process_group
from local.stack import BIN, DEMO_CONFIG
from local.stats import median_run

HUB_ID = "restart"
TABLE = "acaservers"  # the demo configuration's status table (the default)
READY = "JupyterHub is now running"
INSTANT_SPAWNER = "local.instant_spawner.InstantSpawner"
_INITIALIZED = re.compile(r"Initialized (\d+) spawners in ([0-9.]+) seconds")


class Responder:
    """Answers every request with 200 and ``{}`` on a port of 127.0.0.1, in a thread: the servers' stand-in."""

    def __init__(self) -> None:
        self.port = free_port()
        self.answered = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="bench-restart-servers", daemon=True)

    async def _answer(self, request: web.Request) -> web.Response:
        self.answered += 1
        return web.json_response({})

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> Responder:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def seed_hub_db(state: Path, users: list[str], keys: list[str], generation: int, port: int) -> None:
    """The hub's database as a running hub leaves it: each user with a running default server at ``port``."""
    from jupyterhub import orm

    db = orm.new_session_factory(f"sqlite:///{state / 'jupyterhub.sqlite'}")()
    now = datetime.now(UTC).replace(tzinfo=None)
    for user, key in zip(users, keys, strict=True):
        orm_user = orm.User(name=user, last_activity=now)
        db.add(orm_user)
        server = orm.Server(proto="http", ip="127.0.0.1", port=port, base_url=f"/user/{user}/")
        db.add(server)
        db.add(orm.Spawner(user=orm_user, name="", server=server, started=now, last_activity=now,
                           state={"server_key": key, "generation": generation, "last_op": "start"}))
    db.commit()
    db.close()


class Launch:
    """One ``jupyterhub`` process of the demo's configuration in ``state`` (its own ports and database);
    ``spawner_class`` overrides the demo's spawner."""

    def __init__(self, state: Path, storage: str, sealing_key: str, spawner_class: str = ""):
        self.state = state
        self.config, self.log_path = DEMO_CONFIG, state / "hub.log"
        if spawner_class:
            self.config, self.log_path = state / "jupyterhub_config_spawner.py", state / "hub-spawner.log"
            self.config.write_text(f"c = get_config()  # noqa: F821\nload_subconfig({str(DEMO_CONFIG)!r})  # noqa: F821\n"
                                   f"c.JupyterHub.spawner_class = {spawner_class!r}\n")
        self.port, self.proxy_api = free_port(), free_port()
        self.env = {
            "ACA_DEMO_STATE_DIR": str(state), "ACA_DEMO_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "ACA_DEMO_CHP": str(NODE_BIN / "configurable-http-proxy"), "ACA_DEMO_PROXY_API_PORT": str(self.proxy_api),
            "ACA_DEMO_STATUS_PORT": str(free_port()), "ACA_DEMO_HUB_API_URL": f"http://127.0.0.1:{free_port()}",
            "ACA_DEMO_PASSWORD": "bench", "ACA_DEMO_STORAGE": storage, "ACA_HUB_ID": HUB_ID,
            "ACA_SEALING_KEYS": sealing_key, "ACA_HUB_API_TOKEN": secrets.token_hex(16),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16), "PYTHONPATH": str(REPO),
        }

    def run(self, timeout: float) -> dict[str, Any]:
        """Launch, wait for "now running", read what it did, stop it; the seconds and counts."""
        log_path = self.log_path
        with log_path.open("w") as log:
            began = time.perf_counter()
            proc = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(self.config)], env=self.env, cwd=self.state,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                ready = self._wait_ready(proc, log_path, began, timeout)
                routes = self._routes()
            finally:
                stop_process_group(proc)
        text = log_path.read_text()
        initialized = _INITIALIZED.search(text)
        return {"ready_s": ready, "routes": routes, "urls_rewritten": text.count("had invalid url"),
                "spawners_initialized": int(initialized[1]) if initialized else None,
                "init_spawners_s": float(initialized[2]) if initialized else None}

    def _wait_ready(self, proc: subprocess.Popen, log_path: Path, began: float, timeout: float) -> float:
        while time.perf_counter() - began < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"the hub exited with {proc.returncode}; see {log_path}")
            if READY in log_path.read_text():
                return time.perf_counter() - began
            time.sleep(0.05)
        raise TimeoutError(f"the hub was not running after {timeout} s; see {log_path}")

    def _routes(self) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{self.proxy_api}/api/routes",
                                         headers={"Authorization": f"token {self.env['CONFIGPROXY_AUTH_TOKEN']}"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return len(json.loads(r.read()))


def run_restart(connection_string: str, state: Path, running: int, repeats: int = 5,
                timeout: float = 300.0) -> dict[str, Any]:
    """The launches: with no server, then with ``running`` servers, ``repeats`` times each; the section's
    result."""
    with Responder() as servers:
        return _launches(connection_string, state, running, repeats, timeout, servers)


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median launch time, with every run's time beside it and the median of JupyterHub's
    init_spawners (each launch reports it)."""
    inits = sorted(run["init_spawners_s"] for run in runs if run["init_spawners_s"] is not None)
    return {**median_run(runs, "ready_s"), "init_spawners_s": inits[len(inits) // 2] if inits else None}


def _launches(connection_string: str, state: Path, running: int, repeats: int, timeout: float,
              servers: Responder) -> dict:
    sealing_key = generate_key()
    result: dict[str, Any] = {"running": running, "repeats": repeats, "runs": [], "floor": []}
    with TableClient.from_connection_string(connection_string, TABLE) as table, \
            contextlib.suppress(ResourceExistsError):
        table.create_table()
    for count in (0, running):
        where = state / f"restart-{count}"
        where.mkdir(parents=True, exist_ok=True)
        users = [f"restart-{i:05d}" for i in range(count)]
        keys = [server_key(HUB_ID, user, "") for user in users]
        generation = int(time.time() * 1000)
        url = f"http://127.0.0.1:{servers.port}"
        seeded = seed_running(connection_string, TABLE, HUB_ID, users, generation, url=url) if users else []
        assert seeded == keys
        seed_hub_db(where, users, keys, generation, servers.port)
        print(f"  restart: a hub with {count} running servers", file=sys.stderr)
        launch = Launch(where, connection_string, sealing_key)
        floor = Launch(where, connection_string, sealing_key, spawner_class=INSTANT_SPAWNER)
        try:
            # a first launch makes the database one a hub has run on (roles, services, tokens); those after it,
            # measured, are restarts
            launch.run(timeout)
            ours, floors = [], []
            for _ in range(repeats):
                answered = servers.answered
                ours.append({"servers": count, **launch.run(timeout), "servers_asked": servers.answered - answered})
                floors.append({"servers": count, **floor.run(timeout)})
            result["runs"].append(_median(ours))
            result["floor"].append(_median(floors))
        finally:
            if seeded:
                delete_rows(connection_string, TABLE, HUB_ID, seeded)
    for runs, ratio in (("runs", "ratio"), ("floor", "floor_ratio")):
        none, many = result[runs]
        result[ratio] = many["ready_s"] / none["ready_s"] if none["ready_s"] else None
    # what the AcaSpawner adds to JupyterHub's own restart with that many servers: measured on JupyterHub's
    # init_spawners, the part that grows with servers (a launch's time also holds how soon the status page
    # answers, which JupyterHub waits for with a backoff stepping up to a second)
    with_aca, alone = result["runs"][1]["init_spawners_s"], result["floor"][1]["init_spawners_s"]
    result["spawner_share_s"] = with_aca - alone if with_aca is not None and alone is not None else None
    return result


def render_restart(restart: dict[str, Any], table: Any, f: Any) -> list[str]:
    """The section's table (``table`` and ``f`` are the benchmark's own formatters)."""
    none, many = restart["runs"]
    floor_none, floor_many = restart["floor"]
    return ["", table([
        ["restart: a real JupyterHub launched until it runs (demo configuration, its proxy, the status page; "
         f"median of {restart['repeats']})", "0 running", f"{restart['running']} running", "ratio"],
        ["launch → \"JupyterHub is now running\" (s)", f(none["ready_s"]), f(many["ready_s"]),
         f(restart["ratio"]) if restart["ratio"] else "-"],
        ["the same with a spawner that does nothing: JupyterHub's own floor (s)", f(floor_none["ready_s"]),
         f(floor_many["ready_s"]), f(restart["floor_ratio"]) if restart["floor_ratio"] else "-"],
        ["JupyterHub's init_spawners: spawners / seconds", f"{none['spawners_initialized']} / "
         f"{f(none['init_spawners_s'] or 0)}", f"{many['spawners_initialized']} / {f(many['init_spawners_s'] or 0)}",
         ""],
        ["JupyterHub's init_spawners, the spawner that does nothing (s)", f(floor_none["init_spawners_s"] or 0),
         f(floor_many["init_spawners_s"] or 0), ""],
        ["what the AcaSpawner adds to init_spawners (s)", "",
         "-" if restart["spawner_share_s"] is None else f(restart["spawner_share_s"]), ""],
        ["proxy routes once it runs", str(none["routes"]), str(many["routes"]), ""],
        ["server URLs JupyterHub found different and rewrote", str(none["urls_rewritten"]),
         str(many["urls_rewritten"]), ""],
    ])]
