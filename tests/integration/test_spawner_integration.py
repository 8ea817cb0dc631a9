"""AcaSpawner against the real functions: Azurite + function_app.py in the dev host + the ACA emulator over HTTPS.

No fake worker: the spawner seals requests onto the queue, the functions
(loaded from function_app.py and driven by the dev host as the Functions host
would) make real ARM calls to the emulator through azure-mgmt-appcontainers,
the emulator runs each container app as a local process behind its
Host-routing ingress, and the spawner learns every outcome from the status
table through its shared watcher.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hub_support import make_spawner
from integration_support import BAD_IMAGE, WAIT, CrashingHub, http_get_json
from waiting import wait_until_async

from acaspawner import naming
from acaspawner.contract import Phase
from acaspawner.errors import SpawnException
from acaspawner.hub_storage import HubStorage


def expected_url(app) -> str:
    """What the functions must report: the app's internal ingress, which the emulator serves on 127.0.0.1."""
    assert app.fqdn == f"127.0.0.1:{app.ingress_port}"
    return f"http://127.0.0.1:{app.ingress_port}"


def phase_of(spawner) -> Phase | None:
    """The phase the watcher last saw for the spawner's current generation (None before it shows up)."""
    status = spawner.watcher.get(spawner.server_key)
    return status.phase if status is not None and status.generation == spawner.generation else None


async def test_default_and_named_servers_start_answer_and_stop(stack, db, aca_client):
    # a provisioning that takes a few seconds, so poll() is asked while the servers are starting
    provisioning = 3.0
    stack.emulator.set_faults(provisioning_delay=provisioning)
    kwargs = stack.spawner_kwargs()
    default = make_spawner(db, "alice", **kwargs)
    named = make_spawner(db, "alice", "lab", **kwargs)
    spawners = [default, named]
    for spawner in spawners:
        spawner.clear_state()  # as JupyterHub does before every spawn
    began = time.monotonic()
    starts = [asyncio.create_task(s.start()) for s in spawners]
    try:
        # starting: the table has a status of the new generation, poll() says "not dead"
        for spawner in spawners:
            await wait_until_async(lambda s=spawner: phase_of(s), within=WAIT, what="a status of the new generation")
            assert await spawner.poll() is None
        async with asyncio.timeout(WAIT):
            urls = await asyncio.gather(*starts)
    finally:
        for start in starts:
            start.cancel()
    # start() returned only once Azure had provisioned the apps, and the table said provisioning before running
    # (the status's events: no look at the clock while the servers start, which a busy machine could miss)
    assert time.monotonic() - began >= provisioning
    for spawner in spawners:
        status = spawner.watcher.get(spawner.server_key)
        assert status.generation == spawner.generation and status.phase is Phase.RUNNING
        phases = [event["phase"] for event in status.events]
        assert "provisioning" in phases and phases[-1] == "running", status.events
        assert phases.index("provisioning") < phases.index("running"), status.events

    stack.emulator.set_faults(provisioning_delay=0.0)  # the delay applies to deletes too; the stops need none
    apps = await stack.apps()
    assert sorted(apps) == sorted(s.server_key for s in spawners)
    assert default.server_key != named.server_key
    for spawner, url, server_name in zip(spawners, urls, ["", "lab"], strict=True):
        app = apps[spawner.server_key]
        assert app.running_status == "Running", app
        assert url == expected_url(app)
        assert spawner.get_state()["last_url"] == url
        # through the emulator's ingress (routed by Host = the fqdn) to this very server's process
        status, answer = await http_get_json(url + "/user/alice/api")
        assert status == 200
        assert (answer["user"], answer["server_name"], answer["host"]) == ("alice", server_name, app.fqdn)
        assert answer["path"] == "/user/alice/api"
        # the ARM resource as the functions created it
        arm_app = await asyncio.to_thread(aca_client.container_apps.get, stack.emulator.resource_group, app.name)
        assert arm_app.tags == {
            "aca-hub": stack.hub_id,
            "aca-user": "alice",
            "aca-server": server_name,
            "aca-generation": str(spawner.generation),
        }
        assert await spawner.poll() is None  # running

    # stop the default server: poll() becomes an exit status, its app is gone, the named one stays
    async with asyncio.timeout(WAIT):
        await default.stop()
    exit_status = await default.poll()
    assert isinstance(exit_status, int) and exit_status == 0
    assert sorted(await stack.apps()) == [named.server_key]
    assert await named.poll() is None

    async with asyncio.timeout(WAIT):
        await named.stop()
    assert await named.poll() == 0
    assert await stack.apps() == {}
    await stack.drain()
    lifecycle = stack.host.stats["lifecycle"]
    # two starts and two stops, and their follow-ups: none failed, so nothing was redelivered
    assert (lifecycle.failed, lifecycle.poisoned) == (0, 0) and lifecycle.invocations >= 4


