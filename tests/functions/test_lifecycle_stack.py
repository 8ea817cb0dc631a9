"""The lifecycle function end to end: dev host (host.json delivery semantics) → ARM emulator over HTTPS → table.

Messages are sent as the hub sends them (sealed, base64), the function app is
loaded from function_app.py with its settings from the environment, and the
production ARM client talks to the emulator with only its endpoint, CA bundle
and token changed.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import time
import urllib.request
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

import pytest
from fn_support import HUB, TOKEN, emulator_env, home_volume, request
from waiting import wait_until

from acaspawner import wire
from acaspawner.contract import Op, Phase, Request, ServerSpec, Status
from acaspawner.hub_storage import HubStorage
from acaspawner.naming import home_folder, legacy_home_folder
from acaspawner.sealing import Sealer, generate_key
from functions import arm, runtime
from functions.settings import Settings
from functions.storage import FunctionStorage
from local.emulator import pytest_fixtures
from local.emulator.emulator import DEFAULT_ENVIRONMENT, DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION
from local.emulator.faults import Faults
from local.emulator.model import environment_id
from local.emulator.threaded import EmulatorThread
from local.funchost import FunctionsHost
from local.homes import provision_homes, share_dir
from local.tinyapp import APP_COMMAND

REPO = Path(__file__).resolve().parents[2]
FAULT_SETTINGS = {f.name for f in fields(Faults)}

aca_emulator_factory = pytest_fixtures.aca_emulator_factory

# a tiny server that starts in a blink, standing in for jupyterhub-singleuser
SERVER_COMMAND = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "8888"]


def host_json(**queue_changes) -> dict:
    """The committed host.json with faster redelivery (tests cannot wait out 15 s visibility timeouts)."""
    host = json.loads((REPO / "host.json").read_text())
    host["extensions"]["queues"].update({"visibilityTimeout": "00:00:01", **queue_changes})
    return host


@dataclass
class Stack:
    emulator: EmulatorThread
    host: FunctionsHost
    settings: Settings
    sealer: Sealer
    storage: FunctionStorage
    setup_requests: dict  # the emulator's counters once the stack was up (homes provisioned): not the functions'

    def send(self, req: Request, now: float | None = None) -> bytes:
        sealed = self.sealer.seal(req, now=now)
        self.host.send("lifecycle", sealed)
        return sealed

    def send_raw(self, text: str) -> None:
        self.host.queue_client("lifecycle").send_message(text)

    def drain(self, timeout: float = 120) -> None:
        self.host.drain(timeout=timeout)

    def status(self, req: Request) -> Status | None:
        return self.storage.get_status(HUB, req.server_key)

    def poison(self) -> list[str]:
        return [m.content for m in self.host.queue_client("lifecycle", poison=True).peek_messages(max_messages=32)]

    def arm_requests(self, method: str | None = None) -> int:
        """ARM requests the functions made (setting the stack up does not count)."""
        def count(stats: dict) -> int:
            return stats["requests"] if method is None else stats["requests_by_method"].get(method, 0)

        return count(self.emulator.stats) - count(self.setup_requests)


@pytest.fixture
def make_stack(aca_emulator_factory, storage_connection_string, unique_name):
    """``make(emulator_kwargs, host_json_changes, **settings)`` → a started Stack; all stopped afterwards."""
    hosts: list[FunctionsHost] = []

    def make(emulator_kwargs: dict | None = None, queue_changes: dict | None = None, listen: bool = False,
             **overrides: str) -> Stack:
        # faults and pacing apply once the deployment's parts (the homes) are in place
        given = emulator_kwargs or {}
        emulator = aca_emulator_factory(**{k: v for k, v in given.items() if k not in FAULT_SETTINGS})
        homes = provision_homes(emulator.info())
        emulator.set_faults(**{k: v for k, v in given.items() if k in FAULT_SETTINGS})
        env = emulator_env(
            emulator,
            AcaStorage=storage_connection_string,
            AzureWebJobsStorage=storage_connection_string,
            ACA_LIFECYCLE_QUEUE=unique_name("q"),
            ACA_STATUS_TABLE=unique_name("t"),
            ACA_ARM_TOKEN="emulator-token",
            # the homes share and its environment storage, as the deployment makes them
            **homes,
            # the timers are indexed (their schedules must resolve) but switched off: these tests are the queue's
            ACA_CULL_SCHEDULE="0 0 0 1 1 *",
            ACA_RECONCILE_SCHEDULE="0 0 0 1 1 *",
            ACA_WARM_POOL_SCHEDULE="0 0 0 1 1 *",  # run by the tests themselves (host.run_timer)
            **{"AzureWebJobs.culler.Disabled": "true", "AzureWebJobs.reconciler.Disabled": "true"},
            **overrides,
        )
        host = FunctionsHost(REPO / "function_app.py", settings=env, host_json=host_json(**(queue_changes or {})),
                             local_settings=REPO / "no-local-settings.json")
        host.start(listen=listen)
        hosts.append(host)
        settings = Settings.from_environ(env)
        return Stack(emulator, host, settings, Sealer(settings.sealing_keys), FunctionStorage(settings.storage),
                     emulator.stats)

    yield make
    for host in hosts:
        host.stop()


@pytest.fixture
def stack(make_stack) -> Stack:
    return make_stack()


def start_request(**changes) -> Request:
    # a Jupyter image: its home (/home/jovyan) is where the user's folder is mounted, and the server's directory
    changes.setdefault("image", "quay.io/jupyter/base-notebook:latest")
    changes.setdefault("command", SERVER_COMMAND)
    changes.setdefault("args", [])
    return request(Op.START, **changes)


def test_start_runs_the_app_and_stop_removes_it(stack):
    start = start_request()
    stack.send(start)
    stack.drain()

    status = stack.status(start)
    assert status.phase is Phase.RUNNING, status.message
    assert status.generation == start.generation
    apps = stack.emulator.apps
    assert list(apps) == [start.server_key]
    app = apps[start.server_key]
    assert status.url == f"http://{app.fqdn}"
    # the app as ARM holds it: the production spec, unchanged by the trip
    client = pytest_fixtures.make_client(stack.emulator)
    try:
        arm_app = client.container_apps.get(stack.settings.resource_group, start.server_key).as_dict()
        secrets = client.container_apps.list_secrets(stack.settings.resource_group, start.server_key).as_dict()
    finally:
        client.close()
    ingress = arm_app["properties"]["configuration"]["ingress"]
    assert (ingress["external"], ingress["transport"], ingress["allowInsecure"], ingress["targetPort"]) == (
        False, "http", True, 8888)
    container = arm_app["properties"]["template"]["containers"][0]
    assert {"name": "JUPYTERHUB_API_TOKEN", "secretRef": "jupyterhub-api-token"} in container["env"]
    assert TOKEN not in json.dumps(container)
    assert secrets["value"] == [{"name": "jupyterhub-api-token", "value": TOKEN}]
    assert "identity" not in arm_app or arm_app["identity"].get("type", "None") == "None"
    assert arm_app["tags"]["aca-generation"] == str(start.generation)
    # and the url answers through the environment's ingress
    with urllib.request.urlopen(status.url, timeout=10) as response:
        assert response.status == 200

    stop = request(Op.STOP)
    stack.send(stop)
    stack.drain()
    status = stack.status(stop)
    assert status.phase is Phase.STOPPED and status.url == ""
    assert stack.emulator.apps == {}
    assert stack.host.stats["lifecycle"].failed == 0


async def test_what_the_hub_sends_is_what_the_function_runs(stack):
    """The hub's own queue client (base64 bodies) against the function's trigger."""
    hub = HubStorage(stack.settings.storage)
    start = start_request()
    await hub.send(stack.sealer.seal(start))
    await hub.close()
    stack.drain()
    assert stack.status(start).phase is Phase.RUNNING


def test_duplicate_delivery_makes_one_app(stack):
    start = start_request()
    sealed = stack.send(start)
    stack.host.send("lifecycle", sealed)
    stack.drain()
    stack.host.send("lifecycle", sealed)  # and once more, later
    stack.drain()
    assert stack.status(start).phase is Phase.RUNNING
    assert list(stack.emulator.apps) == [start.server_key]
    assert stack.emulator.stats["creates"] == 1


def test_stop_before_start_of_the_same_generation(stack):
    start = start_request()
    stop = request(Op.STOP, generation=start.generation)
    stack.send(stop)
    stack.drain()
    stack.send(start)
    stack.drain()
    assert stack.status(start).phase is Phase.STOPPED
    assert stack.emulator.apps == {}
    assert stack.arm_requests("PUT") == 0


def test_an_older_start_after_a_newer_stop_is_ignored(stack):
    start = start_request()
    stop = request(Op.STOP)
    stack.send(stop)
    stack.drain()
    stack.send(start)
    stack.drain()
    status = stack.status(start)
    assert status.phase is Phase.STOPPED and status.generation == stop.generation
    assert stack.emulator.apps == {}
    assert stack.arm_requests("PUT") == 0


def test_a_stop_racing_a_slow_start_ends_stopped_without_an_app(make_stack):
    stack = make_stack({"provisioning_delay": 2.0}, listen=True)
    start = start_request()
    stop = request(Op.STOP)
    stack.send(start)
    # the start has claimed the server and its create is in flight when the stop arrives (2 s of provisioning)
    wait_until(lambda: stack.emulator.stats["creates"] == 1, timeout=30, what="the create to reach ARM")
    status = stack.status(start)
    # provisioning was recorded (its events, whatever a slow machine lets the start reach before the stop)
    assert status.generation == start.generation and status.phase is not Phase.FAILED, status.message
    assert "provisioning" in [event["phase"] for event in status.events], status.events
    stack.send(stop)
    stack.drain(timeout=180)
    status = stack.status(stop)
    assert status.phase is Phase.STOPPED and status.generation == stop.generation
    assert stack.emulator.apps == {}
    assert stack.emulator.stats["creates"] == 1 and stack.emulator.stats["deletes"] >= 1


def test_a_429_storm_and_random_5xx_still_end_right(make_stack):
    # tiny ARM token buckets: most requests are throttled with Retry-After; and 1 in 5 answers a 500
    stack = make_stack({"write_bucket": 2, "write_refill": 1.0, "delete_bucket": 2, "delete_refill": 1.0,
                        "read_bucket": 4, "read_refill": 4.0, "error_rate": 0.2, "error_seed": 7})
    starts = [start_request(user=f"user{i}") for i in range(4)]
    for req in starts:
        stack.send(req)
    stack.drain(timeout=240)
    stats = stack.emulator.stats
    assert stats["throttled"] > 0 and stats["injected_errors"] > 0
    for req in starts:
        assert stack.status(req).phase is Phase.RUNNING, stack.status(req).message
    assert sorted(stack.emulator.apps) == sorted(r.server_key for r in starts)

    stops = [request(Op.STOP, user=f"user{i}") for i in range(4)]
    for req in stops:
        stack.send(req)
    stack.drain(timeout=240)
    for req in stops:
        assert stack.status(req).phase is Phase.STOPPED
    assert stack.emulator.apps == {}
    assert stack.poison() == []


def test_an_arm_validation_error_fails_at_once(stack):
    start = start_request(cpu=0.5, memory="3Gi")  # within policy, but no valid ACA pair
    stack.send(start)
    stack.drain()
    status = stack.status(start)
    assert status.phase is Phase.FAILED
    assert status.error_code == "ContainerAppInvalidResourceTotal"
    assert "CPU: 0.5, memory: 3.0Gi" in status.message
    assert stack.arm_requests("PUT") == 1  # no retry, no redelivery
    assert stack.host.stats["lifecycle"].invocations == 1
    assert stack.emulator.apps == {} and stack.poison() == []


def test_a_failed_create_reports_arms_message(make_stack):
    stack = make_stack({"fail_images": ["example.org/notebook:broken"]})
    start = start_request(image="example.org/notebook:broken")
    stack.send(start)
    stack.drain()
    status = stack.status(start)
    assert status.phase is Phase.FAILED and status.error_code == "ContainerAppOperationError"
    assert "example.org/notebook:broken" in status.message
    # the request and the one follow-up that saw the app fail: nothing was retried or redelivered
    stats = stack.host.stats["lifecycle"]
    assert (stats.invocations, stats.failed) == (2, 0)


def test_transient_errors_outlasting_every_delivery_end_failed(make_stack, monkeypatch):
    # a small retry budget per invocation, so five deliveries take seconds
    monkeypatch.setattr(runtime, "make_client", partial(arm.make_client, retry_total=1, retry_backoff_factor=0))
    stack = make_stack({"error_rate": 1.0, "error_status": 503})
    start = start_request()
    stack.send(start)
    stack.drain(timeout=120)
    status = stack.status(start)
    assert status.phase is Phase.FAILED, status.message
    assert "gave up after 5 attempts" in status.message and status.error_code == "ServiceUnavailable"
    assert [e["message"] for e in status.events].count("temporary Azure error (ServiceUnavailable), retrying") == 4
    lifecycle = stack.host.stats["lifecycle"]
    assert (lifecycle.invocations, lifecycle.failed, lifecycle.succeeded) == (5, 4, 1)
    assert stack.poison() == []  # the last delivery recorded the failure instead of raising


def test_untrusted_and_undecodable_messages_never_reach_arm(stack):
    start = start_request()
    sealed = stack.sealer.seal(start)
    kid, _, token = sealed.partition(b".")
    tampered = kid + b"." + token[:20] + (b"x" if token[20:21] != b"x" else b"y") + token[21:]
    forged = Sealer(generate_key()).seal(start)
    expired = stack.sealer.seal(start, now=time.time() - 3600)
    for body in (tampered, forged, expired):
        stack.host.send("lifecycle", body)
    stack.send_raw("this is not base64!")
    stack.drain()

    assert stack.arm_requests() == 0
    poison = stack.poison()
    assert sorted(poison) == sorted([wire.encode(tampered), wire.encode(forged), wire.encode(expired),
                                     "this is not base64!"])
    status = stack.status(start)  # only the expired one still names its server (authentic, just old)
    assert status.phase is Phase.FAILED and status.error_code == "RequestExpired"
    assert stack.host.stats["lifecycle"].failed == 0


def test_a_policy_violation_fails_without_arm(stack):
    start = start_request(image="docker.io/someone/miner:latest")
    stack.send(start)
    stack.drain()
    status = stack.status(start)
    assert status.phase is Phase.FAILED and status.error_code == "PolicyViolation"
    assert "docker.io/someone/miner:latest" in status.message
    assert stack.arm_requests() == 0


def test_the_token_never_leaks(stack, caplog):
    caplog.set_level(logging.DEBUG)
    starts = [start_request(user="ann"), start_request(user="ben", cpu=0.5, memory="3Gi"),
              start_request(user="cat", image="docker.io/x/y")]
    for req in starts:
        stack.send(req)
    expired = start_request(user="dan")
    stack.send(expired, now=time.time() - 3600)
    stack.drain()
    stack.send(request(Op.STOP, user="ann"))
    stack.drain()

    entities = list(stack.storage.table.list_entities())  # statuses, and the capacity ledger's rows
    assert len([e for e in entities if e["PartitionKey"] == HUB]) == 4
    assert TOKEN not in json.dumps([dict(e) for e in entities], default=str)
    assert TOKEN not in caplog.text
    poison = stack.poison()
    assert poison and all(TOKEN.encode() not in base64.b64decode(body) for body in poison)


def test_a_burst_of_starts_runs_without_a_worker_thread_per_operation(make_stack):
    """30 starts at once, 6 worker threads, ARM taking 6 s per app and asking to look back after 2 s.

    A lifecycle that held a worker thread for each long-running operation
    would have at most 6 creates in flight at a time, and need 30 / 6 × (6 + 2)
    = 40 s; sending each write and following up later puts more creates in
    flight than there are threads. The time the burst took is reported, not
    asserted (the machine decides it; ``make bench`` measures bursts).
    """
    delay, retry_after, threads = 6.0, 2, 6
    stack = make_stack({"provisioning_delay": delay, "retry_after": retry_after}, listen=True,
                       PYTHON_THREADPOOL_THREAD_COUNT=str(threads))
    starts = [request(Op.START, user=f"burst{i:02d}", command=APP_COMMAND, args=[]) for i in range(30)]
    began = time.monotonic()
    for start in starts:
        stack.send(start)
    pending = {s.server_key for s in starts}
    in_flight = 0  # the most apps seen provisioning at once
    while pending and time.monotonic() - began < 240:  # a bound against hanging, not a benchmark
        rows = {s.server_key: s for s in stack.storage.list_statuses(HUB)}
        assert not [r.message for r in rows.values() if r.phase is Phase.FAILED]
        pending -= {key for key, row in rows.items() if row.phase is Phase.RUNNING}
        in_flight = max(in_flight, sum(app.provisioning_state == "InProgress" for app in stack.emulator.apps.values()))
        time.sleep(0.2)
    elapsed = time.monotonic() - began
    assert not pending, f"{len(pending)} of 30 not running after {elapsed:.1f} s"
    assert in_flight > threads, f"at most {in_flight} creates in flight at once with {threads} worker threads"
    stats = stack.emulator.stats
    assert stats["creates"] == 30 and len(stack.emulator.apps) == 30  # each app created once
    assert stack.host.stats["lifecycle"].failed == 0
    print(f"30 starts running after {elapsed:.1f} s (2 × (provisioning + Retry-After) = {2 * (delay + retry_after):.0f} s;"
          f" a thread per operation would need 40 s); at most {in_flight} creates in flight at once")


def test_stop_mode_parks_the_app_and_a_start_resumes_it(make_stack):
    """ACA_STOP_MODE=stop through the real SDK: Stop and Start answer 202 with a Location and no body."""
    stack = make_stack(ACA_STOP_MODE="stop")
    first = start_request()
    stack.send(first)
    stack.drain()
    assert stack.status(first).phase is Phase.RUNNING, stack.status(first).message

    stop = request(Op.STOP)
    stack.send(stop)
    stack.drain()
    status = stack.status(stop)
    assert status.phase is Phase.STOPPED, status.message
    (parked,) = stack.emulator.apps.values()
    assert (parked.provisioning_state, parked.running_status, parked.pid) == ("Succeeded", "Stopped", None)

    again = start_request()
    stack.send(again)
    stack.drain()
    status = stack.status(again)
    assert status.phase is Phase.RUNNING, status.message
    (resumed,) = stack.emulator.apps.values()
    assert resumed.running_status == "Running" and resumed.pid is not None
    with urllib.request.urlopen(status.url, timeout=10) as response:
        assert response.status == 200
    stats = stack.emulator.stats
    # one app, created once, parked once and resumed once (the second start updated it with its new token)
    assert (stats["creates"], stats["stops"], stats["starts"], stats["deletes"]) == (1, 1, 1, 0)
    lifecycle = stack.host.stats["lifecycle"]
    assert lifecycle.failed == 0 and stack.poison() == []


def listing(url: str) -> str:
    """The server's answer at its root: ``http.server`` lists its working directory, the user's home."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_homes_are_made_mounted_kept_and_removed_only_with_their_user(make_stack):
    stack = make_stack(ACA_HOME_DELETE_ON_DELETE="true")
    share = Path(share_dir(stack.emulator.info()))
    # carol has a home from before the 128-bit names: it keeps serving her
    (share / legacy_home_folder("carol")).mkdir()
    (share / legacy_home_folder("carol") / "thesis.tex").write_text("kept")
    starts = {user: start_request(user=user) for user in ("alice", "bob", "carol")}
    for req in starts.values():
        stack.send(req)
    stack.drain()
    urls = {user: stack.status(req).url for user, req in starts.items()}
    assert sorted(p.name for p in share.iterdir()) == sorted([home_folder("alice"), home_folder("bob"),
                                                              legacy_home_folder("carol")])
    (share / home_folder("alice") / "notes.ipynb").write_text("{}")
    assert "notes.ipynb" in listing(urls["alice"]) and "notes.ipynb" not in listing(urls["bob"])
    assert "thesis.tex" in listing(urls["carol"])
    owners = {e["RowKey"]: e["user"] for e in stack.storage.table.query_entities(
        "PartitionKey eq @p", parameters={"p": f"{HUB}~homes"})}
    assert owners == {home_folder("alice"): "alice", home_folder("bob"): "bob", legacy_home_folder("carol"): "carol"}

    # a stop deletes the app, a start makes a new one: the file is still there
    stack.send(request(Op.STOP, user="alice"))
    stack.drain()
    again = start_request(user="alice")
    stack.send(again)
    stack.drain()
    assert "notes.ipynb" in listing(stack.status(again).url)

    # deleting alice (as JupyterHub does with the user) removes her folder and record, and nothing else
    delete = request(Op.DELETE, user="alice")
    delete.spec = ServerSpec(image="quay.io/jupyter/base-notebook:latest", volumes=[home_volume("alice")])
    stack.send(delete)
    stack.drain()
    assert stack.status(delete).phase is Phase.STOPPED
    assert sorted(p.name for p in share.iterdir()) == sorted([home_folder("bob"), legacy_home_folder("carol")])
    assert f"{HUB}~homes" not in [e["PartitionKey"] for e in stack.storage.table.query_entities(
        "RowKey eq @r", parameters={"r": home_folder("alice")})]
    assert "thesis.tex" in listing(urls["carol"])


