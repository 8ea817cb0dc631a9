"""Ingress like ACA's envoy: per-app loopback ports that all dispatch by ``Host``.

Every app with ingress gets its own port on 127.0.0.1 and ``127.0.0.1:<port>`` as its fqdn,
but the port does not decide where a request goes: every ingress port looks the request's
``Host`` up in one shared table, as envoy does for a whole environment.

* a known app's host → that app's process (404 while the app is stopped),
* a host registered as the environment's hub (``register_hub``) → the hub upstream,
* anything else → ACA's "stopped or does not exist" 404 page.

Each hop appends the client address to ``X-Forwarded-For`` and sets ``X-Forwarded-Proto``;
request headers over ``header_limit`` bytes are answered 431. ``Host`` goes upstream unchanged,
so a proxy in front that keeps the browser's ``Host`` (CHP without ``--change-origin``) is sent
back to the hub, round and round, until the header limit ends it with 431 — the failure this
project exists to avoid. HTTP bodies stream both ways, websockets pass through, redirects are
returned to the client, never followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .faults import Stats

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
PARSER_LIMIT = 4 * 1024 * 1024  # aiohttp's own parser limits sit far above the envoy-like limit we enforce
NOT_FOUND_PAGE = """<!DOCTYPE html>
<html><head><title>Azure Container App - Unavailable</title></head>
<body><h1>Error 404 - This Container App is stopped or does not exist.</h1>
<p>The Container App you have attempted to reach is currently stopped or does not exist.</p></body></html>
"""
UPSTREAM_FAILURE = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"

# A route answers the upstream base URL ("http://127.0.0.1:41234") or None for "stopped/does not exist".
Route = Callable[[], str | None]


def header_bytes(request: web.BaseRequest) -> int:
    """Size of the request headers as envoy counts them (name, value, separators)."""
    return sum(len(name) + len(value) + 4 for name, value in request.raw_headers)


def forwarded_headers(request: web.BaseRequest) -> CIMultiDict[str]:
    """Request headers for the next hop: hop-by-hop ones dropped, ``Host`` kept, X-Forwarded-* added."""
    connection_tokens = {t.strip().lower() for t in request.headers.get("Connection", "").split(",") if t.strip()}
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in connection_tokens or lower in ("expect", "x-forwarded-for"):
            continue
        headers.add(name, value)
    previous = ",".join(request.headers.getall("X-Forwarded-For", []))
    client = request.remote or "127.0.0.1"
    headers["X-Forwarded-For"] = f"{previous},{client}" if previous else client
    headers["X-Forwarded-Proto"] = request.scheme
    return headers


@dataclass
class _Site:
    port: int
    site: web.SockSite


class Ingress:
    """The environment's ingress: a host table shared by every app's ingress port."""

    def __init__(self, stats: Stats, header_limit: Callable[[], int], host: str = "127.0.0.1") -> None:
        self.host = host
        self.stats = stats
        self._header_limit = header_limit
        self._routes: dict[str, Route] = {}
        self._sites: dict[int, _Site] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application(
            handler_args={"max_line_size": PARSER_LIMIT, "max_field_size": PARSER_LIMIT, "max_headers": 1000}
        )
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        # no pool limit: a request looping through proxies holds one connection per hop
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._sites.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def open_port(self) -> int:
        """A new ingress port on ``host`` (bound here, so no other process can take it first)."""
        assert self._runner is not None, "ingress not started"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        site = web.SockSite(self._runner, sock)
        await site.start()
        port = sock.getsockname()[1]
        self._sites[port] = _Site(port, site)
        return port

    async def close_port(self, port: int) -> None:
        entry = self._sites.pop(port, None)
        if entry is not None:
            await entry.site.stop()

    def route(self, host: str, route: Route) -> None:
        self._routes[host.lower()] = route

    def unroute(self, host: str) -> None:
        self._routes.pop(host.lower(), None)

    def register_hub(self, host: str, upstream: str) -> None:
        """Send requests for ``host`` (the hub's public host) to ``upstream``, as the hub app is reached in ACA."""
        base = upstream.rstrip("/")
        self.route(host, lambda: base)

    def hosts(self) -> list[str]:
        return sorted(self._routes)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.stats.ingress_requests += 1
        if header_bytes(request) > self._header_limit():
            self.stats.ingress_431 += 1
            return web.Response(status=431, text="Request Header Fields Too Large")
        route = self._routes.get(request.headers.get("Host", "").lower())
        upstream = route() if route else None
        if upstream is None:
            self.stats.ingress_404 += 1
            return web.Response(status=404, text=NOT_FOUND_PAGE, content_type="text/html")
        headers = forwarded_headers(request)
        url = URL(upstream + request.raw_path, encoded=True)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, url, headers)
        return await self._http(request, url, headers)

    def _unavailable(self) -> web.Response:
        self.stats.ingress_503 += 1
        return web.Response(status=503, text=UPSTREAM_FAILURE)

    async def _http(self, request: web.Request, url: URL, headers: CIMultiDict[str]) -> web.StreamResponse:
        assert self._session is not None
        body = request.content if request.body_exists else None
        try:
            upstream = await self._session.request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        except aiohttp.ClientError:
            return self._unavailable()
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            connection_tokens = {t.strip().lower() for t in upstream.headers.get("Connection", "").split(",")}
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() not in connection_tokens:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _websocket(self, request: web.Request, url: URL, headers: CIMultiDict[str]) -> web.StreamResponse:
        assert self._session is not None
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        for name in list(headers):
            if name.lower().startswith("sec-websocket-"):
                del headers[name]  # aiohttp makes its own handshake upstream
        try:
            upstream = await self._session.ws_connect(url, headers=headers, protocols=protocols, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text=exc.message)
        except aiohttp.ClientError:
            return self._unavailable()
        client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else (), max_msg_size=0)
        await client.prepare(request)

        async def pump(source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, sink) -> None:
            async for msg in source:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await sink.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await sink.send_bytes(msg.data)
                else:
                    break
            await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK)

        tasks = [asyncio.create_task(pump(client, upstream)), asyncio.create_task(pump(upstream, client))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await upstream.close()
            await client.close()
        return client
