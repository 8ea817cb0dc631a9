"""The hub's claim of a warm server: what it carries, how it is sealed, what a refusal becomes.

The claim's way through a real launcher is in ``tests/functions/test_warm_pool_stack.py``
and, from a browser click, ``tests/e2e/test_warm_pool_browser.py``.
"""

from __future__ import annotations

import json
import socket

import pytest
from cryptography.fernet import Fernet, InvalidToken
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from acaspawner.contract import Phase, ServerSpec, Status
from acaspawner.errors import SpawnException
from acaspawner.sealing import Sealer, generate_key
from acaspawner.warm import CLAIM_LIFETIME, claim, claim_body, launcher_args

TOKEN = "hub-api-token-for-alice"


def warm_status(sealer: Sealer, key: bytes, url: str = "http://ws-abc.internal.env") -> Status:
    return Status(hub_id="hub", server_key="hub-alice", user="alice", server_name="", generation=1,
                  phase=Phase.RUNNING, url=url, slot="ws-abc", claim_key=sealer.seal_bytes(key).decode())


def spec() -> ServerSpec:
    return ServerSpec(image="example.org/notebook:1", cpu=0.5, memory="1Gi", target_port=8888,
                      env={"JUPYTERHUB_USER": "alice"}, secret_env={"JUPYTERHUB_API_TOKEN": TOKEN},
                      args=["--ServerApp.allow_origin=https://hub.test", "--ip=0.0.0.0", "--port=8888"])


def test_the_claim_is_sealed_with_the_slots_key_and_lives_a_minute():
    sealer, key = Sealer(generate_key()), Fernet.generate_key()
    body = claim_body(warm_status(sealer, key), spec(), sealer, "hub-alice", now=1_000_000.0)
    assert TOKEN.encode() not in body
    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(body)  # another slot's key opens nothing
    claim_data = json.loads(Fernet(key).decrypt_at_time(body, 3600, 1_000_010))
    assert claim_data["env"]["JUPYTERHUB_API_TOKEN"] == TOKEN and claim_data["server_key"] == "hub-alice"
    assert claim_data["expires"] == 1_000_000.0 + CLAIM_LIFETIME and len(claim_data["nonce"]) == 32
    # the warm server keeps listening where it listens: the hub's --ip/--port would be given twice
    assert claim_data["args"] == ["--ServerApp.allow_origin=https://hub.test"]


def test_listening_arguments_are_left_to_the_launcher():
    assert launcher_args(["--ip=0.0.0.0", "--port=8888", "--debug", "--ServerApp.ip_note=x"]) == \
        ["--debug", "--ServerApp.ip_note=x"]


async def test_a_claim_key_the_hub_cannot_open_fails_the_start_clearly():
    status = warm_status(Sealer(generate_key()), Fernet.generate_key())
    with pytest.raises(SpawnException) as failed:
        await claim(status, spec(), Sealer(generate_key()), "hub-alice")
    assert "could not be handed over" in failed.value.jupyterhub_message


class Refusing(RequestHandler):
    def post(self) -> None:
        self.set_status(403)
        self.finish("claim refused: stale")


@pytest.fixture
async def refusing_slot():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    server = HTTPServer(Application([("/slot/claim", Refusing)]))
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.stop()


async def test_a_refused_claim_fails_the_start_with_a_reason(refusing_slot):
    sealer = Sealer(generate_key())
    with pytest.raises(SpawnException) as refused:
        await claim(warm_status(sealer, Fernet.generate_key(), refusing_slot), spec(), sealer, "hub-alice")
    assert "refused to be handed over" in refused.value.jupyterhub_message and refused.value.reason == "failed"
    assert "403" in refused.value.log_message and TOKEN not in refused.value.log_message


async def test_a_slot_that_does_not_answer_fails_the_start_with_a_reason():
    sealer = Sealer(generate_key())
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    with pytest.raises(SpawnException) as unreachable:
        await claim(warm_status(sealer, Fernet.generate_key(), url), spec(), sealer, "hub-alice")
    assert "could not be reached" in unreachable.value.jupyterhub_message