@pytest.mark.parametrize("internal", [True, False], ids=["internal", "external"])
def test_network_ingress_only_in_an_internal_environment(make_stack, internal):
    """L1: vnet_ingress on an environment ARM does not report internal would put servers on the internet."""
    first, second = (environment_id(DEFAULT_SUBSCRIPTION, DEFAULT_RESOURCE_GROUP, name)
                     for name in (DEFAULT_ENVIRONMENT, "cae-two"))
    pool = json.dumps([{"id": first, "cores": 0.25},  # no room: the server goes to the second
                       {"id": second, "cores": 10, "vnet_ingress": True, "allow_from": ["127.0.0.0/8"]}])
    stack = make_stack({"more_environments": ["cae-two"], "internal_environments": ["cae-two"] if internal else []},
                       ACA_ENVIRONMENTS=pool)
    start = start_request()
    stack.send(start)
    stack.drain()
    status = stack.status(start)
    if internal:
        assert status.phase is Phase.RUNNING, status.message
        (app,) = stack.emulator.apps.values()
        assert app.environment.endswith("cae-two")
    else:
        assert status.phase is Phase.FAILED and status.error_code == "EnvironmentNotInternal", status.message
        assert "would put them on the internet" in status.message
        assert stack.arm_requests("PUT") == 0 and stack.emulator.apps == {}
