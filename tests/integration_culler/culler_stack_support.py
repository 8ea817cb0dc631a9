"""Helpers for the idle culler's end-to-end test: the hub's REST API, kept-alive activity, bounded waits, logs.

Everything talks to the local stack on 127.0.0.1 only. Named uniquely (no ``conftest``)
so the test module imports it directly.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from acaspawner.culler_service import SERVICE_NAME
from local.stack import Stack

# one line per culler run (functions/culler.py, CullSummary.line)
SUMMARY_RE = re.compile(
    rf"{re.escape(SERVICE_NAME)}: culled=(?P<culled>\d+) kept=(?P<kept>\d+) users_deleted=(?P<users_deleted>\d+) "
    r"errors=(?P<errors>\d+) still_stopping=(?P<still_stopping>\d+) users_listed=(?P<users_listed>\d+) "
    r"servers_seen=(?P<servers_seen>\d+)"
)


def now_iso() -> str:
    """The current time as the hub's activity API wants it (ISO 8601, UTC, ``Z``)."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class HubAdmin:
    """The hub REST API (``/hub/api``) with the stack's ``e2e-admin`` service token."""

    def __init__(self, stack: Stack, *, timeout: float = 30):
        if not stack.options.test_admin_token:
            raise ValueError("the stack needs StackOptions.test_admin_token for the e2e-admin service")
        self.base = f"{stack.public_url}/hub/api"
        self.token = stack.options.test_admin_token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``(status, decoded JSON or None)``; HTTP errors are answers too, never exceptions."""
        request = urllib.request.Request(
            f"{self.base}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def expect(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        status, answer = self.call(method, path, body)
        assert status in ok, f"{method} {path} answered {status} (expected {ok}): {answer}"
        return answer

    def user(self, name: str) -> dict:
        return self.expect("GET", f"/users/{quote(name)}")

    def default_server(self, name: str) -> dict | None:
        """The hub's model of ``name``'s default server while it is active (pending or ready), else None."""
        return (self.user(name).get("servers") or {}).get("")


class ActivityKeeper:
    """Posts fresh activity for a user's default server every ``interval`` seconds, in a thread.

    What a single-user server (or the proxy's activity sampling) would report for
    someone working in their notebook.
    """

    def __init__(self, hub: HubAdmin, user: str, *, interval: float = 2.0):
        self.hub = hub
        self.user = user
        self.interval = interval
        self.posted = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"activity-{user}", daemon=True)

    def __enter__(self) -> ActivityKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.hub.timeout + 5)

    def post_once(self) -> None:
        stamp = now_iso()
        body = {"last_activity": stamp, "servers": {"": {"last_activity": stamp}}}
        try:
            status, answer = self.hub.call("POST", f"/users/{quote(self.user)}/activity", body)
        except OSError as e:  # a slow hub on a loaded machine: the next round tries again
            self.failures.append(f"{type(e).__name__}: {e}")
            return
        if status == 200:
            self.posted += 1
        else:
            self.failures.append(f"{status}: {answer}")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.post_once()
            self._stop.wait(self.interval)

    def describe(self) -> str:
        return f"activity for {self.user}: {self.posted} posted, failures {self.failures[-3:]}"


# --- the stack's logs ----------------------------------------------------------------------------


def read_log(stack: Stack, name: str) -> str:
    path = stack.logs / f"{name}.log"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def culler_summaries(functions_log: str) -> list[dict[str, int]]:
    return [{k: int(v) for k, v in m.groupdict().items()} for m in SUMMARY_RE.finditer(functions_log)]


def stack_log_files(stack: Stack) -> list[Path]:
    """Every log of the stack: its parts' logs and the emulator's app consoles."""
    files = {p for p in stack.logs.rglob("*") if p.is_file()}
    files |= {p for p in stack.state_dir.rglob("*.log") if p.is_file()}
    return sorted(files)


def files_containing(files: list[Path], secret: str) -> list[Path]:
    needle = secret.encode()
    return [p for p in files if needle in p.read_bytes()]


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