@pytest.mark.parametrize("failure", ["invalid-cpu-memory-pair", "image-fails"])
async def test_failing_spawn_raises_arms_message_at_once(stack, db, failure):
    if failure == "invalid-cpu-memory-pair":
        # the spawner checks only the format; the functions' policy allows it; ARM refuses the pair
        kwargs = stack.spawner_kwargs(cpu=0.5, memory="3Gi")
        code, words = "ContainerAppInvalidResourceTotal", "CPU: 0.5, memory: 3.0Gi"
    else:
        stack.emulator.set_faults(fail_images=("bad/*",))
        kwargs = stack.spawner_kwargs(image=BAD_IMAGE)
        code, words = "ContainerAppOperationError", BAD_IMAGE
    spawner = make_spawner(db, "bob", **kwargs)
    assert spawner.start_timeout == 600

    began = time.monotonic()
    with pytest.raises(SpawnException) as info:
        async with asyncio.timeout(WAIT):
            await spawner.start()
    elapsed = time.monotonic() - began
    # the failure itself, not start_timeout running out (a generous bound, not a benchmark)
    assert elapsed < 60, elapsed
    error = info.value
    assert error.reason == "failed" and error.error_code == code
    assert words in error.jupyterhub_message and code in error.jupyterhub_message

    # a stop follows the failed start, so nothing half-created is left behind
    assert spawner.last_op == "stop"
    await stack.drain()
    assert await stack.apps() == {}
    assert await spawner.poll() == 0
    assert stack.host.stats["lifecycle"].failed == 0  # the function recorded the failure; it did not raise


async def test_hub_restart_mid_spawn_finds_the_url(stack, db):
    stack.emulator.set_faults(provisioning_delay=5.0)
    kwargs = stack.spawner_kwargs()
    old_hub = CrashingHub()
    first = make_spawner(db, "carol", **kwargs)
    try:
        first.clear_state()
        start = old_hub.submit(first.start())
        # the spawner saves its state itself as soon as the request is sent (JupyterHub would only after start())
        await wait_until_async(lambda: first.generation, within=WAIT, what="the start request to be sent")
        old_hub.crash()  # the hub process dies mid-spawn: its start() never resumes, sends no stop
        assert not start.done()
        generation, key = first.generation, first.server_key

        # a new hub: state from the database, a fresh watcher (another event loop), then poll() and get_url()
        db.expire_all()
        second = make_spawner(db, "carol", **kwargs)
        assert (second.server_key, second.generation, second.last_op) == (key, generation, "start")
        assert second.watcher is not None and not second.watcher.first_read.is_set()
        assert await second.poll() is None  # queued or provisioning: alive
        seen = second.watcher.get(key)  # what that poll read: the spawn was still under way
        assert seen is None or seen.phase in (Phase.QUEUED, Phase.PROVISIONING), seen
        async with asyncio.timeout(WAIT):
            url = await second.get_url()
        app = (await stack.apps())[key]
        assert url == expected_url(app)
        status, answer = await http_get_json(url)
        assert status == 200 and answer["user"] == "carol"
        assert await second.poll() is None
        await stack.drain()
        # only the dead hub's start ever reached the functions: no stop was sent on its behalf
        lifecycle = stack.host.stats["lifecycle"]
        assert (lifecycle.failed, lifecycle.poisoned) == (0, 0)  # the start and its follow-ups, never redelivered
        assert list(await stack.apps()) == [key]
    finally:
        await asyncio.to_thread(old_hub.bury, [first])


