"""The claim endpoint of a warm slot's launcher (:mod:`functions.slot_launcher`): the HTTP server and the claim.

Shipped beside the launcher (another file of the slot's Secret volume) and run
by the image's Python: only the standard library and ``cryptography``. The
protocol (paths, answers, the claim's fields) is described in the launcher's
docstring; this module serves it until one claim is accepted and the user's
home folder has arrived.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import socketserver
import sys
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

ENV_PREFIX = "ACA_SLOT_"
READY_PATH = "/slot/ready"
CLAIM_PATH = "/slot/claim"
MAX_BODY = 1024 * 1024
CLAIM_FIELDS = ("nonce", "expires", "server_key", "env", "args")
EXIT_CANNOT_LISTEN = 2
EXIT_NO_HOME = 3
HOME_POLL = 0.05  # seconds between looks for the home folder after a claim
CLIENT_TIMEOUT = 5.0  # seconds one client may take: a single thread serves every client
DRAIN_LIMIT = 8 * MAX_BODY  # an oversized body is read (and dropped) up to this, so the client sees the 413

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NONCE = re.compile(r"[\x21-\x7e]{1,256}\Z")  # it is logged: printable ASCII, no spaces


def log(message: str) -> None:
    """One line on stderr (never a token or an env value)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    print(f"{stamp} slot-launcher: {message}", file=sys.stderr, flush=True)


class ClaimRefused(Exception):
    """A claim the launcher refuses: ``status`` and a short reason (never the body)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Claim:
    """An accepted claim: the user's server, as the hub's spawner describes it."""

    nonce: str
    expires: float
    server_key: str
    env: dict[str, str] = field(repr=False)  # holds the user's API token: never logged
    args: list[str] = field(repr=False)


# ---- claims -----------------------------------------------------------------------------------------------


def parse_claim(plaintext: bytes, now: float) -> Claim:
    """The claim in an opened token; raises ClaimRefused(403) for anything but the published shape."""
    try:
        data = json.loads(plaintext)
    except (UnicodeDecodeError, ValueError):
        raise ClaimRefused(403, "the claim is not JSON") from None
    if not isinstance(data, dict):
        raise ClaimRefused(403, "the claim is not a JSON object")
    missing = [name for name in CLAIM_FIELDS if name not in data]
    if missing:
        raise ClaimRefused(403, f"the claim lacks {', '.join(missing)}")
    unknown = sorted(set(data) - set(CLAIM_FIELDS))
    if unknown:  # a hub and a launcher of different versions: fail loudly, not by dropping what the hub meant
        raise ClaimRefused(403, f"the claim has unknown fields {', '.join(unknown)}")
    nonce, expires, server_key, env, args = (data[name] for name in CLAIM_FIELDS)
    if not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise ClaimRefused(403, "nonce must be 1-256 printable ASCII characters without spaces")
    if isinstance(expires, bool) or not isinstance(expires, (int, float)) or not math.isfinite(expires):
        raise ClaimRefused(403, "expires must be a number (epoch seconds)")
    if expires <= now:
        raise ClaimRefused(403, "the claim has expired")
    if not isinstance(server_key, str):
        raise ClaimRefused(403, "server_key must be a string")
    if not isinstance(env, dict):
        raise ClaimRefused(403, "env must be an object of strings")
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ClaimRefused(403, "env holds a name that is not an environment variable name")
        if name.startswith(ENV_PREFIX):
            raise ClaimRefused(403, f"env may not set {ENV_PREFIX}* variables")
        if not isinstance(value, str) or "\0" in value:
            raise ClaimRefused(403, "env values must be strings without NUL")
    if not isinstance(args, list) or not all(isinstance(arg, str) and "\0" not in arg for arg in args):
        raise ClaimRefused(403, "args must be a list of strings without NUL")
    return Claim(nonce=nonce, expires=float(expires), server_key=server_key, env=dict(env), args=list(args))


def open_claim(fernet: Any, token: bytes, ttl: float, now: float) -> Claim:
    """Check a sealed claim (key, age, then content); raises ClaimRefused(403)."""
    from cryptography.fernet import InvalidToken

    try:
        plaintext = fernet.decrypt_at_time(token.strip(), math.ceil(ttl), int(now))
    except InvalidToken:
        try:
            fernet.extract_timestamp(token.strip())
        except InvalidToken:
            raise ClaimRefused(403, "not a claim sealed with this slot's key") from None
        raise ClaimRefused(403, "the sealed claim is too old (or from the future)") from None
    return parse_claim(plaintext, now)


class Slot:
    """The launcher's state: usable or not (and why), and the one claim it accepts."""

    def __init__(self, fernet: Any | None, claim_ttl: float, problem: str | None) -> None:
        self.fernet = fernet
        self.claim_ttl = claim_ttl
        self.problem = problem
        self.claim: Claim | None = None
        self.claimed_at: float | None = None  # time.monotonic() of the 202

    def answer(self, method: str, path: str, body: bytes | None) -> tuple[int, str, str]:
        """(status, content type, body) for a request; ``body`` is None when the request had none."""
        if self.problem is not None:
            return 503, "text/plain", f"slot not usable: {self.problem}\n"
        if self.claim is not None:
            if path == CLAIM_PATH:
                return 409, "text/plain", "this slot is already claimed\n"
            return 503, "text/plain", "claimed: the server is starting\n"
        if path == READY_PATH:
            if method not in ("GET", "HEAD"):
                return 405, "text/plain", "use GET\n"
            return 200, "text/plain", "ready\n"
        if path == CLAIM_PATH:
            if method != "POST":
                return 405, "text/plain", "use POST\n"
            return self.accept(body or b"")
        return 404, "text/plain", "not found\n"

    def accept(self, token: bytes, now: float | None = None) -> tuple[int, str, str]:
        assert self.fernet is not None
        try:
            claim = open_claim(self.fernet, token, self.claim_ttl, time.time() if now is None else now)
        except ClaimRefused as refused:
            log(f"claim refused ({refused.status}): {refused.reason}")
            return refused.status, "text/plain", refused.reason + "\n"
        self.claim, self.claimed_at = claim, time.monotonic()
        self.fernet = None  # no other claim will ever be opened
        log(f"claim accepted: nonce {claim.nonce}")
        return 202, "application/json", json.dumps({"accepted": claim.nonce})


