"""The warm pool through the dev host, the emulator (Azure Files, Secret volumes) and the real launcher.

The pool's timer makes slots; a start of the pool's kind is bound to one (the
user's home moved in by a rename), the hub's claim turns its launcher into
the user's server; the stop deletes the slot and moves the home back; the
timer makes a new slot. With no slot free, a start creates its own app.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import jupyterhub
import pytest
from fn_support import HUB, TOKEN, home_volume, request
from test_lifecycle_stack import Stack, make_stack  # noqa: F401 - the fixture is used by name
from waiting import wait_until

from acaspawner.contract import Op, Phase, ServerSpec
from acaspawner.naming import home_folder
from acaspawner.warm import claim_body
from functions.reconciler import run_reconciler
from functions.warm_pool import SlotRows
from local.emulator import pytest_fixtures
from local.homes import share_dir

aca_emulator_factory = pytest_fixtures.aca_emulator_factory

IMAGE = "quay.io/jupyter/base-notebook:latest"
POOL = json.dumps([{"name": "class", "image": IMAGE, "cpu": 0.5, "memory": "1Gi", "size": 2}])


class HubApi(http.server.BaseHTTPRequestHandler):
    """The hub API as far as a starting single-user server asks it (its version)."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        body = json.dumps({"version": jupyterhub.__version__}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub_api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HubApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hub/api"
    server.shutdown()


def server_env(user: str, hub_api: str) -> dict[str, str]:
    """What JupyterHub's spawner gives a server."""
    prefix = f"/user/{user}/"
    return {"JUPYTERHUB_USER": user, "JUPYTERHUB_SERVICE_PREFIX": prefix, "JUPYTERHUB_BASE_URL": "/",
            "JUPYTERHUB_API_URL": hub_api, "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback", "JUPYTERHUB_HOST": "",
            "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:8888{prefix}"}


def warm_start(user: str, hub_api: str) -> tuple:
    spec = ServerSpec(image=IMAGE, cpu=0.5, memory="1Gi", target_port=8888, env=server_env(user, hub_api),
                      secret_env={"JUPYTERHUB_API_TOKEN": TOKEN}, args=["--ServerApp.allow_origin=https://hub.test", "--ip=0.0.0.0", "--port=8888"],
                      volumes=[home_volume(user)])
    start = request(Op.START, user=user)
    start.spec = spec
    return start, spec


def slots(stack: Stack) -> dict[str, str]:
    return {s.name: s.state for s in SlotRows(stack.storage.table, HUB).all()}


def fill(stack: Stack, ready: int) -> None:
    """Run the pool's timer until ``ready`` slots are ready (each run looks once, as in Azure)."""
    def enough() -> bool:
        stack.host.run_timer("warm_pool")
        return sum(state == "ready" for state in slots(stack).values()) >= ready

    wait_until(enough, timeout=120, interval=0.5, what=f"{ready} warm servers to be ready",
               describe=lambda: str(slots(stack)))


def answers(url: str) -> int:
    """The HTTP status at ``url`` (0 while nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


@pytest.fixture
def stack(make_stack) -> Stack:  # noqa: F811 - the fixture, by name
    return make_stack(ACA_WARM_POOL=POOL, ACA_MAX_SERVERS_PER_USER="5")


def test_a_warm_server_is_bound_claimed_and_given_back(stack, hub_api):
    share = Path(share_dir(stack.emulator.info()))
    fill(stack, 2)
    assert len(stack.emulator.apps) == 2 and all(name.startswith("ws-") for name in stack.emulator.apps)
    # alice has a home with a file in it already
    (share / home_folder("alice")).mkdir()
    (share / home_folder("alice") / "thesis.tex").write_text("kept")
    stack.storage.table.create_entity({"PartitionKey": f"{HUB}~homes", "RowKey": home_folder("alice"),
                                       "user": "alice"})

    start, spec = warm_start("alice", hub_api)
    began = time.monotonic()
    stack.send(start)
    stack.drain()
    bound_after = time.monotonic() - began
    status = stack.status(start)
    assert status.phase is Phase.RUNNING and status.slot in stack.emulator.apps, status.message
    assert status.claim_key and TOKEN not in json.dumps(status.to_entity())
    # the home moved into the slot: one rename, nothing copied
    assert not (share / home_folder("alice")).exists()
    assert (share / "slots" / status.slot / "home" / "thesis.tex").read_text() == "kept"
    assert slots(stack)[status.slot] == "bound"

    # the hub's claim: the launcher becomes alice's server, in her home
    claimed = time.monotonic()
    answer = urllib.request.urlopen(urllib.request.Request(
        f"{status.url}/slot/claim", data=claim_body(status, spec, stack.sealer, start.server_key), method="POST"),
        timeout=20)
    assert answer.status == 202
    wait_until(lambda: answers(f"{status.url}/user/alice/api") == 200, timeout=60, interval=0.1,
               what="alice's server to answer")
    print(f"\nwarm start: bound in {bound_after:.2f} s (queue + function), "
          f"claim to answering server {time.monotonic() - claimed:.2f} s")
    assert stack.emulator.stats["creates"] == 2  # the two slots; nothing created for alice's start

    # an hour later the reconciler finds alice's server on its warm server and the other slot the pool's
    summary = run_reconciler(stack.host.settings, now=time.time() + 3600)
    assert summary.deleted == [] and summary.missing == [] and summary.errors == [], summary.line()
    assert summary.capacity is not None and summary.capacity.adopted == summary.capacity.released == []
    assert len(stack.emulator.apps) == 2 and stack.status(start).phase is Phase.RUNNING

    # stop: the slot's app goes, the home comes back, the slot is forgotten; the timer makes a new one
    stop = request(Op.STOP, user="alice")
    stack.send(stop)
    stack.drain()
    assert stack.status(stop).phase is Phase.STOPPED
    assert status.slot not in stack.emulator.apps
    assert (share / home_folder("alice") / "thesis.tex").read_text() == "kept"
    assert not (share / "slots" / status.slot).exists() and status.slot not in slots(stack)
    fill(stack, 2)
    assert len(slots(stack)) == 2


def test_with_no_warm_server_free_a_start_creates_its_own(stack, hub_api):
    start, _ = warm_start("bob", hub_api)
    stack.send(start)
    stack.drain()
    status = stack.status(start)
    assert status.phase is Phase.RUNNING and status.slot == "" and start.server_key in stack.emulator.apps
