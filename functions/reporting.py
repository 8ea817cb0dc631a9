"""What the timers tell admins when a run ends: a ``run-<timer>`` row (and the warm pool's ``warm-<profile>`` rows)
in the hub's report partition (:mod:`acaspawner.report`), and the same figures as metrics (:mod:`functions.telemetry`).

Reporting never fails a run: a table that cannot be written is logged and
the run's own outcome stands. The reconciler's report also tidies up
(:func:`prune`): the budget of an environment taken out of the pool, failed
starts older than a week.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from azure.core.exceptions import AzureError
from azure.data.tables import TableClient, UpdateMode

from acaspawner.report import (
    BUDGET_PREFIX,
    FAILED_PREFIX,
    EnvironmentUse,
    RunReport,
    WarmProfileUse,
    env_key,
    figures_of,
    prefix_query,
    report_partition,
)

from . import telemetry
from .settings import Settings, SettingsError
from .storage import FunctionStorage

log = logging.getLogger(__name__)

T = TypeVar("T")
#: a failed start stays on the admins' page this long (it lists the last day's)
FAILED_KEPT = 7 * 86400.0


def report_of(timer: str, summary: Any, elapsed: float) -> RunReport:
    """The report row of a run that ended now with ``summary`` (a timer's summary: ``line()``, ``errors`` and
    perhaps ``seconds``, else the run took ``elapsed``)."""
    figures = figures_of(summary)
    return RunReport(timer, time.time(), figures.get("seconds") or elapsed, len(getattr(summary, "errors", ())),
                     summary.line(), figures)


def warm_rows_of(summary: Any, ended: float) -> list[WarmProfileUse]:
    """The warm pool's profiles after a run of :mod:`functions.pool_timer`."""
    return [WarmProfileUse(name, ready, summary.bound.get(name, 0), summary.wanted.get(name, 0), ended)
            for name, ready in sorted(summary.ready.items())]


def prune(table: TableClient, hub_id: str, pool: list[str], now: float) -> int:
    """Delete report rows nobody should see any more: the budget of an environment no longer in ``pool``, and
    failed starts older than :data:`FAILED_KEPT`; how many went."""
    partition = report_partition(hub_id)
    kept_pool = {env_key(environment_id) for environment_id in pool}
    query, parameters = prefix_query(partition, BUDGET_PREFIX)
    stale = [e for e in table.query_entities(query, parameters=parameters)
             if env_key(str(e.get("environment_id", ""))) not in kept_pool]
    query, parameters = prefix_query(partition, FAILED_PREFIX, "failed_at lt @cutoff")
    stale += table.query_entities(query, parameters={**parameters, "cutoff": now - FAILED_KEPT})
    for entity in stale:
        table.delete_entity(partition, entity["RowKey"])
    return len(stale)


def reported_run(environ: Mapping[str, str], timer: str, run: Callable[[], T], *, tidy: bool = False) -> T:
    """Run a timer's ``run`` and report how it ended, also when it raised (then with the error's type);
    ``tidy``: also :func:`prune` the report (the reconciler does, once per run)."""
    started = time.monotonic()
    try:
        summary = run()
    except Exception as e:
        seconds = time.monotonic() - started
        report = RunReport(timer, time.time(), seconds, 1, f"{timer}: the run failed: {type(e).__name__}: {e}"[:500])
        _publish(environ, report, [], tidy)
        raise
    report = report_of(timer, summary, time.monotonic() - started)
    _publish(environ, report, warm_rows_of(summary, report.ended) if hasattr(summary, "wanted") else [], tidy)
    for environment in getattr(getattr(summary, "capacity", None), "environments", ()):
        if environment.cores_budget is not None:
            telemetry.environment_counted(environment.name, environment.cores_used, environment.cores_budget,
                                          environment.servers)
    return summary


def _publish(environ: Mapping[str, str], report: RunReport, warm: list[WarmProfileUse], tidy: bool) -> None:
    telemetry.run_ended(report.timer, report.seconds, report.errors, report.figures)
    try:
        settings = Settings.from_environ(environ, sealing=False)
    except SettingsError as e:  # a timer configured without the lifecycle's settings: metrics only
        log.debug("no report row for %s: %s", report.timer, e)
        return
    storage = FunctionStorage(settings.storage)
    try:
        storage.ensure_table()
        budgets = [EnvironmentUse(b.id, cores_budget=b.cores, memory_gib_budget=b.memory_gib).budget_entity(
            settings.hub_id) for b in settings.environments]
        for entity in (report.to_entity(settings.hub_id), *budgets, *(w.to_entity(settings.hub_id) for w in warm)):
            storage.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        if tidy:
            pruned = prune(storage.table, settings.hub_id, [b.id for b in settings.environments], report.ended)
            (log.info if pruned else log.debug)("removed %d stale rows of the admins' report", pruned)
    except AzureError as e:
        log.warning("could not write the admins' report: %s", type(e).__name__)
    finally:
        for client in (storage.table, storage.poison, storage.lifecycle):
            client.close()
