"""The package's warnings reach the hub's log once, with time, level and a cause."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import subprocess
import sys

import pytest
from jupyterhub.log import CoroutineLogFormatter
from spawner_support import make_spawner

from acaspawner import logs, spawner, watcher
from acaspawner.watcher import StatusUnavailable, StatusWatcher

#: JupyterHub's default log_format and log_datefmt (JupyterHub._log_format_default, _log_datefmt_default)
HUB_FORMAT = "%(color)s[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s %(module)s:%(lineno)d]%(end_color)s %(message)s"
HUB_DATEFMT = "%Y-%m-%d %H:%M:%S"
#: "[W 2026-01-02 03:04:05.678 acaspawner.watcher watcher:123] ..."
HUB_LINE = re.compile(r"^\[(?P<level>[DIWEC]) \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (?P<name>\S+) \S+:\d+\] (?P<msg>.*)$")


class Recorder(logging.Handler):
    """Keeps every record it handles (to count them)."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class HubLog:
    """A logger configured like JupyterHub's application logger, writing to a buffer."""

    def __init__(self, name: str):
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(CoroutineLogFormatter(fmt=HUB_FORMAT, datefmt=HUB_DATEFMT))
        self.recorder = Recorder()
        self.log = logging.getLogger(name)
        self.log.addHandler(self.handler)
        self.log.addHandler(self.recorder)
        self.log.setLevel(logging.INFO)
        self.log.propagate = False  # as JupyterHub.init_logging sets it

    def lines(self, containing: str = "") -> list[str]:
        return [line for line in self.stream.getvalue().splitlines() if containing in line]


@pytest.fixture
def hub_log():
    """The hub's logger; the root logger watched for copies; the package's logger restored after."""
    package = logging.getLogger(logs.PACKAGE)
    saved = (package.parent, list(package.handlers), package.propagate, package.level)
    hub = HubLog("JupyterHubForTest")
    root_recorder = Recorder()
    logging.getLogger().addHandler(root_recorder)
    hub.root_records = root_recorder.records
    yield hub
    logging.getLogger().removeHandler(root_recorder)
    hub.log.removeHandler(hub.handler)
    hub.log.removeHandler(hub.recorder)
    package.parent, package.handlers[:], package.propagate, package.level = saved


class TimingOutTable:
    """Stands in for HubStorage: the query raises what ``asyncio.timeout`` raises (no text of its own)."""

    table_queries = 0

    async def read_statuses(self, hub_id, changed_since=None):
        raise TimeoutError()


class HangingTable:
    """Stands in for HubStorage: the query never answers."""

    table_queries = 0

    async def read_statuses(self, hub_id, changed_since=None):
        await asyncio.Event().wait()


async def test_a_watcher_warning_reaches_the_hub_log_once_with_time_level_and_cause(hub_log):
    logs.speak_through(hub_log.log)
    logs.speak_through(hub_log.log)  # the next spawner: nothing more
    table = StatusWatcher(TimingOutTable(), "hub-x")
    with pytest.raises(StatusUnavailable, match="timed out after"):
        await table._query()

    lines = hub_log.lines("reading statuses")
    assert len(lines) == 1, hub_log.stream.getvalue()
    line = HUB_LINE.match(lines[0])
    assert line, lines[0]  # level and timestamp, in JupyterHub's format
    assert line["level"] == "W" and line["name"] == "acaspawner.watcher"
    assert line["msg"] == f"reading statuses of hub hub-x failed (1 in a row): timed out after {watcher.QUERY_TIMEOUT:g} s"

    warnings = [r for r in hub_log.recorder.records if r.name == "acaspawner.watcher"]
    assert [r.levelname for r in warnings] == ["WARNING"]  # each of the hub's handlers got it once
    assert [r for r in hub_log.root_records if r.name.startswith("acaspawner")] == []  # no copy via the root
    assert logging.getLogger(logs.PACKAGE).handlers == []  # nothing copied: the hub's handlers are reached


async def test_a_query_that_runs_into_the_watchers_timeout_names_the_timeout(hub_log, monkeypatch):
    monkeypatch.setattr(watcher, "QUERY_TIMEOUT", 0.01)
    logs.speak_through(hub_log.log)
    table = StatusWatcher(HangingTable(), "hub-y")
    with pytest.raises(StatusUnavailable) as raised:
        await table.refresh()
    assert str(raised.value) == "the status table could not be read: timed out after 0.01 s"
    assert isinstance(table.last_error, TimeoutError) and str(table.last_error) == ""  # what made lines end in ": "
    [line] = hub_log.lines("reading statuses")
    assert line.endswith("failed (1 in a row): timed out after 0.01 s")


