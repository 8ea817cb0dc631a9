"""The package's warnings reach the hub's log with time, level and a cause."""

from __future__ import annotations

import io
import logging

import pytest
from spawner_support import make_spawner
from tornado.log import LogFormatter

from acaspawner import logs, watcher
from acaspawner.watcher import StatusUnavailable, StatusWatcher


@pytest.fixture
def hub_log():
    """A logger formatted as JupyterHub formats its own, writing to a buffer; the package unwired after."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogFormatter(fmt="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s",
                                      datefmt="%Y-%m-%d %H:%M:%S"))
    log = logging.getLogger("JupyterHubForTest")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    package = logging.getLogger(logs.PACKAGE)
    saved = (list(package.handlers), package.propagate, package.level)
    yield log, stream
    package.handlers[:], package.propagate, package.level = saved[0], saved[1], saved[2]
    log.removeHandler(handler)


class TimingOutTable:
    table_queries = 0

    async def list_statuses(self, hub_id):
        raise TimeoutError()  # what asyncio.timeout raises: no text of its own


async def test_a_watcher_warning_reaches_the_hub_log_once_with_time_level_and_cause(hub_log):
    log, stream = hub_log
    logs.speak_through(log)
    logs.speak_through(log)  # the second spawner: no second handler
    table = StatusWatcher(TimingOutTable(), "hub-x")
    with pytest.raises(StatusUnavailable, match="no answer within"):
        await table._query()
    lines = [line for line in stream.getvalue().splitlines() if "reading statuses" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("[W 2") and "acaspawner.watcher" in lines[0]  # level, date, logger
    assert lines[0].endswith(f"failed (1 in a row): no answer within {watcher.QUERY_TIMEOUT:g} s")


async def test_the_first_spawner_wires_the_package_to_its_log(db, hub_log, spawner_kwargs):
    log, _ = hub_log
    spawner = make_spawner(db, user_name="lou", log=log, **spawner_kwargs)
    spawner.watcher  # noqa: B018 - first use wires the loggers
    assert set(log.handlers) <= set(logging.getLogger(logs.PACKAGE).handlers)


def test_describe_never_returns_an_empty_cause():
    assert logs.describe(TimeoutError()) == "TimeoutError"
    assert logs.describe(ConnectionError("refused")) == "refused"