async def test_cancelled_start_sends_a_stop_and_leaves_no_app(stack, db):
    stack.emulator.set_faults(provisioning_delay=3.0)
    spawner = make_spawner(db, "erin", **stack.spawner_kwargs())
    start = asyncio.create_task(spawner.start())
    try:
        # the functions have claimed the server and the app's create is in flight in the emulator
        await wait_until_async(lambda: phase_of(spawner), within=WAIT, what="the start to be picked up")
        await wait_until_async(lambda: asyncio.to_thread(lambda: stack.emulator.stats["creates"] >= 1),
                               within=WAIT, what="the create to reach ARM")
        started = spawner.generation
        start.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(WAIT):
                await start
    finally:
        start.cancel()
    # the stop was enqueued before the cancellation finished
    assert spawner.last_op == "stop" and spawner.generation > started

    await stack.drain()

    async def no_app() -> bool:
        return await stack.apps() == {}

    await wait_until_async(no_app, within=WAIT, what="no app left", interval=0.2)
    assert await spawner.poll() == 0
    status = await HubStorage.shared(spawner.storage_config).get_status(stack.hub_id, spawner.server_key)
    assert status.phase is Phase.STOPPED and status.generation == spawner.generation
    arm = await stack.stats()
    assert (arm["creates"], arm["deletes"]) == (1, 1)
    lifecycle = stack.host.stats["lifecycle"]
    # the start and the stop (each once: one create, one delete above) and their follow-ups, none redelivered
    assert (lifecycle.failed, lifecycle.poisoned) == (0, 0)


async def test_table_queries_per_poll_round_do_not_grow_from_20_to_200_spawners(stack, db):
    """What is measured: table requests while N spawners of one hub all poll once per interval.

    Two servers are real apps, started through the functions. The other
    spawners are restored from saved state (as after a hub restart) of servers
    that do not run: alternately a start that is still queued (no row yet;
    poll() says alive and the spawner stays subscribed to the watcher) and a
    server stopped long ago whose row is gone (poll() says 0). Every poll()
    consults the shared watcher; none reads the table on its own. Starting 200
    real apps would prove nothing more about the table and is too heavy here.
    """
    interval = 1.0
    kwargs = stack.spawner_kwargs(status_poll_interval=interval, status_poll_interval_fast=0.2)
    running = [make_spawner(db, f"run{i}", **kwargs) for i in range(2)]
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*(s.start() for s in running))
    storage = HubStorage.shared(running[0].storage_config)
    watcher = running[0].watcher
    now_ms = int(time.time() * 1000)

    def restored(n: int) -> tuple[list, list]:
        spawners, expected = [], []
        for i in range(n):
            if i < len(running):
                user, state, answer = f"run{i}", running[i].get_state(), None
            elif i % 2:
                user, answer = f"queued{i}", None
                state = {"server_key": naming.server_key(stack.hub_id, user, ""), "generation": now_ms,
                         "last_op": "start"}
            else:
                user, answer = f"stopped{i}", 0
                state = {"server_key": naming.server_key(stack.hub_id, user, ""), "generation": now_ms - 86_400_000,
                         "last_op": "stop"}
            spawner = make_spawner(db, user, **kwargs)
            spawner.load_state(state)
            spawners.append(spawner)
            expected.append(answer)
        return spawners, expected

    async def poll_rounds(spawners: list, expected: list, rounds: int = 5) -> tuple[list[int], int, float]:
        """``rounds`` times: every spawner polls at once, then an interval passes; table queries per round."""
        assert await asyncio.gather(*(s.poll() for s in spawners)) == expected  # everyone subscribed, first read
        await asyncio.sleep(interval)
        began, first = time.monotonic(), storage.table_queries
        per_round = []
        for _ in range(rounds):
            round_began, before = time.monotonic(), storage.table_queries
            assert await asyncio.gather(*(s.poll() for s in spawners)) == expected
            await asyncio.sleep(interval)
            queries = storage.table_queries - before
            # about one query per interval (a slow round on a loaded machine spans more intervals)
            assert queries <= (time.monotonic() - round_began) / interval + 2, (len(spawners), queries)
            per_round.append(queries)
        return per_round, storage.table_queries - first, time.monotonic() - began

    results = {}
    for n in (20, 200):
        spawners, expected = restored(n)
        assert all(s.watcher is watcher for s in spawners)  # one watcher for the whole hub
        per_round, total, elapsed = await poll_rounds(spawners, expected)
        results[n] = (per_round, total, elapsed)
        print(f"{n} spawners: table queries per round {per_round}, {total} in {elapsed:.1f} s "
              f"({watcher.subscribers} subscribers)")
        # at most about one query per interval, however many spawners poll (+2: the edges of the window)
        assert total <= elapsed / interval + 2, (n, per_round, elapsed)

    rate = {n: total / (elapsed / interval) for n, (_, total, elapsed) in results.items()}
    assert rate[200] <= max(rate[20], 1.0) + 0.5, rate  # ten times the spawners, not more queries
    assert sum(results[200][0]) < 200  # far below one query per spawner for even a single round
