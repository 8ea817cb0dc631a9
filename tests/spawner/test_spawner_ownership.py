"""A status row recorded for another server under this server's key is never adopted."""

from __future__ import annotations

import asyncio

import pytest
from spawner_support import make_spawner

from acaspawner import outcomes
from acaspawner.contract import Phase, Status
from acaspawner.errors import SpawnException
from functions.storage import FunctionStorage


def foreign_row(storage_config, key: str, generation: int) -> None:
    store = FunctionStorage(storage_config)
    store.ensure_table()
    store.write_status(Status(hub_id="testhub", server_key=key, phase=Phase.RUNNING, generation=generation,
                              user="mallory", server_name="", url="http://mallory-app.internal"))


def test_owned_keeps_only_this_servers_row():
    row = Status(hub_id="h", server_key="jl-a-x", phase=Phase.RUNNING, generation=1, user="alice", server_name="")
    assert outcomes.owned(row, "alice", "") is row
    assert outcomes.owned(None, "alice", "") is None
    assert outcomes.owned(row, "mallory", "") is None
    assert outcomes.owned(row, "alice", "gpu") is None


async def test_start_fails_at_once_when_the_row_is_another_servers(db, worker, spawner_kwargs, storage_config):
    spawner = make_spawner(db, user_name="alice", **spawner_kwargs)
    foreign_row(storage_config, spawner._key(), generation=1)  # older than any request alice sends
    worker.paused = True  # nothing answers for alice
    with pytest.raises(SpawnException) as failure:
        await asyncio.wait_for(spawner.start(), 10)  # not start_timeout (30 s): the row says enough
    assert failure.value.reason == "conflict" and "another server" in str(failure.value)
    assert spawner.last_url != "http://mallory-app.internal"


async def test_poll_never_adopts_another_servers_row(db, worker, spawner_kwargs, storage_config):
    spawner = make_spawner(db, user_name="alice", **spawner_kwargs)
    foreign_row(storage_config, spawner._key(), generation=10**13)  # "newer" than alice's own
    spawner.generation, spawner.last_op = 1, "start"  # state of a long-gone start, as after a hub restart
    assert await spawner.poll() == outcomes.EXIT_STOPPED
    assert spawner.generation == 1 and spawner.last_url != "http://mallory-app.internal"
    assert await spawner.get_url() != "http://mallory-app.internal"
