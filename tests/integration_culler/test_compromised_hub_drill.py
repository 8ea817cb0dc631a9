"""Drill: what a compromised hub can still do to the functions, through the whole local stack.

The attacker holds what the hub holds: its sealing key and the right to send
to the lifecycle queue. It forges the functions' own follow-ups (to read an
"operation" on its own HTTPS server with the functions' ARM token, and to
remove a user's home), and requests for another user's home folder. And one
user, through the hub's REST API, tries to take the whole pool with named
servers. Nothing of it gets through: forged follow-ups are poisoned unread,
the token goes nowhere, homes stay, and the pool stays open to the class.
"""

from __future__ import annotations

import base64
import http.server
import re
import secrets
import ssl
import threading
import time
from pathlib import Path

import pytest
import trustme
from azure.data.tables import TableClient
from azure.storage.queue import BinaryBase64EncodePolicy, QueueClient
from culler_stack_support import HubAdmin
from waiting import wait_until

from acaspawner.contract import Op, ServerSpec, Volume
from acaspawner.naming import home_folder, server_key
from acaspawner.sealing import Sealer
from acaspawner.spec import build_request, home_sub_path, next_generation
from functions.followup import FollowUp, Step
from local.procs import free_port
from local.stack import Stack, StackOptions

NEVER = "0 0 0 1 1 *"


class Collector(http.server.BaseHTTPRequestHandler):
    """The attacker's HTTPS endpoint: records every request (and whether it carried a bearer token)."""

    seen: list[tuple[str, bool]] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        Collector.seen.append((self.path, self.headers.get("Authorization", "").startswith("Bearer ")))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "Failed", "error": {"code": "x", "message": "y"}}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector(stack):
    """An HTTPS server on loopback with a certificate the functions would trust (the emulator's test CA)."""
    aca = Path(stack.emulator_info["ca_bundle"]).parent
    ca = trustme.CA.from_pem((aca / "ca.pem").read_bytes(), (aca / "ca-key.pem").read_bytes())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Collector)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    Collector.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def stack(tmp_path_factory):
    options = StackOptions(
        port=free_port(), state_dir=tmp_path_factory.mktemp("compromised-hub"), test_admin_token=secrets.token_hex(16),
        function_settings={"ACA_CULL_SCHEDULE": NEVER, "ACA_RECONCILE_SCHEDULE": NEVER,
                           "ACA_HOME_DELETE_ON_DELETE": "true", "ACA_MAX_SERVERS_PER_USER": "2"},
    )
    with Stack(options) as running:
        yield running


def lifecycle_queue(stack: Stack) -> QueueClient:
    """The lifecycle queue as the hub writes to it (base64 bodies)."""
    return QueueClient.from_connection_string(stack.azurite.connection_string, "aca-lifecycle",
                                              message_encode_policy=BinaryBase64EncodePolicy())


def statuses(stack: Stack) -> dict[str, dict]:
    with TableClient.from_connection_string(stack.azurite.connection_string, "acaservers") as table:
        return {e["RowKey"]: dict(e) for e in table.query_entities("PartitionKey eq @p",
                                                                   parameters={"p": stack.options.hub_id})}


def ready(hub: HubAdmin, user: str, server: str = "") -> bool:
    return bool(((hub.user(user).get("servers") or {}).get(server) or {}).get("ready"))


