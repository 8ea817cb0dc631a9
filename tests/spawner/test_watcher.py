"""The shared status watcher with a scripted table: intervals, sharing, failures, idling out."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from spawner_support import make_spawner
from waiting import wait_until_async

from acaspawner.contract import Phase, Status
from acaspawner.hub_storage import StatusRead
from acaspawner.report import EnvironmentUse, Report
from acaspawner.storage_config import StorageConfig
from acaspawner.watcher import CHANGE_MARGIN, StatusUnavailable, StatusWatcher


class StampedRows(dict):
    """Rows stamped when written, as the table's server stamps ``Timestamp`` (``stamp`` backdates one)."""

    def __init__(self, rows=None):
        super().__init__()
        self.written: dict[str, datetime] = {}
        for key, status in (rows or {}).items():
            self[key] = status

    def __setitem__(self, key: str, status: Status) -> None:
        super().__setitem__(key, status)
        self.written[key] = datetime.now(UTC)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        del self.written[key]

    def stamp(self, key: str, status: Status, written: datetime) -> None:
        self[key] = status
        self.written[key] = written


class ScriptedTable:
    """Stands in for HubStorage.read_statuses: counts queries and entities, can be slow or fail."""

    def __init__(self, statuses=None, delay: float = 0.0):
        self.statuses = StampedRows(statuses)
        self.delay = delay
        self.failing = False
        self.table_queries = 0
        self.entities_read = 0
        self.asked: list[datetime | None] = []  # changed_since of each query
        self.report_reads = 0
        self.report_failing = False

    async def read_statuses(self, hub_id: str, changed_since: datetime | None = None) -> StatusRead:
        self.table_queries += 1
        self.asked.append(changed_since)
        await asyncio.sleep(self.delay)
        if self.failing:
            raise ConnectionError("table unreachable")
        rows = self.statuses
        found = {key: status for key, status in rows.items()
                 if changed_since is None or rows.written[key] >= changed_since}
        self.entities_read += len(found)
        return StatusRead(found, max((rows.written[key] for key in found), default=None))

    async def read_report(self, hub_id: str) -> Report:
        self.report_reads += 1
        if self.report_failing:
            raise ConnectionError("table unreachable")
        env = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/managedEnvironments/cae-w"
        return Report(environments={env: EnvironmentUse(env, cores=3.0, servers=6, cores_budget=10.0)})


async def wait_for(predicate, within: float) -> None:
    """Check ``predicate()`` every 10 ms; fail after ``within`` seconds."""
    await wait_until_async(predicate, within=within, interval=0.01)


def running(key: str, generation: int = 1) -> Status:
    return Status(hub_id="h", server_key=key, phase=Phase.RUNNING, generation=generation, url=f"http://{key}")


async def test_concurrent_reads_share_one_query():
    table = ScriptedTable({"a": running("a")}, delay=0.05)
    watcher = StatusWatcher(table, "h")
    results = await asyncio.gather(*(watcher.current("a", max_age=10) for _ in range(100)))
    assert table.table_queries == 1
    assert all(r.url == "http://a" for r in results)
    await watcher.current("a", max_age=10)  # fresh enough: no query
    assert table.table_queries == 1


async def test_full_reads_bring_the_functions_report_once_per_report_interval():
    table = ScriptedTable({"a": running("a")})
    watcher = StatusWatcher(table, "h", interval=0.05, fast_interval=0.05, report_interval=3600)
    for _ in range(5):
        await watcher.refresh()
        await asyncio.sleep(0.06)  # each read a full one
    await wait_for(lambda: table.report_reads == 1, within=5)
    assert watcher.full_reads >= 5 and table.report_reads == 1
    assert REGISTRY.get_sample_value("jupyterhub_aca_environment_cores", {"environment": "cae-w", "kind": "left"}) \
        == 7.0
    watcher.report_interval = 0.0
    await asyncio.sleep(0.06)
    await watcher.refresh()
    await wait_for(lambda: table.report_reads == 2, within=5)
    table.report_failing = True  # a report that cannot be read leaves the gauges as they were
    await asyncio.sleep(0.06)
    await watcher.refresh()
    await wait_for(lambda: table.report_reads == 3, within=5)
    assert REGISTRY.get_sample_value("jupyterhub_aca_environment_servers", {"environment": "cae-w"}) == 6


async def test_fast_while_anyone_waits_slow_otherwise():
    table = ScriptedTable()
    watcher = StatusWatcher(table, "h", interval=10, fast_interval=0.05)
    slow = watcher.subscribe()
    await asyncio.sleep(0.3)
    assert table.table_queries == 1  # the first read, then the slow interval
    fast = watcher.subscribe(fast=True)
    began = time.monotonic()
    # five more reads well within the slow interval (10 s): only the fast one can do that
    await wait_for(lambda: table.table_queries >= 6, within=5)
    await asyncio.sleep(0.2)
    burst = table.table_queries
    assert burst - 1 <= (time.monotonic() - began) / 0.05 + 1  # and never more than one per fast interval
    fast.fast = False
    await asyncio.sleep(0.3)
    assert table.table_queries <= burst + 1
    slow.close()
    fast.close()
    await watcher.close()


async def test_many_subscribers_do_not_add_queries():
    table = ScriptedTable()
    watcher = StatusWatcher(table, "h", interval=10, fast_interval=0.05)
    one = watcher.subscribe(fast=True)
    await wait_for(lambda: table.table_queries >= 2, within=5)
    many = [watcher.subscribe(fast=True) for _ in range(500)]
    table.table_queries = 0
    began = time.monotonic()
    await asyncio.sleep(0.5)
    # one query per fast interval at most (measured, not assumed: a loaded machine stretches the sleep)
    assert 0 < table.table_queries <= (time.monotonic() - began) / 0.05 + 1
    for s in [one, *many]:
        s.close()
    await watcher.close()


