"""AcaSpawner end to end over a real Azurite, with a fake function worker writing the statuses."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from spawner_support import make_spawner, wait_until

from acaspawner.contract import Op, Phase
from acaspawner.errors import SpawnException
from acaspawner.hub_storage import HubStorage
from acaspawner.spec import home_sub_path
from acaspawner.watcher import close_watchers


async def collect_progress(spawner) -> list[dict]:
    return [event async for event in spawner.progress()]


async def test_start_poll_stop_default_and_named(db, worker, spawner_kwargs):
    default = make_spawner(db, user_name="alice", **spawner_kwargs)
    named = make_spawner(db, user_name="alice", server_name="gpu", **spawner_kwargs)
    for spawner in (default, named):
        spawner.clear_state()  # as JupyterHub does before every spawn
        start = asyncio.create_task(spawner.start())
        progress = asyncio.create_task(collect_progress(spawner))
        await wait_until(lambda s=spawner: s.generation)  # request sent
        assert await spawner.poll() is None  # starting counts as running
        url = await asyncio.wait_for(start, 20)
        assert url == f"http://{spawner.server_key}.internal.example.test"
        events = await asyncio.wait_for(progress, 5)
        messages = [e["message"] for e in events]
        assert messages[0].startswith("Server requested")
        key = spawner.server_key
        # the functions' own words, in their order (functions/server_run.py)
        assert [m for m in messages if key in m or m == "server is running"] == [
            f"creating container app {key}", f"Azure is provisioning container app {key}", "server is running"]
        assert messages[-1].startswith("Container app is running")
        assert [e["progress"] for e in events] == sorted(e["progress"] for e in events)
        assert await spawner.poll() is None
        assert spawner.get_state()["last_url"] == url

    assert default.server_key != named.server_key
    [(op, gen)] = worker.ops(named.server_key)
    assert op == "start" and gen == named.generation
    request = next(r for r in worker.received if r.server_key == named.server_key)
    assert request.server_name == "gpu" and request.user == "alice"
    assert "JUPYTERHUB_API_TOKEN" in request.spec.secret_env and "JUPYTERHUB_API_TOKEN" not in request.spec.env

    started = default.generation
    await asyncio.wait_for(default.stop(), 15)
    assert default.generation > started
    status = default.watcher.get(default.server_key)
    assert status.phase is Phase.STOPPED and status.generation == default.generation
    assert await default.poll() == 0
    default.clear_state()
    assert await named.poll() is None  # the other server is untouched


async def test_failing_spawn_raises_at_once(db, worker, spawner_kwargs):
    worker.failing_images["bad/image:1"] = ("Image 'bad/image:1' could not be pulled: manifest unknown", "InvalidImage")
    spawner_kwargs["start_timeout"] = 120
    spawner = make_spawner(db, user_name="bob", image="bad/image:1", **spawner_kwargs)
    began = time.monotonic()
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    elapsed = time.monotonic() - began
    # the failure, not the timeout (a generous bound, not a benchmark)
    assert elapsed < 60 < spawner.start_timeout, elapsed
    assert "manifest unknown" in info.value.jupyterhub_message
    assert info.value.error_code == "InvalidImage" and info.value.reason == "failed"
    # a stop follows, so the half-created app is removed
    await wait_until(lambda: [op for op, _ in worker.ops(spawner.server_key)] == ["start", "stop"])
    assert await spawner.poll() == 0


async def test_hub_restart_mid_spawn_finds_the_url(db, worker, spawner_kwargs):
    old = make_spawner(db, user_name="carol", **spawner_kwargs)
    worker.slow[old._key()] = 1.5
    # the old hub sends the start (and saves its state) ... and dies before the table says running
    old.clear_state()
    request = await old.send_request("start", old.server_spec())
    assert db.query(type(old.orm_spawner)).filter_by(id=old.orm_spawner.id).one().state["generation"] == request.generation

    # a new hub: a new spawner from the saved state, a fresh watcher that has not read anything yet
    await close_watchers()
    new = make_spawner(db, user_name="carol", **spawner_kwargs)
    assert new.generation == request.generation and new.last_op == "start"
    assert not new.watcher.first_read.is_set()
    assert await new.poll() is None
    assert new.watcher.first_read.is_set()
    url = await asyncio.wait_for(new.get_url(), 15)
    assert url == f"http://{old.server_key}.internal.example.test"
    assert await new.poll() is None


async def test_restart_with_state_older_than_the_table_adopts_the_newer_generation(db, worker, spawner_kwargs):
    first = make_spawner(db, user_name="dora", **spawner_kwargs)
    url = await asyncio.wait_for(first.start(), 20)
    # the database lost the last save: a spawner with no state still finds the server
    blank = make_spawner(db, user_name="dora", **spawner_kwargs)
    blank.load_state({"server_key": first.server_key, "generation": first.generation - 10, "last_op": "stop"})
    blank.generation = first.generation - 10
    assert await blank.poll() is None
    assert blank.generation == first.generation and await blank.get_url() == url


async def test_cancelled_start_sends_a_stop(db, worker, spawner_kwargs):
    spawner = make_spawner(db, user_name="erin", **spawner_kwargs)
    worker.slow[spawner._key()] = 30
    task = asyncio.create_task(spawner.start())
    await wait_until(lambda: spawner.watcher.get(spawner.server_key) is not None
                     and spawner.watcher.get(spawner.server_key).phase is Phase.PROVISIONING)
    start_generation = spawner.generation
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: len(worker.ops(spawner.server_key)) == 2)
    (op1, g1), (op2, g2) = worker.ops(spawner.server_key)
    assert (op1, g1) == ("start", start_generation) and op2 == "stop" and g2 > g1
    await wait_until(lambda: spawner.watcher.get(spawner.server_key).phase is Phase.STOPPED)


async def test_start_timeout_sends_a_stop(db, worker, spawner_kwargs):
    spawner_kwargs["start_timeout"] = 1
    spawner = make_spawner(db, user_name="fred", **spawner_kwargs)
    worker.slow[spawner._key()] = 30
    with pytest.raises(SpawnException) as failure:
        await spawner.start()
    # the spawn page says what was seen last, not an empty "Spawn failed: "
    assert failure.value.reason == "timeout"
    assert "Azure was still working on the server after 1 s" in str(failure.value)
    key = spawner.server_key
    assert re.search(rf"last status: provisioning: (creating|Azure is provisioning) container app {key}\b",
                     str(failure.value)), str(failure.value)
    await wait_until(lambda: [op for op, _ in worker.ops(spawner.server_key)] == ["start", "stop"])


async def test_a_start_nobody_picks_up_says_so(db, worker, spawner_kwargs):
    spawner_kwargs["start_timeout"] = 1
    spawner = make_spawner(db, user_name="fay", **spawner_kwargs)
    worker.paused = True
    with pytest.raises(SpawnException, match="No function picked up the start request within 1 s"):
        await spawner.start()


async def test_a_start_with_no_progress_is_sent_again_and_completes(db, worker, spawner_kwargs):
    """A lost delivery (the functions crashed with it leased): the same request goes out again."""
    spawner = make_spawner(db, user_name="ida", resend_after=0.5, **spawner_kwargs)
    worker.paused = True
    start = asyncio.create_task(spawner.start())
    await wait_until(lambda: spawner.generation)
    await asyncio.sleep(0.1)
    drained = await worker.drain_without_processing()  # what a crashed host took with it
    assert [r.generation for r in drained] == [spawner.generation]
    worker.paused = False
    url = await asyncio.wait_for(start, 20)
    assert url == f"http://{spawner.server_key}.internal.example.test"
    # the resend carried the same generation: one server, one start
    assert {gen for op, gen in worker.ops(spawner.server_key)} == {spawner.generation}


async def test_superseded_start_fails_clearly(db, worker, spawner_kwargs):
    spawner = make_spawner(db, user_name="gina", **spawner_kwargs)
    worker.slow[spawner._key()] = 30
    task = asyncio.create_task(spawner.start())
    await wait_until(lambda: spawner.generation)
    other = make_spawner(db, user_name="gina", **spawner_kwargs)  # e.g. a second hub with the same id
    other.generation = spawner.generation
    await other.send_request("stop")
    with pytest.raises(SpawnException, match="newer request"):
        await asyncio.wait_for(task, 10)


async def test_delete_forever_sends_delete(db, worker, spawner_kwargs):
    named = make_spawner(db, user_name="hank", server_name="scratch", home_storage_name="homes", **spawner_kwargs)
    default = make_spawner(db, user_name="hank", home_storage_name="homes", **spawner_kwargs)
    await named.delete_forever()
    await default.delete_forever()
    await wait_until(lambda: worker.ops(named.server_key) and worker.ops(default.server_key))
    assert [op for op, _ in worker.ops(named.server_key)] == ["delete"]
    assert [op for op, _ in worker.ops(default.server_key)] == ["delete"]
    by_key = {r.server_key: r for r in worker.received}
    # the user's one home is shared by all their servers: only the default server's delete names it
    assert by_key[named.server_key].spec is None
    spec = by_key[default.server_key].spec
    assert [v.sub_path for v in spec.volumes] == [home_sub_path("hank")]
    assert spec.env == {} and spec.secret_env == {}  # no token travels with a delete
    default.watcher.subscribe(fast=True)
    await wait_until(lambda: (s := default.watcher.get(default.server_key)) and s.phase is Phase.STOPPED)


async def test_stop_waits_for_the_table_but_not_forever(db, worker, spawner_kwargs):
    spawner_kwargs["stop_timeout"] = 1
    spawner = make_spawner(db, user_name="ivy", **spawner_kwargs)
    await asyncio.wait_for(spawner.start(), 20)
    worker.paused = True  # the functions are down
    began = time.monotonic()
    await spawner.stop()
    assert 0.9 < time.monotonic() - began < 30  # waited out stop_timeout (1 s), then gave up: not forever
    assert await spawner.poll() == 0  # stop requested: not running from the hub's point of view
    worker.paused = False
    spawner.watcher.subscribe(fast=True)  # the spawner itself no longer watches a stopped server
    await wait_until(lambda: spawner.watcher.get(spawner.server_key).phase is Phase.STOPPED)


async def test_200_spawners_share_one_watcher(db, worker, spawner_kwargs):
    """Table requests per interval do not grow with the number of servers."""
    worker.provision_delay = 0.5
    spawners = [make_spawner(db, user_name=f"user{i}", **spawner_kwargs) for i in range(200)]
    storage = HubStorage.shared(spawners[0].storage_config)
    watcher = spawners[0].watcher
    assert all(s.watcher is watcher for s in spawners)

    began, before = time.monotonic(), storage.table_queries
    urls = await asyncio.wait_for(asyncio.gather(*(s.start() for s in spawners)), 120)
    elapsed, queries = time.monotonic() - began, storage.table_queries - before
    assert len(set(urls)) == 200
    fast = spawners[0].status_poll_interval_fast
    # about one query per fast interval for all 200 starts (plus slack for slow rounds), not one per spawner
    print(f"200 starts: {queries} table queries in {elapsed:.1f} s")
    assert queries <= elapsed / fast + 5, (queries, elapsed)

    # all running: slow interval, one query per interval however many poll (measured against the time that
    # really passed: a stall past the interval adds one)
    before, began = storage.table_queries, time.monotonic()
    answers = await asyncio.gather(*(s.poll() for s in spawners))
    assert answers == [None] * 200
    assert storage.table_queries - before <= (time.monotonic() - began) / spawners[0].status_poll_interval + 1
    before, began = storage.table_queries, time.monotonic()
    await asyncio.sleep(3 * spawners[0].status_poll_interval)
    # one query per slow interval at most, measured against the time that really passed
    assert storage.table_queries - before <= (time.monotonic() - began) / spawners[0].status_poll_interval + 1
    assert watcher.subscribers == 200


async def test_rename_moves_to_the_new_app_name(db, worker, spawner_kwargs):
    spawner = make_spawner(db, user_name="jo", server_name="old", **spawner_kwargs)
    await asyncio.wait_for(spawner.start(), 20)
    await asyncio.wait_for(spawner.stop(), 15)
    spawner.clear_state()
    old_key = spawner.server_key
    await spawner.rename("old", "new")
    await wait_until(lambda: [op for op, _ in worker.ops(old_key)] == ["start", "stop", "delete"])
    request = worker.received[-1]
    assert request.server_name == "old" and request.spec is None  # names the old app; the home stays
    # JupyterHub renames the orm spawner and builds a new wrapper from the saved state
    spawner.orm_spawner.name = "new"
    db.commit()
    renamed = make_spawner(db, user_name="jo", server_name="new", **spawner_kwargs)
    assert renamed.server_key != old_key and renamed.server_key == renamed._key()
    assert renamed.generation == spawner.generation
    url = await asyncio.wait_for(renamed.start(), 20)
    assert renamed.server_key in url
    assert worker.received[-1].server_name == "new"


async def test_hub_restart_checks_all_servers_with_one_query(db, worker, spawner_kwargs):
    spawners = [make_spawner(db, user_name=f"r{i}", **spawner_kwargs) for i in range(50)]
    await asyncio.wait_for(asyncio.gather(*(s.start() for s in spawners)), 60)
    # a new hub process: fresh watcher, spawners rebuilt from the saved state, every one polled at once
    await close_watchers()
    storage = HubStorage.shared(spawners[0].storage_config)
    restored = [make_spawner(db, user_name=f"r{i}", **spawner_kwargs) for i in range(50)]
    before = storage.table_queries
    assert await asyncio.gather(*(s.poll() for s in restored)) == [None] * 50
    assert storage.table_queries - before == 1
    urls = await asyncio.gather(*(s.get_url() for s in restored))
    assert urls == [s.last_url for s in spawners]
    # get_url() reads the same snapshot; at most one more refresh if an interval passed meanwhile
    assert storage.table_queries - before <= 2


async def test_a_stop_storage_refuses_is_sent_again_until_it_goes_through(db, worker, spawner_kwargs, monkeypatch):
    spawner = make_spawner(db, user_name="jo", **spawner_kwargs)
    await asyncio.wait_for(spawner.start(), 20)
    monkeypatch.setattr("acaspawner.spawner.RETRY_FIRST_DELAY", 0.1)
    real_send = HubStorage.send
    refusals = []

    async def storage_down(self, sealed, time_to_live=None):
        if len(refusals) < 3:  # the queue is unreachable for the first three tries
            refusals.append(sealed)
            raise ConnectionError("queue unreachable")
        await real_send(self, sealed, time_to_live)

    monkeypatch.setattr(HubStorage, "send", storage_down)
    await asyncio.wait_for(spawner.stop(), 5)  # returns at once: the hub is not held up by the outage
    await wait_until(lambda: [op for op, _ in worker.ops(spawner.server_key)] == ["start", "stop"])
    assert len(refusals) == 3
    assert spawner.last_op == "stop"  # remembered once it went through
    await wait_until(lambda: worker.store.get_status("testhub", spawner.server_key).generation == spawner.generation)


def hang_sends(monkeypatch) -> asyncio.Event:
    """Make every queue send hang (a frozen storage account) until the returned event is set."""
    real_send = HubStorage.send
    back = asyncio.Event()

    async def frozen(self, sealed, time_to_live=None):
        await back.wait()
        await real_send(self, sealed, time_to_live)

    monkeypatch.setattr(HubStorage, "send", frozen)
    return back


async def test_a_failed_start_does_not_wait_on_a_frozen_queue_for_its_cleanup(db, worker, spawner_kwargs,
                                                                                monkeypatch):
    """The reason reaches the user before JupyterHub's own timeout; the stop follows once storage is back."""
    spawner_kwargs["start_timeout"] = 3
    spawner = make_spawner(db, user_name="gus", **spawner_kwargs)
    worker.slow[spawner._key()] = 30
    start = asyncio.ensure_future(spawner.start())
    await wait_until(lambda: [op for op, _ in worker.ops(spawner.server_key)] == ["start"])
    back = hang_sends(monkeypatch)
    began = time.monotonic()
    with pytest.raises(SpawnException, match="Azure was still working"):
        await asyncio.wait_for(start, 10)
    waited_for_cleanup = time.monotonic() - began
    # without the bounded wait this is SEND_TIMEOUT (30 s): past the hub's start_timeout
    assert waited_for_cleanup < 3 + 5, waited_for_cleanup
    back.set()
    await wait_until(lambda: [op for op, _ in worker.ops(spawner.server_key)] == ["start", "stop"])


