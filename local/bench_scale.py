"""The benchmark's scale section: what the hub pays for the servers already running while a class starts.

``local.bench`` runs it after the bursts, twice: with no other server and with
``running`` servers already running. Those servers exist as rows of the status
table only (phase running, written before the section starts, as they would
have been when they started): the hub never asks ARM about a running server, it
reads their rows, so the rows are all of them the hub can see. The emulator
holds no app for them (2000 app processes do not fit this machine); the burst's
servers are real apps, created by the functions at ARM's pace.

Each run reports, measured inside the process that runs the spawners: a hub
process of their own (:mod:`local.bench_hub`), apart from the functions and
the emulator, as in Azure:

* the status rows the hub read per second, and its table queries, during a
  burst of ``burst`` starts;
* the lag of that event loop (how late a 10 ms sleep wakes up), p50 and p99;
* a restart: a new status watcher (a restarted hub has none) and ``poll()`` of
  every server at once, which is what JupyterHub does for each server it knows
  when it starts; the seconds until every poll answered.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from azure.data.tables import TableClient, TableTransactionError

from acaspawner.contract import Phase, Status
from acaspawner.hub_storage import HubStorage
from acaspawner.naming import server_key
from acaspawner.spawner import AcaSpawner
from acaspawner.watcher import CHANGE_MARGIN, close_watchers
from local.stats import percentile

LAG_TICK = 0.01  # seconds the lag probe sleeps; lateness beyond it is the loop's lag
BATCH = 100  # entities per table transaction (the service's limit)


class LoopLag:
    """Samples how late the running event loop wakes a sleeper, until stopped."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task | None = None

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(LAG_TICK)
            self.samples.append(loop.time() - asked - LAG_TICK)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._probe())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary_ms(self) -> dict[str, float]:
        if not self.samples:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
        ms = [s * 1000 for s in self.samples]
        return {"p50": percentile(ms, 0.5), "p99": percentile(ms, 0.99), "max": max(ms), "n": len(ms)}


async def timed_starts(spawners: list[AcaSpawner], limit_s: float,
                       return_exceptions: bool = False) -> list[float | BaseException]:
    """Concurrent ``start()`` of every spawner (each from a clear state); the seconds each took (or, with
    ``return_exceptions``, the error a start raised)."""

    async def timed(spawner: AcaSpawner) -> float:
        began = time.perf_counter()
        spawner.clear_state()
        await spawner.start()
        return time.perf_counter() - began

    async with asyncio.timeout(limit_s):
        return list(await asyncio.gather(*(timed(s) for s in spawners), return_exceptions=return_exceptions))


def seed_running(connection_string: str, table: str, hub_id: str, users: list[str],
                 generation: int, url: str = "") -> list[str]:
    """A running server's status row for each of ``users`` (what the functions wrote when it started: the
    server's address is ``url``, else one of its own that nothing answers); their keys."""
    keys = []
    with TableClient.from_connection_string(connection_string, table) as client:
        for start in range(0, len(users), BATCH):
            operations = []
            for user in users[start:start + BATCH]:
                key = server_key(hub_id, user, "")
                keys.append(key)
                status = Status(hub_id=hub_id, server_key=key, phase=Phase.RUNNING, generation=generation, user=user,
                                url=url or f"http://{key}.internal.example", step="running")
                operations.append(("upsert", status.to_entity()))
            try:
                client.submit_transaction(operations)
            except TableTransactionError as e:
                raise RuntimeError(f"seeding running servers failed: {e}") from None
    return keys


def delete_rows(connection_string: str, table: str, hub_id: str, keys: list[str]) -> None:
    with TableClient.from_connection_string(connection_string, table) as client:
        for start in range(0, len(keys), BATCH):
            client.submit_transaction([("delete", {"PartitionKey": hub_id, "RowKey": key})
                                       for key in keys[start:start + BATCH]])


