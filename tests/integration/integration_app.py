"""A tiny stand-in for ``jupyterhub-singleuser``, run as a container app by the ACA emulator.

The spawner appends its own single-user flags (``--ip=0.0.0.0 --port=8888
--ServerApp.allow_origin=...``) to the command, which ``python -m http.server``
would refuse as unknown arguments; this script accepts them. It binds where
``--ip``/``--port`` say after the emulator's rewrite (``0.0.0.0`` → ``127.0.0.1``,
``8888`` → the app's local port) and refuses any other address, so a broken
rewrite fails a test instead of listening on the network. Every GET answers
JSON naming the server it belongs to (from the env JupyterHub gives it).
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def option(name: str, default: str) -> str:
    prefix = f"--{name}="
    return next((a[len(prefix):] for a in sys.argv[1:] if a.startswith(prefix)), default)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {
                "user": os.environ.get("JUPYTERHUB_USER"),
                "server_name": os.environ.get("JUPYTERHUB_SERVER_NAME"),
                "host": self.headers.get("Host"),
                "path": self.path,
                "argv": sys.argv[1:],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def main() -> None:
    ip = option("ip", "127.0.0.1")
    port = int(option("port", os.environ.get("PORT", "0")))
    if ip != "127.0.0.1":
        sys.exit(f"refusing to bind {ip!r}: the emulator should have rewritten it to 127.0.0.1")
    ThreadingHTTPServer((ip, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
