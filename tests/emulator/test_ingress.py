"""The ingress: Host dispatch on every port, hub routing, X-Forwarded-*, header limit, streaming, websockets."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import pytest
from emulator_helpers import ECHO_APP, http_session

from local.procs import free_port, stop_process_group, wait_for_port


@pytest.fixture
def hub_upstream():
    """A stand-in hub (echo_app.py) on a free loopback port; yields its host:port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ECHO_APP), f"--port={port}"], start_new_session=True)
    try:
        wait_for_port(port, proc=proc, timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process_group(proc)


def test_app_host_reaches_the_app_and_other_hosts_get_aca_404(echo_app, aca_emulator):
    fqdn = echo_app("user-x").properties.configuration.ingress.fqdn
    session = http_session()
    answer = session.get(f"http://{fqdn}/user/x/api?a=1", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10)
    assert answer.status_code == 200
    seen = answer.json()
    assert seen["path"] == "/user/x/api?a=1"
    assert seen["headers"]["Host"] == fqdn
    assert seen["headers"]["X-Forwarded-For"] == "203.0.113.9,127.0.0.1"
    assert seen["headers"]["X-Forwarded-Proto"] == "http"

    other = session.get(f"http://{fqdn}/user/x/", headers={"Host": "somewhere.else:8000"}, timeout=10)
    assert other.status_code == 404
    assert "stopped or does not exist" in other.text
    assert aca_emulator.stats["ingress_404"] == 1


def test_every_ingress_port_dispatches_by_host(echo_app, aca_emulator):
    a = echo_app("app-a").properties.configuration.ingress.fqdn
    b = echo_app("app-b").properties.configuration.ingress.fqdn
    assert a != b
    via_a = http_session().get(f"http://{a}/", headers={"Host": b}, timeout=10).json()
    assert via_a["headers"]["Host"] == b
    assert via_a["env"]["PORT"] == str(aca_emulator.apps["app-b"].container_port)


def test_hub_host_goes_to_the_hub_upstream(echo_app, aca_emulator, hub_upstream):
    fqdn = echo_app("user-x").properties.configuration.ingress.fqdn
    aca_emulator.register_hub(hub_upstream, f"http://{hub_upstream}")
    seen = http_session().get(f"http://{fqdn}/hub/home", headers={"Host": hub_upstream}, timeout=10).json()
    assert seen["argv"] == [f"--port={hub_upstream.rsplit(':', 1)[1]}"]  # the hub, not the app
    assert seen["headers"]["Host"] == hub_upstream  # passed through unchanged, as envoy does
    aca_emulator.unregister_hub(hub_upstream)
    assert http_session().get(f"http://{fqdn}/", headers={"Host": hub_upstream}, timeout=10).status_code == 404


def test_headers_over_the_limit_get_431(echo_app, aca_emulator):
    fqdn = echo_app("user-x").properties.configuration.ingress.fqdn
    aca_emulator.set_faults(header_limit=2048)
    session = http_session()
    assert session.get(f"http://{fqdn}/", headers={"X-Big": "x" * 1500}, timeout=10).status_code == 200
    assert session.get(f"http://{fqdn}/", headers={"X-Big": "x" * 2100}, timeout=10).status_code == 431
    aca_emulator.set_faults(header_limit=60 * 1024)
    # beyond aiohttp's default 8 KiB field limit, still below envoy's 60 KiB
    assert session.get(f"http://{fqdn}/", headers={"X-Big": "x" * 20000}, timeout=10).status_code == 200
    assert session.get(f"http://{fqdn}/", headers={"X-Big": "x" * 70000}, timeout=10).status_code == 431
    assert aca_emulator.stats["ingress_431"] == 2


def test_bodies_stream_redirects_pass_and_stopped_apps_are_404(echo_app, aca_client, aca_emulator):
    fqdn = echo_app("user-x").properties.configuration.ingress.fqdn
    session = http_session()
    payload = b"0123456789" * 200_000

    def chunks():
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    echoed = session.post(f"http://{fqdn}/upload", data=chunks(), timeout=30).json()  # chunked upload
    assert echoed["method"] == "POST" and len(echoed["body"]) == len(payload)
    redirect = session.get(f"http://{fqdn}/user/x/redirect", allow_redirects=False, timeout=10)
    assert redirect.status_code == 302 and redirect.headers["Location"] == "/elsewhere"

    aca_client.container_apps.begin_stop(aca_emulator.resource_group, "user-x").result(timeout=30)
    stopped = session.get(f"http://{fqdn}/", timeout=10)
    assert stopped.status_code == 404 and "stopped or does not exist" in stopped.text


async def test_websocket_through_the_ingress(echo_app):
    fqdn = echo_app("user-x").properties.configuration.ingress.fqdn
    async with asyncio.timeout(30), aiohttp.ClientSession(trust_env=False) as session:
        async with session.ws_connect(f"http://{fqdn}/user/x/api/kernels/k/channels/ws") as ws:
            await ws.send_str("hello")
            assert (await ws.receive(timeout=10)).data == "echo: hello"
            await ws.send_bytes(b"\x00\x01")
            assert (await ws.receive(timeout=10)).data == b"\x00\x01"
