"""The original failure, reproduced: configurable-http-proxy in front of ACA's Host-routing ingress.

Without ``--change-origin`` CHP forwards the browser's ``Host`` (the hub's) to the app's ingress,
the ingress sends the hub's host back to the hub (CHP), which routes ``/user/x/`` to the ingress
again ... every hop appends to ``X-Forwarded-For`` until the header limit answers 431. With
``--change-origin`` the same request reaches the app.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from emulator_helpers import http_session

from local.procs import NODE_BIN, free_port, stop_process_group, wait_for_port

CHP = NODE_BIN / "configurable-http-proxy"


@pytest.fixture
def chp(tmp_path) -> Iterator[Callable[..., tuple[int, Callable[[str, str], None]]]]:
    """``start(change_origin)`` → (proxy port, add_route(path, target)); every CHP is stopped afterwards."""
    procs: list[subprocess.Popen] = []

    def start(change_origin: bool) -> tuple[int, Callable[[str, str], None]]:
        assert CHP.exists(), f"{CHP} is missing: run npm ci"
        port, api_port, token = free_port(), free_port(), secrets.token_hex(16)
        cmd = [str(CHP), "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1",
               "--api-port", str(api_port), "--log-level", "warn"]
        if change_origin:
            cmd.append("--change-origin")
        with open(tmp_path / f"chp-{port}.log", "wb") as log:
            proc = subprocess.Popen(cmd, env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": token}, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        wait_for_port(port, proc=proc, timeout=30)
        wait_for_port(api_port, proc=proc, timeout=30)

        def add_route(path: str, target: str) -> None:
            answer = http_session().post(f"http://127.0.0.1:{api_port}/api/routes{path}", json={"target": target},
                                         headers={"Authorization": f"token {token}"}, timeout=10)
            assert answer.status_code == 201, answer.text

        return port, add_route

    yield start
    for proc in procs:
        stop_process_group(proc)


def test_without_change_origin_the_request_loops_until_431(chp, echo_app, aca_emulator):
    fqdn = echo_app("user-x").properties.configuration.ingress.fqdn
    port, add_route = chp(change_origin=False)
    hub_host = f"127.0.0.1:{port}"
    aca_emulator.register_hub(hub_host, f"http://{hub_host}")  # the hub's public host leads to the hub (CHP)
    aca_emulator.set_faults(header_limit=8 * 1024)  # envoy's 60 KiB needs ~2000 hops; 8 KiB shows the same loop
    add_route("/user/x", f"http://{fqdn}")

    answer = http_session().get(f"http://{hub_host}/user/x/", timeout=120)
    assert answer.status_code == 431
    stats = aca_emulator.stats
    assert stats["ingress_431"] == 1
    assert stats["ingress_requests"] > 100  # it went round and round

    # with envoy's real 60 KiB limit the loop still ends in 431 (node's own 16 KiB header limit in CHP ends it first)
    aca_emulator.set_faults(header_limit=60 * 1024)
    assert http_session().get(f"http://{hub_host}/user/x/", timeout=120).status_code == 431


def test_with_change_origin_the_request_reaches_the_app(chp, echo_app, aca_emulator):
    fqdn = echo_app("user-x").properties.configuration.ingress.fqdn
    port, add_route = chp(change_origin=True)
    hub_host = f"127.0.0.1:{port}"
    aca_emulator.register_hub(hub_host, f"http://{hub_host}")
    add_route("/user/x", f"http://{fqdn}")

    answer = http_session().get(f"http://{hub_host}/user/x/lab?x=1", timeout=30)
    assert answer.status_code == 200
    seen = answer.json()
    assert seen["path"] == "/user/x/lab?x=1"
    assert seen["headers"]["Host"] == fqdn
    assert seen["headers"]["X-Forwarded-For"].split(",")[-1] == "127.0.0.1"
    assert aca_emulator.stats["ingress_431"] == 0

    async def websocket_echo() -> list:
        async with asyncio.timeout(30), aiohttp.ClientSession(trust_env=False) as session:
            async with session.ws_connect(f"http://{hub_host}/user/x/api/kernels/k/channels/ws",
                                          headers={"Origin": f"http://{hub_host}"}) as ws:
                await ws.send_str("through chp and the ingress")
                text = (await ws.receive()).data
                await ws.send_bytes(b"\x01\x02")
                return [text, (await ws.receive()).data]

    assert asyncio.run(websocket_echo()) == ["echo: through chp and the ingress", b"\x01\x02"]
