"""Small helpers for the local stack's child processes."""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NODE_BIN = REPO / "node_modules" / ".bin"


def _port_pool() -> range:
    """Ports below the kernel's ephemeral range, where outgoing connections never take theirs."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(10000, low) if low > 11000 else range(0)


_POOL = _port_pool()
_turn = itertools.count(random.randrange(max(len(_POOL), 1)))
_turn_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``.

    Taken in turn from below the ephemeral range: a port the kernel hands out
    (``bind(0)``) can be taken by an outgoing connection before the server
    that asked for it binds it, which a burst of hundreds of apps does hit.
    """
    with _turn_lock:
        for _ in range(min(len(_POOL), 1000)):
            port = _POOL[next(_turn) % len(_POOL)]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Block until something accepts connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def ensure_node_tools() -> None:
    """Install the npm tools (azurite, configurable-http-proxy) into the repo if missing."""
    if (NODE_BIN / "azurite").exists() and (NODE_BIN / "configurable-http-proxy").exists():
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO, check=True)


def stop_process_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate ``proc`` and its children (it must have been started with ``start_new_session``)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
