"""``python -m local.bench_hub``: the hub's side of the benchmark's scale section, in a process of its own.

A hub runs in a process of its own. In ``local.bench`` the functions dev host
and the ACA emulator run in the benchmark's process, so an event loop there
shares the interpreter (and its lock) with the functions' worker threads and
the emulator: its lag would be theirs as much as the hub's. The scale section
therefore runs its spawners here, with nothing else in the process but
what JupyterHub itself would hold (its database, the spawners, their shared
clients and status watcher); the functions and the emulator keep running in
the benchmark's process and reach this one only through Azurite, as in Azure.

Reads ``{"settings": {...the functions' app settings...}, "running": N,
"burst": M, "log": "<file>"}`` as JSON on stdin, prints the section's result
(:class:`local.bench_scale.ScaleSection`) as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import sys
from typing import Any

from jupyterhub import orm

from acaspawner.hub_storage import close_shared
from acaspawner.spawner import AcaSpawner
from acaspawner.watcher import close_watchers
from local.bench import HUB_ID, SPAWN_TIMEOUT, Hubside
from local.bench_scale import ScaleSection, timed_starts


async def starts(spawners: list[AcaSpawner]) -> list[float]:
    return await timed_starts(spawners, SPAWN_TIMEOUT + 60)


async def stop(spawners: list[AcaSpawner]) -> None:
    async with asyncio.timeout(2 * SPAWN_TIMEOUT + 60):
        await asyncio.gather(*(s.stop() for s in spawners))


async def run(config: dict[str, Any], db: Any) -> dict[str, Any]:
    settings = config["settings"]
    section = ScaleSection(settings["AcaStorage"], settings["ACA_STATUS_TABLE"], HUB_ID,
                           Hubside(db, settings).spawner, starts, stop)
    try:
        result = await section.run(int(config["running"]), int(config["burst"]))
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close_watchers(), 10)
            await asyncio.wait_for(close_shared(), 10)
    result["process"] = "the hub's own (local.bench_hub)"
    return result


def main() -> int:
    config = json.load(sys.stdin)
    with contextlib.redirect_stderr(io.StringIO()):  # the hub database's migrations reconfigure logging
        db = orm.new_session_factory("sqlite:///:memory:")()
    logging.basicConfig(filename=config["log"], level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s hub %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    json.dump(asyncio.run(run(config, db)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