async def test_waiters_are_woken_per_refresh():
    table = ScriptedTable()
    watcher = StatusWatcher(table, "h", interval=10, fast_interval=0.05)
    sub = watcher.subscribe(fast=True)
    await watcher.next_refresh()
    table.statuses["k"] = running("k")
    for _ in range(3):
        if watcher.get("k"):
            break
        await asyncio.wait_for(watcher.next_refresh(), 1)
    assert watcher.get("k").url == "http://k"
    sub.close()
    await watcher.close()


async def test_failures_raise_unavailable_and_recover():
    table = ScriptedTable({"a": running("a")})
    table.failing = True
    watcher = StatusWatcher(table, "h")
    with pytest.raises(StatusUnavailable, match="unreachable"):
        await watcher.current("a", max_age=1)
    assert watcher.consecutive_errors == 1 and not watcher.first_read.is_set()
    table.failing = False
    assert (await watcher.current("a", max_age=1)).url == "http://a"
    assert watcher.consecutive_errors == 0 and watcher.first_read.is_set()


async def test_task_ends_when_nobody_listens():
    table = ScriptedTable()
    watcher = StatusWatcher(table, "h", interval=0.05, fast_interval=0.05, idle_timeout=2.0)
    sub = watcher.subscribe()
    await asyncio.sleep(0.1)
    assert watcher.running
    sub.close()
    lingering = table.table_queries
    await asyncio.sleep(0.3)
    assert watcher.running and table.table_queries <= lingering + 1  # lingers without querying
    await wait_for(lambda: not watcher.running, within=10)  # then ends
    count = table.table_queries
    await asyncio.sleep(0.2)
    assert table.table_queries == count
    watcher.subscribe().close()  # a new subscriber starts it again
    assert watcher.running
    await watcher.close()


async def test_shared_per_loop_config_and_hub():
    config = StorageConfig(connection_string="UseDevelopmentStorage=true")
    a = StatusWatcher.shared(config, "hub1")
    assert StatusWatcher.shared(config, "hub1") is a
    assert StatusWatcher.shared(config, "hub2") is not a
    other = StorageConfig(connection_string="UseDevelopmentStorage=true", table_name="other")
    assert StatusWatcher.shared(other, "hub1") is not a


async def test_poll_never_reports_death_when_the_table_fails(db, monkeypatch):
    monkeypatch.setattr("acaspawner.spawner.READ_BACKOFF", 0.01)
    spawner = make_spawner(db, storage_connection_string="UseDevelopmentStorage=true", sealing_keys="x")
    spawner.load_state({"server_key": "jl-user-1", "generation": 5, "last_op": "start"})
    table = ScriptedTable()
    table.failing = True
    spawner.watcher.storage = table
    assert await spawner.poll() is None
    assert table.table_queries == 4  # retried with backoff, then gave up without a verdict
    table.failing = False
    table.statuses["jl-user-1"] = Status(hub_id="h", server_key="jl-user-1", phase=Phase.STOPPED, generation=5)
    assert await spawner.poll() == 0


def spread_out(n: int) -> StampedRows:
    """``n`` running servers whose rows were written over the last hours, a minute apart."""
    rows = StampedRows()
    now = datetime.now(UTC)
    for i in range(n):
        rows.stamp(f"s{i}", running(f"s{i}"), now - timedelta(minutes=n - i))
    return rows


async def test_between_full_reads_the_watcher_reads_what_changed_not_every_server():
    table = ScriptedTable()
    table.statuses = spread_out(2000)
    watcher = StatusWatcher(table, "h", interval=30, fast_interval=0.02)
    sub = watcher.subscribe(fast=True)
    await wait_for(lambda: table.table_queries >= 10, within=10)
    assert watcher.full_reads == 1 and table.asked[0] is None
    newest = table.statuses.written["s1999"]
    assert set(table.asked[1:]) == {newest - CHANGE_MARGIN}  # the table's clock, less the margin
    assert table.entities_read < 2000 + 2 * table.table_queries  # each fast read: the newest row, not 2000

    table.statuses["s7"] = Status(hub_id="h", server_key="s7", phase=Phase.STOPPED, generation=1)
    table.statuses["new"] = running("new")
    await wait_for(lambda: watcher.get("new") is not None, within=5)
    assert watcher.get("s7").phase is Phase.STOPPED and len(watcher.statuses) == 2001
    assert watcher.full_reads == 1
    sub.close()
    await watcher.close()


async def test_a_write_stamped_just_before_the_newest_seen_is_not_missed():
    """A write the table's server stamped before a later one, but committed after it: within the margin."""
    table = ScriptedTable()
    table.statuses = spread_out(10)
    watcher = StatusWatcher(table, "h", interval=30, fast_interval=0.02)
    await watcher.refresh()
    late = table.statuses.written["s9"] - CHANGE_MARGIN + timedelta(seconds=1)
    table.statuses.stamp("late", running("late"), late)
    await watcher.refresh()
    assert watcher.get("late") is not None and watcher.full_reads == 1
    await watcher.close()


async def test_the_full_read_each_interval_forgets_rows_that_were_deleted():
    table = ScriptedTable({"a": running("a"), "b": running("b")})
    watcher = StatusWatcher(table, "h", interval=0.3, fast_interval=0.02)
    sub = watcher.subscribe(fast=True)
    await wait_for(lambda: watcher.get("a") is not None, within=5)
    del table.statuses["a"]
    await wait_for(lambda: watcher.get("a") is None, within=5)  # only a full read can tell
    assert watcher.full_reads >= 2 and watcher.get("b") is not None
    sub.close()
    await watcher.close()
