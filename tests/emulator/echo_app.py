"""A tiny container stand-in for emulator tests.

Answers every path with JSON describing the request, its env, argv, working directory and the
files in it; ``?write=<name>`` first stores the body as that file there; ``.../ws`` is a
websocket echo. It binds only to 127.0.0.1 and exits with an error for any other address,
so a broken bind rewrite fails a test instead of listening on the network.
"""

import argparse
import asyncio
import os
import sys
from pathlib import Path

from aiohttp import WSMsgType, web

ENV_KEYS = ("PORT", "TOKEN", "PLAIN", "SERVICE_URL", "HOME", "JUPYTER_PORT", "NOTEBOOKS")


async def handle(request: web.Request) -> web.StreamResponse:
    if request.path.endswith("/ws"):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(f"echo: {msg.data}")
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws
    if request.path.endswith("/redirect"):
        raise web.HTTPFound("/elsewhere")
    body = await request.read()
    if "write" in request.query:  # ?write=<name>: the body becomes a file of the working directory
        await asyncio.to_thread(Path(os.path.basename(request.query["write"])).write_bytes, body)
    return web.json_response(
        {
            "method": request.method,
            "path": request.path_qs,
            "headers": {k: v for k, v in request.headers.items()},
            "body": body.decode(errors="replace"),
            "env": {k: os.environ.get(k) for k in ENV_KEYS},
            "argv": sys.argv[1:],
            "cwd": os.getcwd(),
            "files": sorted(os.listdir(".")),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--ip", default="127.0.0.1")
    args, _ = parser.parse_known_args()
    if args.ip != "127.0.0.1":
        sys.exit(f"refusing to bind {args.ip!r}: only 127.0.0.1 is allowed")
    # big limits: header-size tests must meet the ingress limit, not this server's
    app = web.Application(
        client_max_size=64 * 1024 * 1024,
        handler_args={"max_field_size": 256 * 1024, "max_line_size": 256 * 1024},
    )
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=args.port or int(os.environ["PORT"]), print=None, access_log=None)


if __name__ == "__main__":
    main()
