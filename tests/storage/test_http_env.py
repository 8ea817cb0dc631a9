"""The SDK clients' transports read the environment once: proxies still apply, CA bundles still verify."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from acaspawner.http_env import transport_options
from acaspawner.hub_storage import HubStorage
from acaspawner.storage_config import StorageConfig
from functions.storage import FunctionStorage

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy and no CA bundle in the environment (this machine may set either)."""
    for name in (*PROXY_VARIABLES, *(v.upper() for v in PROXY_VARIABLES), "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class _Forwarding(BaseHTTPRequestHandler):
    """A plain-HTTP forward proxy that records the absolute URLs it forwards."""

    seen: list[str]

    def _forward(self) -> None:
        self.seen.append(self.path)
        url = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        upstream.request(self.command, url.path + (f"?{url.query}" if url.query else ""), body or None, headers)
        answer = upstream.getresponse()
        payload = answer.read()
        self.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_MERGE = do_HEAD = _forward

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Recording", (_Forwarding,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_without_a_proxy_the_environment_is_read_once(clean_env):
    assert transport_options() == {"use_env_settings": False}
    assert transport_options(aio=True) == {"use_env_settings": False}
    assert transport_options("/etc/emulator-ca.pem") == {"use_env_settings": False,
                                                         "connection_verify": "/etc/emulator-ca.pem"}


def test_a_ca_bundle_from_the_environment_still_verifies(clean_env):
    clean_env.setenv("CURL_CA_BUNDLE", "/etc/curl-ca.pem")
    assert transport_options() == {"use_env_settings": False, "connection_verify": "/etc/curl-ca.pem"}
    clean_env.setenv("REQUESTS_CA_BUNDLE", "/etc/requests-ca.pem")  # requests prefers this one
    assert transport_options()["connection_verify"] == "/etc/requests-ca.pem"
    # a bundle the client was given wins, as it does in requests; aiohttp never read these variables
    assert transport_options("/etc/emulator-ca.pem")["connection_verify"] == "/etc/emulator-ca.pem"
    assert "connection_verify" not in transport_options(aio=True)


def test_with_a_proxy_the_transport_reads_the_environment_per_request(clean_env):
    clean_env.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    clean_env.setenv("REQUESTS_CA_BUNDLE", "/etc/requests-ca.pem")
    assert transport_options() == {}
    assert transport_options(aio=True) == {}
    assert transport_options("/etc/emulator-ca.pem") == {"connection_verify": "/etc/emulator-ca.pem"}


def _config(connection_string: str, unique_name) -> StorageConfig:
    return StorageConfig(queue_name=unique_name("q"), table_name=unique_name("t"),
                         connection_string=connection_string)


def test_the_functions_storage_goes_through_a_configured_proxy(clean_env, proxy, storage_connection_string,
                                                               unique_name):
    url, seen = proxy
    direct = FunctionStorage(_config(storage_connection_string, unique_name))
    direct.ensure_table()
    assert seen == []  # no proxy configured: straight to Azurite

    clean_env.setenv("HTTP_PROXY", url)
    proxied = FunctionStorage(_config(storage_connection_string, unique_name))
    proxied.ensure_table()
    assert proxied.get_status("hub", "jl-nobody") is None
    assert any("/Tables" in path for path in seen) and any("jl-nobody" in path for path in seen)

    seen.clear()
    clean_env.setenv("NO_PROXY", "127.0.0.1")  # the per-host exception still applies
    bypassing = FunctionStorage(_config(storage_connection_string, unique_name))
    bypassing.ensure_table()
    assert seen == []


async def test_the_hub_storage_goes_through_a_configured_proxy(clean_env, proxy, storage_connection_string,
                                                               unique_name):
    url, seen = proxy
    clean_env.setenv("HTTP_PROXY", url)
    config = _config(storage_connection_string, unique_name)
    storage = HubStorage(config)
    try:
        await storage.ensure()
    finally:
        await storage.close()
    assert any(path.endswith(f"/{config.queue_name}") for path in seen), seen
    assert any("/Tables" in path for path in seen), seen