async def test_stop_returns_while_the_queue_is_frozen_and_sends_once_it_thaws(db, worker, spawner_kwargs,
                                                                           monkeypatch):
    spawner = make_spawner(db, user_name="hal", **spawner_kwargs)
    await asyncio.wait_for(spawner.start(), 20)
    back = hang_sends(monkeypatch)
    monkeypatch.setattr("acaspawner.spawner.STOP_SEND_WAIT", 0.2)
    await asyncio.wait_for(spawner.stop(), 5)  # the hub's stop (and a failed spawn's cleanup) is not held up
    assert [op for op, _ in worker.ops(spawner.server_key)] == ["start"]
    back.set()
    await wait_until(lambda: [op for op, _ in worker.ops(spawner.server_key)] == ["start", "stop"])
    assert spawner.last_op == "stop"


async def test_a_table_that_stopped_answering_is_named_before_its_first_read_times_out(db, worker, spawner_kwargs,
                                                                                      monkeypatch):
    """Reads hang (no error yet): the reason names the table, not the last status it happened to show."""
    spawner = make_spawner(db, user_name="ida", **spawner_kwargs)
    request = await spawner.send_request(Op.START, spawner.server_spec({}))
    monkeypatch.setattr(spawner.watcher, "last_success", time.monotonic() - 60)  # last answer a minute ago
    spawner.watcher.consecutive_errors = 0
    reason = spawner._why_not_running(request)
    assert reason.startswith("The status table could not be read for the last 60 s (no answer yet)"), reason


async def test_poll_answers_within_its_read_wait_when_the_table_hangs(db, worker, spawner_kwargs, monkeypatch):
    """JupyterHub awaits poll() before the stop that follows a failed start: it must not hang on the table."""
    spawner = make_spawner(db, user_name="jan", **spawner_kwargs)
    await asyncio.wait_for(spawner.start(), 20)
    monkeypatch.setattr("acaspawner.spawner.READ_WAIT", 0.5)
    spawner.watcher.last_success = time.monotonic() - 3600  # every read needs a fresh query

    async def hangs(self, hub_id, changed_since=None):
        await asyncio.sleep(3600)

    monkeypatch.setattr(HubStorage, "read_statuses", hangs)
    began = time.monotonic()
    assert await asyncio.wait_for(spawner.poll(), 10) is None  # unknown: assumed still running
    assert time.monotonic() - began < 5
