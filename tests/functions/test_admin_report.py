"""What the functions report to admins, written to and read back from a real Azurite: environments' use and budget,
the timers' runs, the warm pool; the same runs and starts as OpenTelemetry metrics; request ids on log records."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import pytest
from capacity_support import env_ids, pool_setting
from fn_support import HUB, base_env, deliver, request
from opentelemetry import metrics as otel_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import REGISTRY

from acaspawner import metrics
from acaspawner.contract import Phase, Status
from acaspawner.hub_storage import HubStorage
from acaspawner.report import FailedStart, RunReport, figures_of, report_partition
from acaspawner.storage_config import StorageConfig
from functions import reporting, telemetry
from functions.culler import CullSummary
from functions.footprint import Footprint
from functions.pool_timer import PoolSummary
from functions.settings import Settings
from functions.storage import FunctionStorage


@pytest.fixture(scope="module")
def metric_reader():
    """One SDK meter provider for the module (OpenTelemetry lets the global provider be set once)."""
    reader = InMemoryMetricReader()
    otel_metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    telemetry.reset()
    yield reader
    telemetry.reset()


def points(reader: InMemoryMetricReader, name: str) -> list:
    data = reader.get_metrics_data()
    found = []
    for resource in (data.resource_metrics if data else ()):
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


@pytest.fixture
def app_settings(storage_connection_string, unique_name):
    ids = env_ids(2)
    return base_env(AcaStorage=storage_connection_string, ACA_STATUS_TABLE=unique_name("t"),
                    ACA_ENVIRONMENTS=pool_setting(ids, 10.0))


def hub_read(settings: Settings):
    async def read():
        storage = HubStorage(StorageConfig(table_name=settings.storage.table_name,
                                           connection_string=settings.storage.connection_string))
        try:
            return await storage.read_report(settings.hub_id)
        finally:
            await storage.close()

    return asyncio.run(read())


def test_the_hub_reads_each_environments_use_and_budget_from_the_ledger(make_deps, app_settings):
    deps = make_deps(ACA_ENVIRONMENTS=app_settings["ACA_ENVIRONMENTS"])
    deps.storage.ensure_table()
    first = deps.capacity.reserve("s-1", 1, Footprint(1.0, 2.0), user="ann")
    deps.capacity.reserve("s-2", 1, Footprint(2.0, 4.0), user="bob", pinned=first)
    report = hub_read(deps.settings)
    (use,) = report.environments.values()
    assert use.environment_id == first and (use.cores, use.servers, use.cores_budget) == (3.0, 2, 10.0)
    assert use.cores_left == 7.0 and use.memory_gib_budget == 20.0
    deps.capacity.release("s-1", 2)
    (after,) = hub_read(deps.settings).environments.values()
    assert after.cores_left == 8.0

    metrics.show_report(report)
    sample = REGISTRY.get_sample_value
    assert sample("jupyterhub_aca_environment_cores", {"environment": use.name, "kind": "left"}) == 7.0
    assert sample("jupyterhub_aca_environment_servers", {"environment": use.name}) == 2


def test_a_timers_run_is_reported_as_a_row_and_as_metrics(app_settings, metric_reader):
    summary = CullSummary(users_listed=3, culled=["ann", "bob/x"], kept=1, seconds=0.5)
    assert reporting.reported_run(app_settings, "aca-idle-culler", lambda: summary) is summary
    report = hub_read(Settings.from_environ(app_settings, sealing=False))
    run = report.runs["aca-idle-culler"]
    assert run.ok and run.summary == summary.line() and run.figures["culled"] == 2 and run.figures["kept"] == 1
    runs = {tuple(sorted(p.attributes.items())): p.value for p in points(metric_reader, telemetry.TIMER_RUNS)}
    assert runs[(("result", "ok"), ("timer", "aca-idle-culler"))] >= 1
    items = {(p.attributes["timer"], p.attributes["figure"]): p.value
             for p in points(metric_reader, telemetry.TIMER_ITEMS)}
    assert items[("aca-idle-culler", "culled")] >= 2

    metrics.show_report(report)
    assert REGISTRY.get_sample_value("jupyterhub_aca_timer_last_run_errors", {"timer": "aca-idle-culler"}) == 0
    assert REGISTRY.get_sample_value("jupyterhub_aca_timer_last_run_timestamp_seconds",
                                     {"timer": "aca-idle-culler"}) == pytest.approx(run.ended)


def test_every_environment_of_the_pool_is_reported_with_its_budget_used_or_not(make_deps, app_settings):
    deps = make_deps(ACA_ENVIRONMENTS=app_settings["ACA_ENVIRONMENTS"])
    deps.storage.ensure_table()
    used = deps.capacity.reserve("s-1", 1, Footprint(1.0, 2.0), user="ann")
    settings = dict(app_settings, ACA_STATUS_TABLE=deps.settings.storage.table_name)
    reporting.reported_run(settings, "aca-reconciler", lambda: CullSummary())
    report = hub_read(deps.settings)
    assert sorted((u.name, u.cores, u.cores_left) for u in report.environments.values()) == [
        ("env", 1.0, 9.0) if used.endswith("/env") else ("env", 0.0, 10.0),
        ("env-2", 1.0, 9.0) if used.endswith("/env-2") else ("env-2", 0.0, 10.0)]


def test_an_environment_taken_out_of_the_pool_goes_from_the_page_once_its_servers_are_gone(make_deps, app_settings):
    deps = make_deps(ACA_ENVIRONMENTS=app_settings["ACA_ENVIRONMENTS"])
    deps.storage.ensure_table()
    settings = dict(app_settings, ACA_STATUS_TABLE=deps.settings.storage.table_name)
    first, second = env_ids(2)
    deps.capacity.reserve("s-1", 1, Footprint(1.0, 2.0), user="ann", pinned=second)
    reporting.reported_run(settings, "aca-reconciler", lambda: CullSummary(), tidy=True)
    assert [u.name for u in hub_read(deps.settings).shown_environments()] == ["env", "env-2"]

    # the admin keeps only the first environment: the second is shown while it still holds a server
    smaller = dict(settings, ACA_ENVIRONMENTS=pool_setting([first], 10.0))
    reporting.reported_run(smaller, "aca-reconciler", lambda: CullSummary(), tidy=True)
    report = hub_read(deps.settings)
    assert [(u.name, u.servers) for u in report.shown_environments()] == [("env", 0), ("env-2", 1)]
    deps.capacity.release("s-1", 2)
    assert [u.name for u in hub_read(deps.settings).shown_environments()] == ["env"]


def test_the_reconciler_forgets_failed_starts_after_a_week(app_settings):
    settings = Settings.from_environ(app_settings, sealing=False)
    storage = FunctionStorage(settings.storage)
    storage.ensure_table()
    now = time.time()
    for key, age in (("old", reporting.FAILED_KEPT + 60), ("recent", 3600)):
        storage.table.upsert_entity(FailedStart(key, "ann", "", "NoCapacity", "full", "rid", now - age)
                                    .to_entity(settings.hub_id))
    reporting.reported_run(app_settings, "aca-idle-culler", lambda: CullSummary())  # only the reconciler tidies
    assert set(hub_read(settings).failed) == {"old", "recent"}
    assert reporting.prune(storage.table, settings.hub_id, [b.id for b in settings.environments], now) == 1
    assert set(hub_read(settings).failed) == {"recent"}


def test_a_run_that_raises_is_reported_failed_and_still_raises(app_settings, metric_reader):
    def broken():
        raise RuntimeError("the hub did not answer")

    with pytest.raises(RuntimeError):
        reporting.reported_run(app_settings, "aca-reconciler", broken)
    run = hub_read(Settings.from_environ(app_settings, sealing=False)).runs["aca-reconciler"]
    assert not run.ok and "RuntimeError: the hub did not answer" in run.summary


def test_the_warm_pool_reports_each_profile(app_settings):
    summary = PoolSummary(ready={"small": 3, "gpu": 0}, bound={"small": 2}, wanted={"small": 5, "gpu": 1})
    reporting.reported_run(app_settings, "aca-warm-pool", lambda: summary)
    warm = hub_read(Settings.from_environ(app_settings, sealing=False)).warm
    assert (warm["small"].ready, warm["small"].bound, warm["small"].wanted) == (3, 2, 5)
    assert (warm["gpu"].ready, warm["gpu"].wanted) == (0, 1)
    metrics.show_report(hub_read(Settings.from_environ(app_settings, sealing=False)))
    assert REGISTRY.get_sample_value("jupyterhub_aca_warm_servers", {"profile": "small", "state": "ready"}) == 3


def test_a_table_that_refuses_loses_the_row_not_the_run(app_settings, caplog):
    # the same account, its endpoints on a port nothing listens on
    bad = dict(app_settings, AcaStorage=re.sub(r"//127\.0\.0\.1:\d+/", "//127.0.0.1:9/", app_settings["AcaStorage"]))
    assert bad["AcaStorage"] != app_settings["AcaStorage"]
    summary = CullSummary()
    with caplog.at_level(logging.WARNING):
        assert reporting.reported_run(bad, "aca-idle-culler", lambda: summary) is summary


def test_report_rows_hold_no_secret_and_cut_long_summaries():
    entity = RunReport("aca-idle-culler", 1.0, 2.0, 0, "x" * 10_000, {f"f{i}": i for i in range(100)}).to_entity(HUB)
    assert entity["PartitionKey"] == report_partition(HUB) and len(entity["summary"]) == 4000
    assert len(json.loads(entity["figures"])) == 40
    assert figures_of(CullSummary(culled=["a"], seconds=1.5)) == {
        "users_listed": 0, "servers_seen": 0, "culled": 1, "stopping": 0, "kept": 0, "users_deleted": 0,
        "errors": 0, "api_calls": 0, "seconds": 1.5}


def test_a_garbled_report_row_reads_as_empty_figures():
    row = {"RowKey": "run-x", "timer": "t", "figures": "{not json", "ended": "soon", "errors": "many"}
    run = RunReport.from_entity(row)
    assert (run.figures, run.ended, run.errors) == ({}, 0.0, 0)


def test_a_starts_outcome_and_its_time_are_metrics(deps, metric_reader):
    req = request()
    deliver(deps, req)
    status = deps.storage.get_status(HUB, req.server_key)
    assert status.request_id == req.request_id  # the page and the logs find the request by it
    # the functions' own write of "running" counted the start
    assert status.phase is Phase.RUNNING
    ran = [p for p in points(metric_reader, telemetry.START_DURATION) if p.attributes["outcome"] == "running"]
    assert ran and ran[0].count >= 1
    waiting = Status(hub_id=HUB, server_key="k", phase=Phase.QUEUED, generation=2, events=[
        {"phase": "queued", "message": "", "time": 100.0}, {"phase": "provisioning", "message": "", "time": 101.0}])
    telemetry.status_written(waiting.with_event(Phase.FAILED, "no room", error_code="NoCapacity"))
    codes = {p.attributes["code"]: p.value for p in points(metric_reader, telemetry.START_FAILURES)}
    assert codes["NoCapacity"] >= 1
    failed = [p for p in points(metric_reader, telemetry.START_DURATION) if p.attributes["outcome"] == "failed"]
    assert failed and failed[0].count >= 1


def test_a_repeated_outcome_is_not_counted_again(metric_reader):
    def failures() -> float:
        return sum(p.value for p in points(metric_reader, telemetry.START_FAILURES)
                   if p.attributes["code"] == "Repeat")

    row = Status(hub_id=HUB, server_key="k", phase=Phase.QUEUED, generation=1).with_event(Phase.PROVISIONING, "")
    ended = row.with_event(Phase.FAILED, "x", error_code="Repeat")
    telemetry.status_written(ended)
    before = failures()
    telemetry.status_written(ended.with_event(Phase.FAILED, "again", error_code="Repeat"))
    assert failures() == before == 1


def test_log_records_about_a_request_carry_its_id(deps, caplog):
    caplog.handler.addFilter(telemetry.RequestIdFilter())
    req = request()
    with caplog.at_level(logging.INFO, logger="functions"):
        deliver(deps, req)
    about = [r for r in caplog.records if r.name.startswith("functions.")]
    assert about and all(r.request_id == req.request_id for r in about)
    with caplog.at_level(logging.INFO):
        logging.getLogger("functions.x").info("outside any request")
    assert caplog.records[-1].request_id == ""


def test_the_request_id_reaches_a_handler_on_the_functions_logger_from_its_children():
    # the distro's handler sits on the "functions" logger; records of functions.lifecycle reach it propagated
    logger, records = logging.getLogger("functions"), []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        telemetry._name_requests(logger)
        telemetry._name_requests(logger)
        assert sum(isinstance(f, telemetry.RequestIdFilter) for f in handler.filters) == 1
        with telemetry.request_context("4c293e78-ee05-4b47-a794-97eda8e26f6e"):
            logging.getLogger("functions.lifecycle").warning("about a request")
        assert records[-1].request_id == "4c293e78-ee05-4b47-a794-97eda8e26f6e"
    finally:
        logger.removeHandler(handler)


def test_telemetry_is_off_without_a_connection_string_and_never_raises():
    assert telemetry.configure({}) is False
    # a string the distro refuses: the functions run on, without telemetry
    assert telemetry.configure({"APPLICATIONINSIGHTS_CONNECTION_STRING": "not a connection string"}) is False
    assert telemetry._client_id("Authorization=AAD;ClientId=abc") == "abc"
    assert telemetry._client_id("ClientId=abc") == ""