def test_a_compromised_hub_gets_no_token_no_home_and_no_pool(stack, collector):
    hub, hub_id = HubAdmin(stack), stack.options.hub_id
    for user in ("alice", "bob"):
        hub.expect("POST", f"/users/{user}", ok=(201, 409))
        hub.expect("POST", f"/users/{user}/server", ok=(201, 202))
    for user in ("alice", "bob"):
        wait_until(lambda u=user: ready(hub, u), timeout=180, interval=1, what=f"{user}'s server to be ready")
    alice_home = stack.home_share / home_folder("alice")
    (alice_home / "thesis.tex").write_text("years of work")

    # H1: follow-ups forged with the hub's sealing key
    hub_sealer = Sealer(stack.sealing_key)
    start = build_request(Op.START, hub_id=hub_id, server_key=server_key(hub_id, "alice"), user="alice",
                          server_name="", generation=next_generation(0), spec=ServerSpec(image="quay.io/jupyter/x"))
    delete = build_request(Op.DELETE, hub_id=hub_id, server_key=start.server_key, user="alice", server_name="",
                           generation=next_generation(start.generation))
    forged = [
        FollowUp.first(start, Step.CREATE, since=time.time(), delay=1, deadline=time.time() + 300,
                       operation_url=f"{collector}/subscriptions/x/providers/Microsoft.App/locations/y/op/1"),
        FollowUp.first(delete, Step.DELETE, since=time.time(), delay=1, deadline=time.time() + 300,
                       remove_home=True),
    ]
    bodies = [hub_sealer.seal_bytes(f.to_json().encode()) for f in forged]
    # M1: requests for another user's home folder, by either naming
    bobs = Volume(name="home", storage_name="homes", mount_path="/home/jovyan", sub_path=home_sub_path("bob"))
    theft = build_request(Op.START, hub_id=hub_id, server_key=server_key(hub_id, "alice", "loot"), user="alice",
                          server_name="loot", generation=next_generation(0),
                          spec=ServerSpec(image="quay.io/jupyter/base-notebook:latest", volumes=[bobs]))
    bodies.append(hub_sealer.seal(theft))
    with lifecycle_queue(stack) as lifecycle:
        for body in bodies:
            lifecycle.send_message(body)

    def poisoned() -> set[str]:
        with QueueClient.from_connection_string(stack.azurite.connection_string, "aca-lifecycle-poison") as poison:
            return {m.content for m in poison.peek_messages(max_messages=32)}

    forged_bodies = {base64.b64encode(b).decode() for b in bodies[:2]}
    wait_until(lambda: forged_bodies <= poisoned(), timeout=60, interval=0.5,
               what="both forged follow-ups to be poisoned")
    wait_until(lambda: statuses(stack).get(theft.server_key, {}).get("error_code") == "PolicyViolation",
               timeout=60, interval=0.5, what="the request for bob's folder to be refused")
    assert Collector.seen == []  # the functions' ARM token went nowhere
    assert (alice_home / "thesis.tex").read_text() == "years of work"
    assert ready(hub, "alice") and ready(hub, "bob")
    log = (stack.logs / "functions.log").read_text()
    assert log.count("HubSealedFollowUp") >= 2
    assert "not the home folder of user 'alice'" in statuses(stack)[theft.server_key]["message"]

    # M3: mallory asks for five named servers at once through the hub's REST API; the pool stays open
    hub.expect("POST", "/users/mallory", ok=(201, 409))
    for i in range(5):
        hub.call("POST", f"/users/mallory/servers/s{i}")
    keys = {server_key(hub_id, "mallory", f"s{i}"): f"s{i}" for i in range(5)}

    def settled() -> bool:  # a refused start is failed, then stopped by the spawner's clean-up
        rows = statuses(stack)
        return all(rows.get(k, {}).get("phase") in ("running", "failed", "stopped") for k in keys)

    wait_until(settled, timeout=240, interval=1, what="mallory's five starts to end",
               describe=lambda: str({k: statuses(stack).get(k, {}).get("phase") for k in keys}))
    rows = statuses(stack)
    running = [k for k in keys if rows[k]["phase"] == "running"]
    assert len(running) == 2 and sorted(k for k in keys if k in stack.emulator_apps()) == sorted(running)
    # what mallory was told, straight from the hub's answer to each refused start
    refusals = re.findall(r"Not starting mallory's server (s\d): .*\(UserLimitReached; request id [0-9a-f-]{36}\)",
                          (stack.logs / "hub.log").read_text())
    assert sorted(refusals) == sorted(keys[k] for k in keys if k not in running)
    # and the class goes on: another user's named server starts
    hub.expect("POST", "/users/bob/servers/project", ok=(201, 202))
    wait_until(lambda: ready(hub, "bob", "project"), timeout=180, interval=1, what="bob's named server")
