"""The spawner's series in JupyterHub's own Prometheus registry, served with the hub's at ``/hub/metrics``.

Named as JupyterHub names its own (its ``JUPYTERHUB_METRICS_PREFIX``, then
``aca_``), so a dashboard built on ``jupyterhub_server_spawn_duration_seconds``
finds these beside it:

- ``…_aca_spawn_duration_seconds{part}``: where a successful start's time
  went. ``queue``: from the request sent until a function took it;
  ``azure``: until the functions recorded it running; ``hub``: until
  ``start()`` returned (the status watcher, and a warm server's hand-over).
  Two clocks meet here (the hub's and the functions'): a part never counts
  below zero.
- ``…_aca_spawn_failures_total{code}``: failed starts, by the functions'
  error code (ARM's, or ``NoCapacity``, ``UserLimitReached`` …), else the
  spawner's reason (``timeout``, ``superseded`` …).
- ``…_aca_status_reads_total{kind}`` and ``…_aca_status_rows_read_total{kind}``:
  the status watcher's queries and the rows they returned, ``full`` (the
  whole partition, once per interval) or ``changed`` (rows written since).
"""

from __future__ import annotations

import os
import re

from prometheus_client import Counter, Histogram

from .contract import Phase, Status

PREFIX = os.getenv("JUPYTERHUB_METRICS_PREFIX", "jupyterhub")
#: ACA takes tens of seconds to provision; a warm server a few
BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 25, 30, 45, 60, 90, 120, 180, 300, 600)
_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")

SPAWN_DURATION = Histogram(
    "aca_spawn_duration_seconds", "Seconds of a successful start, by part: queue, azure, hub", ["part"],
    namespace=PREFIX, buckets=BUCKETS,
)
SPAWN_FAILURES = Counter(
    "aca_spawn_failures", "Failed starts, by the functions' error code or the spawner's reason", ["code"],
    namespace=PREFIX,
)
STATUS_READS = Counter(
    "aca_status_reads", "Queries of the status table by the hub's watcher, full or of changed rows", ["kind"],
    namespace=PREFIX,
)
STATUS_ROWS_READ = Counter(
    "aca_status_rows_read", "Status rows the hub's watcher read, by kind of query", ["kind"], namespace=PREFIX,
)


def _first(status: Status, phases: tuple[Phase, ...]) -> float | None:
    wanted = {p.value for p in phases}
    return next((float(e["time"]) for e in status.events
                 if e.get("phase") in wanted and isinstance(e.get("time"), int | float)), None)


def observe_start(sent: float, status: Status, returned: float) -> dict[str, float]:
    """Record a successful start: sent at ``sent`` (the hub's clock), its ``status`` row when it ran, returned at
    ``returned``; the parts, as recorded."""
    taken = _first(status, (Phase.PROVISIONING, Phase.RUNNING))
    running = _first(status, (Phase.RUNNING,))
    if taken is None or running is None:  # a row without its events (an older functions release): the whole
        parts = {"hub": max(returned - sent, 0.0)}
    else:
        running = max(running, taken)
        parts = {"queue": max(taken - sent, 0.0), "azure": running - taken, "hub": max(returned - running, 0.0)}
    for part, seconds in parts.items():
        SPAWN_DURATION.labels(part).observe(seconds)
    return parts


def count_failure(code: str) -> None:
    """One failed start, labelled by ``code`` (anything that is not a plain code counts as ``other``)."""
    SPAWN_FAILURES.labels(code if _LABEL.match(code or "") else "other").inc()


def count_read(full: bool, rows: int) -> None:
    kind = "full" if full else "changed"
    STATUS_READS.labels(kind).inc()
    STATUS_ROWS_READ.labels(kind).inc(rows)