class ScaleSection:
    """Both runs of the section; :meth:`run` returns its result dict."""

    def __init__(self, connection_string: str, table: str, hub_id: str,
                 make_spawner: Callable[[str], AcaSpawner], starts: Callable[[list], Awaitable[list[float]]],
                 stop: Callable[[list], Awaitable[None]]):
        self.connection_string = connection_string
        self.table = table
        self.hub_id = hub_id
        self.make_spawner = make_spawner
        self.starts = starts
        self.stop = stop

    async def run(self, running: int, burst: int) -> dict[str, Any]:
        result: dict[str, Any] = {"running": running, "burst": burst, "runs": []}
        for others in (0, running):
            result["runs"].append(await self._one(others, burst, tag=f"s{others}"))
        return result

    async def _one(self, others: int, burst: int, tag: str) -> dict[str, Any]:
        users = [f"{tag}-run-{i:05d}" for i in range(others)]
        print(f"  scale: {others} running servers (status rows), a burst of {burst}", file=sys.stderr)
        generation = int(time.time() * 1000)
        seeded = await asyncio.to_thread(seed_running, self.connection_string, self.table, self.hub_id, users,
                                         generation)
        # the running servers' rows were written before the class came: older than the watcher's margin
        await asyncio.sleep(CHANGE_MARGIN.total_seconds() + 1)
        spawners = [self.make_spawner(f"{tag}-new-{i:04d}") for i in range(burst)]
        storage = HubStorage.shared(spawners[0].storage_config)
        entities0, queries0 = storage.entities_read, storage.table_queries
        with LoopLag() as lag:
            began = time.perf_counter()
            times = await self.starts(spawners)
            wall = time.perf_counter() - began
        entities, queries = storage.entities_read - entities0, storage.table_queries - queries0

        # a restart: a new watcher, and the hub polls every server it knows (the burst's spawners stand for
        # themselves: a spawner's poll() reads only its state and the watcher)
        await close_watchers()
        known = [self.make_spawner(user) for user in users]
        for spawner, key in zip(known, seeded, strict=True):
            spawner.load_state({"server_key": key, "generation": generation, "last_op": "start"})
        known += spawners
        with LoopLag() as restart_lag:
            restart_began = time.perf_counter()
            polls = await asyncio.gather(*(spawner.poll() for spawner in known))
            restart = time.perf_counter() - restart_began
        still_running = sum(p is None for p in polls)
        await close_watchers()  # the seeded servers' subscriptions end with it

        await self.stop(spawners)
        await asyncio.to_thread(delete_rows, self.connection_string, self.table, self.hub_id, seeded)
        return {
            "others": others, "wall_s": wall, "start_p50_s": percentile(times, 0.5),
            "entities_read": entities, "entities_per_s": entities / wall, "table_queries": queries,
            "loop_lag_ms": lag.summary_ms(), "restart_s": restart, "restart_polled": len(known),
            "restart_running": still_running, "restart_loop_lag_ms": restart_lag.summary_ms(),
        }


def render_scale(scale: dict[str, Any], table: Callable[[list[list[str]]], str],
                 f: Callable[[float], str]) -> list[str]:
    """The section's table (``table`` and ``f`` are the benchmark's own formatters)."""
    none, many = scale["runs"]

    def both(cell: Callable[[dict[str, Any]], str]) -> list[str]:
        return [cell(none), cell(many)]

    def ratio(key: str) -> str:
        return f(many[key] / none[key]) if none[key] else "-"

    return ["", table([
        [f"scale: a burst of {scale['burst']} with other servers running (their status rows only; the burst's "
         "servers are apps, ACA-like pacing as above)", "0 running", f"{scale['running']} running", "ratio"],
        ["burst wall time (s) / start() p50 (s)", *both(lambda r: f"{f(r['wall_s'])} / {f(r['start_p50_s'])}"), ""],
        ["status rows the hub read per second", *both(lambda r: f(r["entities_per_s"])), ratio("entities_per_s")],
        ["status rows read / table queries during the burst",
         *both(lambda r: f"{r['entities_read']} / {r['table_queries']}"), ""],
        ["hub event-loop lag during the burst p50 / p99 / max (ms)",
         *both(lambda r: f"{f(r['loop_lag_ms']['p50'])} / {f(r['loop_lag_ms']['p99'])} / "
               f"{f(r['loop_lag_ms']['max'])}"), ""],
        ["restart: poll() of every server, new watcher (s)", *both(lambda r: f(r["restart_s"])), ratio("restart_s")],
        ["restart: servers polled / still running",
         *both(lambda r: f"{r['restart_polled']} / {r['restart_running']}"), ""],
        ["restart: event-loop lag p99 / max (ms)",
         *both(lambda r: f"{f(r['restart_loop_lag_ms']['p99'])} / {f(r['restart_loop_lag_ms']['max'])}"), ""],
    ])]
