"""A spawner that does nothing, for measuring JupyterHub's own cost of servers it already runs.

The restart benchmark (:mod:`local.bench_restart`) launches the same hub on
the same database once with :class:`acaspawner.AcaSpawner` and once with this
class, whose ``poll()`` says "running" and whose URL is the one the hub
stored, without any I/O. The difference between the two in JupyterHub's
``init_spawners`` is what the AcaSpawner adds to a hub restart; the rest is
JupyterHub's per-server work.
"""

from __future__ import annotations

from jupyterhub.spawner import Spawner


class InstantSpawner(Spawner):
    """Every server it is asked about runs where the hub's database says; it starts and stops nothing."""

    async def start(self) -> str:
        raise RuntimeError("InstantSpawner only answers for servers already running")

    async def stop(self, now: bool = False) -> None:
        pass

    async def poll(self) -> int | None:
        return None if self.server else 0
