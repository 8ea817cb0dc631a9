"""The benchmark's warm-pool section: a class's starts served by warm servers, at ARM's pace, and the refill.

``local.bench`` runs it after the bursts. A second functions host keeps a warm
pool of ``n`` servers (``ACA_WARM_POOL``, filled with an instant emulator, as
it would be before the class); then, with ACA-like pacing, ``n + extra``
spawners start at once: ``n`` are bound to warm servers, the rest fall back to
creating an app. The pool's timer runs every ``REFILL_EVERY`` seconds meanwhile,
and the section reports how long the pool took to be full again.

Warm servers here run the benchmark's stand-in (``local/tinyapp.py`` answers
every request, the claim included, with 200) instead of the launcher, which
imports the Jupyter stack (about 150 MiB each: a hundred do not fit this
machine); ``python -m local.bench_warm`` measures the real launcher and real
servers for a few users.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from acaspawner.spawner import AcaSpawner
from functions.settings import Settings
from functions.storage import FunctionStorage
from functions.warm_pool import SlotRows
from local.funchost import FunctionsHost
from local.procs import REPO
from local.tinyapp import APP_COMMAND

WARM_IMAGE = "bench/warm:1"  # the emulator runs this image's apps as the stand-in, whatever their command
IMAGE_MAP = {WARM_IMAGE: APP_COMMAND}  # extra argv (the launcher's path) is left to the stand-in's sys.argv
REFILL_EVERY = 5.0  # seconds between runs of the pool's timer (ACA_WARM_POOL_SCHEDULE in a deployment)


def pool_settings(base: dict[str, str], homes: dict[str, str], n: int) -> dict[str, str]:
    """The functions' settings for the section: their own queue and table, a pool of ``n``, the homes share."""
    profile = {"name": "bench", "image": WARM_IMAGE, "cpu": 0.5, "memory": "1Gi", "size": n}
    settings = {**base, **homes, "ACA_LIFECYCLE_QUEUE": "bench-warm", "ACA_STATUS_TABLE": "benchwarm",
                "ACA_WARM_POOL": json.dumps([profile]), "ACA_MAX_SERVERS_PER_USER": "5",
                # the section runs the timer itself, at its own times (never on its schedule: 1 January)
                "ACA_WARM_POOL_SCHEDULE": "0 0 0 1 1 *",
                # said, not left out: the benchmark's main host has its own "true" in the process environment
                "AzureWebJobs.warm_pool.Disabled": "false"}
    return settings


class PoolSection:
    """One run of the section; :meth:`run` returns its result dict."""

    def __init__(self, settings: dict[str, str], state_dir: Path, set_pacing: Callable[[], None],
                 make_spawner: Callable[[str], AcaSpawner], starts: Callable[[list], Awaitable[list[float]]]):
        self.settings = settings
        self.state_dir = state_dir
        self.set_pacing = set_pacing
        self.make_spawner = make_spawner
        self.starts = starts
        config = Settings.from_environ(settings)
        self.storage = FunctionStorage(config.storage)
        self.storage.ensure_table()
        self.rows = SlotRows(self.storage.table, config.hub_id)
        self.hub_id = config.hub_id

    def ready(self) -> int:
        return sum(slot.state == "ready" for slot in self.rows.all())

    async def run(self, n: int, extra: int) -> dict[str, Any]:
        host = FunctionsHost(REPO / "function_app.py", settings=self.settings, host_json=REPO / "host.json",
                             local_settings=self.state_dir / "no-local-settings.json").start()
        try:
            began = time.perf_counter()
            while self.ready() < n:  # an instant emulator: the pool is full before the class comes
                await asyncio.to_thread(host.run_timer, "warm_pool")
                await asyncio.sleep(0.5)
            filled = time.perf_counter() - began
            self.set_pacing()
            spawners = [self.make_spawner(f"class-{i:03d}") for i in range(n + extra)]
            print(f"  warm pool: {n} ready after {filled:.1f} s; {n + extra} users start at once", file=sys.stderr)
            clicked = time.perf_counter()
            refill = asyncio.create_task(self._refill(host, n, clicked))
            times = await self.starts(spawners)
            statuses = {s.server_key: s for s in self.storage.list_statuses(self.hub_id)}
            warm = [t for s, t in zip(spawners, times, strict=True) if statuses[s.server_key].slot]
            cold = [t for s, t in zip(spawners, times, strict=True) if not statuses[s.server_key].slot]
            cold_message = next((e["message"] for s in spawners if not statuses[s.server_key].slot
                                 for e in statuses[s.server_key].events if "warm" in e.get("message", "")), "")
            refilled = await refill
            await asyncio.gather(*(s.stop() for s in spawners))
            return {"pool": n, "users": n + extra, "fill_instant_s": filled, "warm": warm, "cold": cold,
                    "refill_s": refilled, "fallback_message": cold_message}
        finally:
            host.stop()
            self.storage.table.close()

    async def _refill(self, host: FunctionsHost, n: int, clicked: float) -> float | None:
        """Run the pool's timer every REFILL_EVERY s until ``n`` are ready again; seconds since the click."""
        while time.perf_counter() - clicked < 600:
            await asyncio.to_thread(host.run_timer, "warm_pool")
            if self.ready() >= n and time.perf_counter() - clicked > REFILL_EVERY:
                return time.perf_counter() - clicked
            await asyncio.sleep(REFILL_EVERY)
        return None
