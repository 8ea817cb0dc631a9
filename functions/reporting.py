"""What the timers tell admins when a run ends: a ``run-<timer>`` row (and the warm pool's ``warm-<profile>`` rows)
in the hub's report partition (:mod:`acaspawner.report`), and the same figures as metrics (:mod:`functions.telemetry`).

Reporting never fails a run: a table that cannot be written is logged and
the run's own outcome stands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from azure.core.exceptions import AzureError
from azure.data.tables import TableClient, UpdateMode

from acaspawner.report import EnvironmentUse, RunReport, WarmProfileUse, figures_of

from . import telemetry
from .settings import Settings, SettingsError
from .storage import FunctionStorage

log = logging.getLogger(__name__)

T = TypeVar("T")


def write_rows(table: TableClient, entities: list[dict[str, Any]]) -> bool:
    """Upsert ``entities`` (each replaces its row); False, logged, when the table refused."""
    try:
        for entity in entities:
            table.upsert_entity(entity, mode=UpdateMode.REPLACE)
    except AzureError as e:
        log.warning("could not write the admins' report: %s", type(e).__name__)
        return False
    return True


def report_of(timer: str, summary: Any, ended: float | None = None) -> RunReport:
    """The report row of a run that ended with ``summary`` (a timer's summary: ``line()``, ``errors``, ``seconds``)."""
    figures = figures_of(summary)
    return RunReport(timer, time.time() if ended is None else ended, float(figures.get("seconds", 0.0)),
                     len(getattr(summary, "errors", ())), summary.line(), figures)


def warm_rows_of(summary: Any, ended: float) -> list[WarmProfileUse]:
    """The warm pool's profiles after a run of :mod:`functions.pool_timer`."""
    return [WarmProfileUse(name, ready, summary.bound.get(name, 0), summary.wanted.get(name, 0), ended)
            for name, ready in sorted(summary.ready.items())]


def reported_run(environ: Mapping[str, str], timer: str, run: Callable[[], T]) -> T:
    """Run a timer's ``run`` and report how it ended, also when it raised (then with the error's type)."""
    started = time.monotonic()
    try:
        summary = run()
    except Exception as e:
        seconds = time.monotonic() - started
        report = RunReport(timer, time.time(), seconds, 1, f"{timer}: the run failed: {type(e).__name__}: {e}"[:500])
        _publish(environ, report, [])
        raise
    report = report_of(timer, summary)
    if not report.seconds:
        report = RunReport(report.timer, report.ended, time.monotonic() - started, report.errors, report.summary,
                           report.figures)
    _publish(environ, report, warm_rows_of(summary, report.ended) if hasattr(summary, "wanted") else [])
    for environment in getattr(getattr(summary, "capacity", None), "environments", ()):
        if environment.cores_budget is not None:
            telemetry.environment_counted(environment.name, environment.cores_used, environment.cores_budget,
                                          environment.servers)
    return summary


def _publish(environ: Mapping[str, str], report: RunReport, warm: list[WarmProfileUse]) -> None:
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
        write_rows(storage.table, [report.to_entity(settings.hub_id), *budgets,
                                   *(w.to_entity(settings.hub_id) for w in warm)])
    except AzureError as e:
        log.warning("could not write the admins' report: %s", type(e).__name__)
    finally:
        for client in (storage.table, storage.poison, storage.lifecycle):
            client.close()