# ---- HTTP -------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """One request per connection, answered by the Slot."""

    protocol_version = "HTTP/1.1"
    timeout = CLIENT_TIMEOUT
    server: SlotServer

    def version_string(self) -> str:
        return "aca-slot-launcher"  # not the Python version: nothing to tell a prober

    def _serve(self) -> None:
        path = self.path.split("?", 1)[0]
        self.close_connection = True  # one thread: a kept-alive connection would hold every other client off
        if self.headers.get("Transfer-Encoding"):
            self._send(411, "text/plain", "send a Content-Length\n")
            return
        raw_length = self.headers.get("Content-Length")
        length = 0
        if raw_length is not None:
            if not raw_length.strip().isdigit():
                self._send(400, "text/plain", "bad Content-Length\n")
                return
            length = int(raw_length)
        if length > MAX_BODY:
            self._drain(length)
            self._send(413, "text/plain", f"the body is over {MAX_BODY} bytes\n")
            return
        body = self._read(length) if raw_length is not None else None
        if body is None and raw_length is not None:
            return  # the client went away or was too slow
        self._send(*self.server.slot.answer(self.command, path, body))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def handle_expect_100(self) -> bool:
        # a client that asks first is told before it sends an oversized body
        length = self.headers.get("Content-Length", "")
        if length.strip().isdigit() and int(length) > MAX_BODY:
            self.close_connection = True
            self._send(413, "text/plain", f"the body is over {MAX_BODY} bytes\n")
            return False
        return super().handle_expect_100()

    def _read(self, length: int) -> bytes | None:
        """``length`` bytes of body, or None when the client does not send them within CLIENT_TIMEOUT."""
        deadline = time.monotonic() + CLIENT_TIMEOUT
        chunks, left = [], length
        try:
            while left > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    return None
                chunks.append(chunk)
                left -= len(chunk)
        except OSError:
            return None
        return b"".join(chunks)

    def _drain(self, length: int) -> None:
        # closing a socket with unread data resets it, and the client would see the reset, not the 413
        deadline = time.monotonic() + CLIENT_TIMEOUT
        left = min(length, DRAIN_LIMIT)
        try:
            while left > 0 and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _send(self, status: int, content_type: str, text: str) -> None:
        data = text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:
            pass  # the client went away

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        if not (path == READY_PATH and code == 200):  # probes would flood the log
            log(f"{self.command} {path[:100]} {code}")

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log("HTTP: " + (format % args)[:200])


class SlotServer(HTTPServer):
    """A one-thread HTTP server of a Slot."""

    def __init__(self, address: tuple[str, int], slot: Slot) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.slot = slot
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # not HTTPServer.server_bind: it asks DNS for the host's name (socket.getfqdn), seconds in a container
        # without DNS
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


def home_ready(home: str) -> bool:
    """True once the user's home folder is in the slot: a directory moved there (a symlink is not a home)."""
    return os.path.isdir(home) and not os.path.islink(home)


def serve_until_claimed(slot: Slot, host: str, port: int, home: str, home_wait: float) -> Claim:
    """Answer requests until a claim is accepted and its home folder is there; exits when the home never comes."""
    try:
        server = SlotServer((host, port), slot)
    except OSError as exc:
        log(f"cannot listen on {host}:{port} ({exc}); exiting")
        raise SystemExit(EXIT_CANNOT_LISTEN) from None
    log(f"listening on {host}:{port}" + (f"; not usable: {slot.problem}" if slot.problem else "; ready"))
    try:
        while True:
            server.timeout = None if slot.claim is None else HOME_POLL  # no wake-ups while idle
            server.handle_request()
            if slot.claim is None:
                continue
            assert slot.claimed_at is not None
            waited = time.monotonic() - slot.claimed_at
            if home_ready(home):
                log(f"home folder found {waited:.2f} s after the claim")
                return slot.claim
            if waited > home_wait:
                log(f"the home folder {home} did not appear within {home_wait:g} s of the claim; exiting")
                raise SystemExit(EXIT_NO_HOME)
    finally:
        server.server_close()
