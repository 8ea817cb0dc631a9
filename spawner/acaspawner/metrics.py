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
- ``…_aca_environment_cores{environment,kind}`` (``used``, ``budget``, ``left``)
  and ``…_aca_environment_servers{environment}``: each environment as the
  capacity ledger counts it; ``…_aca_warm_servers{profile,state}`` (``ready``,
  ``bound``, ``wanted``): the warm pool after its timer's last run;
  ``…_aca_timer_last_run_timestamp_seconds{timer}`` and
  ``…_aca_timer_last_run_errors{timer}``: when the culler, the reconciler and
  the pool's timer last ended, and with how many errors. Read from the
  functions' report (:mod:`acaspawner.report`) once a minute while the hub
  watches any server (:mod:`acaspawner.watcher`).
"""

from __future__ import annotations

import os
import re

from prometheus_client import Counter, Gauge, Histogram

from .contract import Phase, Status
from .report import Report

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

ENVIRONMENT_CORES = Gauge(
    "aca_environment_cores", "Cores of an environment: used by servers, the budget, left", ["environment", "kind"],
    namespace=PREFIX,
)
ENVIRONMENT_SERVERS = Gauge(
    "aca_environment_servers", "Servers holding cores in an environment", ["environment"], namespace=PREFIX,
)
WARM_SERVERS = Gauge(
    "aca_warm_servers", "Warm servers of a pool profile: ready, bound to a user, wanted now", ["profile", "state"],
    namespace=PREFIX,
)
TIMER_LAST_RUN = Gauge(
    "aca_timer_last_run_timestamp_seconds", "When a timer's last run ended (Unix time)", ["timer"], namespace=PREFIX,
)
TIMER_LAST_ERRORS = Gauge(
    "aca_timer_last_run_errors", "Errors of a timer's last run", ["timer"], namespace=PREFIX,
)


def show_report(report: Report) -> None:
    """Set the gauges from one read of the functions' report (series of things no longer reported go)."""
    for gauge in (ENVIRONMENT_CORES, ENVIRONMENT_SERVERS, WARM_SERVERS, TIMER_LAST_RUN, TIMER_LAST_ERRORS):
        gauge.clear()
    for use in report.shown_environments():
        name = use.name if _LABEL.match(use.name) else "other"
        ENVIRONMENT_CORES.labels(name, "used").set(use.cores)
        ENVIRONMENT_SERVERS.labels(name).set(use.servers)
        if use.cores_left is not None:
            ENVIRONMENT_CORES.labels(name, "budget").set(use.cores_budget)
            ENVIRONMENT_CORES.labels(name, "left").set(use.cores_left)
    for warm in report.warm.values():
        profile = warm.profile if _LABEL.match(warm.profile) else "other"
        for state, count in (("ready", warm.ready), ("bound", warm.bound), ("wanted", warm.wanted)):
            WARM_SERVERS.labels(profile, state).set(count)
    for run in report.runs.values():
        timer = run.timer if _LABEL.match(run.timer) else "other"
        TIMER_LAST_RUN.labels(timer).set(run.ended)
        TIMER_LAST_ERRORS.labels(timer).set(run.errors)


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
