"""A stand-in for a notebook server that starts in milliseconds: answers every request with 200.

Benchmarks and load tests run it as the app's command, so that tens or
hundreds of apps cost the machine little; it listens on ``$PORT``, which the
emulator sets for every app.
"""

from __future__ import annotations

import sys

APP_SERVER = """\
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(128)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        if c.recv(65536):
            c.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 3\\r\\nConnection: close\\r\\n\\r\\nok\\n")
    except OSError:
        pass
    c.close()
"""
# -I -S: no site packages, no user paths: the interpreter starts in a few milliseconds
APP_COMMAND = [sys.executable, "-I", "-S", "-c", APP_SERVER]