async def test_other_failures_keep_their_own_text(hub_log):
    class Refusing:
        table_queries = 0

        async def read_statuses(self, hub_id, changed_since=None):
            raise ConnectionRefusedError("connection refused")

    logs.speak_through(hub_log.log)
    with pytest.raises(StatusUnavailable):
        await StatusWatcher(Refusing(), "hub-z")._query()
    [line] = hub_log.lines("reading statuses")
    assert line.endswith("failed (1 in a row): connection refused")


async def test_the_package_level_follows_the_hub_level(hub_log):
    logs.speak_through(hub_log.log)
    table = StatusWatcher(TimingOutTable(), "hub-d")
    table.ensure_running()  # logs "status watcher ... started" (and "stopped") at debug level
    await asyncio.sleep(0)  # let it start
    await table.close()
    assert hub_log.lines("status watcher for hub hub-d") == []  # the hub logs INFO and up

    hub_log.log.setLevel(logging.DEBUG)  # jupyterhub --debug
    table.ensure_running()
    await asyncio.sleep(0)
    await table.close()
    assert [HUB_LINE.match(line)["level"] for line in hub_log.lines("status watcher for hub hub-d")] == ["D", "D"]


def test_wiring_through_an_adapter_or_twice_adds_nothing(hub_log):
    package = logging.getLogger(logs.PACKAGE)
    logs.speak_through(logging.LoggerAdapter(hub_log.log, {}))
    logs.speak_through(hub_log.log)
    assert package.parent is hub_log.log
    assert package.handlers == [] and package.propagate
    assert [hub_log.log.handlers.count(h) for h in (hub_log.handler, hub_log.recorder)] == [1, 1]
    logging.getLogger("acaspawner.hub_storage").warning("one line")
    assert len(hub_log.lines("one line")) == 1


def test_a_logger_of_the_package_is_never_made_its_parent(hub_log):
    package = logging.getLogger(logs.PACKAGE)
    before = package.parent
    logs.speak_through(logging.getLogger("acaspawner.spawner"))
    logs.speak_through(package)
    assert package.parent is before


async def test_the_first_use_of_a_spawner_wires_the_package_to_its_log(db, hub_log, spawner_kwargs):
    aca = make_spawner(db, user_name="lou", log=hub_log.log, **spawner_kwargs)
    aca.watcher  # noqa: B018 - first use wires the loggers
    assert logging.getLogger(logs.PACKAGE).parent is hub_log.log
    logging.getLogger("acaspawner.watcher").warning("from the watcher")
    [line] = hub_log.lines("from the watcher")
    assert HUB_LINE.match(line)["name"] == "acaspawner.watcher"


async def test_poll_names_the_cause_when_the_table_times_out(db, hub_log, spawner_kwargs, monkeypatch):
    monkeypatch.setattr(spawner, "READ_BACKOFF", 0.001)
    aca = make_spawner(db, user_name="tim", log=hub_log.log, **spawner_kwargs)
    aca.generation = 1  # started before: poll reads the table
    monkeypatch.setattr(aca.watcher, "storage", TimingOutTable())
    assert await aca.poll() is None  # unknown is not dead
    [line] = hub_log.lines("Status of")
    assert HUB_LINE.match(line)["level"] == "W"
    assert line.endswith(f"(the status table could not be read: timed out after {watcher.QUERY_TIMEOUT:g} s); "
                         "assuming it still runs")
    assert len(hub_log.lines("reading statuses")) == spawner.READ_TRIES


def test_describe_never_returns_an_empty_cause():
    assert logs.describe(TimeoutError()) == "TimeoutError"
    assert logs.describe(TimeoutError(), 30.0) == "timed out after 30 s"
    assert logs.describe(TimeoutError(), 12.345) == "timed out after 12.3 s"
    assert logs.describe(TimeoutError("read timed out"), 30) == "read timed out"  # its own text wins
    assert logs.describe(asyncio.CancelledError(), 30) == "CancelledError"
    assert logs.describe(ConnectionError("refused")) == "refused"
    assert logs.describe(ValueError(""), 30) == "ValueError"


def test_the_contract_modules_neither_import_jupyterhub_nor_wire_anything():
    code = (
        "import logging, sys\n"
        "import acaspawner.contract, acaspawner.naming, acaspawner.sealing, acaspawner.wire\n"
        "import acaspawner.hub_storage, acaspawner.watcher\n"
        "assert 'jupyterhub' not in sys.modules, 'jupyterhub imported'\n"
        "package = logging.getLogger('acaspawner')\n"
        "assert package.parent is logging.getLogger() and not package.handlers, 'wired on import'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
