"""The launcher of a warm slot: a container app that becomes one user's ``jupyterhub-singleuser`` on a claim.

This file is shipped on its own (as a file of the slot's Secret volume) and run
by the image's Python, so it imports only the standard library, ``cryptography``
and, at run time, the image's Jupyter stack; nothing of this repository.

Protocol:

* Environment: ``ACA_SLOT_KEY`` (the slot's Fernet key), ``ACA_SLOT_DIR`` (where
  the slot's volume is mounted), ``PORT`` (default 8888), ``ACA_SLOT_CLAIM_TTL``
  (seconds a sealed claim stays valid, default 120), ``ACA_SLOT_HOME_WAIT``
  (seconds to wait for the home folder after a claim, default 120) and
  ``ACA_SLOT_HOST`` (the address to listen on, default ``0.0.0.0``). Every
  ``ACA_SLOT_*`` variable is taken out of the environment at start, before
  anything else runs.
* Start-up: with ``HOME`` already the home to come (``$ACA_SLOT_DIR/home``,
  which must not exist yet), pre-import ``jupyterhub.singleuser``,
  ``jupyter_server.serverapp``, the server's service handlers and every
  enabled Jupyter server extension, then listen. Without the Jupyter stack or
  ``cryptography``, with a bad setting, or with a home already there (a slot
  claimed before), it still listens and answers every request 503 with the
  reason.
* ``GET /slot/ready``: 200 ``ready``. Other paths: 404 until a claim.
* ``POST /slot/claim``: a Fernet token (slot key, TTL ``ACA_SLOT_CLAIM_TTL``)
  of JSON ``{"nonce", "expires", "server_key", "env", "args"}``. 202
  ``{"accepted": nonce}`` for the first valid one; 403 (a short reason) for a
  forged, expired or malformed one; 409 once a claim was accepted; 413 above
  1 MiB.
* After the 202 it waits up to ``ACA_SLOT_HOME_WAIT`` seconds for
  ``$ACA_SLOT_DIR/home`` to be a directory (moved there by a rename; never
  created here), still answering: claims 409, everything else 503, so that a
  hub polling the server's URL does not take the launcher for the server. No
  home in time: exit 3. Then it stops listening and becomes
  ``jupyterhub-singleuser`` in this process: the environment without
  ``ACA_SLOT_*`` plus the claim's ``env``, ``HOME`` and working directory the
  home, ``sys.argv = ["jupyterhub-singleuser", *args, --ip=<host>, --port=<port>]``
  (any ``--ip``/``--port`` of the claim's args dropped: traitlets refuses an
  option given twice).
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import math
import os
import re
import site
import socket
import socketserver
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

ENV_PREFIX = "ACA_SLOT_"
READY_PATH = "/slot/ready"
CLAIM_PATH = "/slot/claim"
MAX_BODY = 1024 * 1024
CLAIM_FIELDS = ("nonce", "expires", "server_key", "env", "args")
DEFAULT_PORT = 8888
DEFAULT_HOST = "0.0.0.0"
DEFAULT_CLAIM_TTL = 120.0
DEFAULT_HOME_WAIT = 120.0
EXIT_CANNOT_LISTEN = 2
EXIT_NO_HOME = 3
# what the server needs; without them the slot is useless
REQUIRED_MODULES = ("jupyterhub.singleuser", "jupyter_server.serverapp")
# imported by every start of jupyterhub-singleuser (JupyterHub 6.1, jupyter_server 2.21, JupyterLab 4.6) but not by
# the modules above, nor by the server's service handlers and the enabled extensions (which preimport() finds itself);
# measured by comparing sys.modules before the claim and once the server answers
OPTIONAL_MODULES = (
    "jupyterhub.singleuser.extension",
    "jupyter_client.kernelspec",
    "IPython.paths",  # jupyter_client's KernelSpecManager looks for IPython's kernel folder
    "jupyter_core.migrate",
    "tornado.platform.asyncio",
    "jinja2.ext",
    "httpcore",  # JupyterLab's extension manager makes an httpx client at start
    "jupyterlab.labapp",
)
# the server's address options (their aliases, and the classes they set, as ServerApp and NotebookApp name them)
ADDRESS_OPTIONS = frozenset({"--ip", "--port", "--ServerApp.ip", "--ServerApp.port", "--NotebookApp.ip",
                             "--NotebookApp.port"})
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


class Unusable(Exception):
    """Why this slot cannot serve: every request is answered 503 with this one-line reason."""


class ClaimRefused(Exception):
    """A claim the launcher refuses: ``status`` and a short reason (never the body)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Settings:
    """What the launcher was told by its ``ACA_SLOT_*`` variables and ``PORT``."""

    slot_dir: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    claim_ttl: float = DEFAULT_CLAIM_TTL
    home_wait: float = DEFAULT_HOME_WAIT

    @property
    def home(self) -> str:
        return os.path.join(self.slot_dir, "home")


@dataclass(frozen=True)
class Claim:
    """An accepted claim: the user's server, as the hub's spawner describes it."""

    nonce: str
    expires: float
    server_key: str
    env: dict[str, str] = field(repr=False)  # holds the user's API token: never logged
    args: list[str] = field(repr=False)


# ---- start-up ---------------------------------------------------------------------------------------------


def take_slot_environment(environ: MutableMapping[str, str]) -> dict[str, str]:
    """Remove every ``ACA_SLOT_*`` variable from ``environ`` and return them: the key must not reach user code."""
    return {name: environ.pop(name) for name in [n for n in environ if n.startswith(ENV_PREFIX)]}


def scrub_environ_block(prefix: bytes = ENV_PREFIX.encode()) -> int:
    """Overwrite the ``prefix`` entries of this process's initial environment block; how many were overwritten.

    Taking a variable out of ``os.environ`` (``unsetenv``) leaves its text in
    the block the kernel set up at ``exec``, and ``/proc/<pid>/environ`` shows
    that block to every process of the same user: the user's kernels, here.
    Linux only; elsewhere nothing is done. Call it after the variables left
    ``os.environ``, so that nothing points into what it overwrites.
    """
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end: fields 50 and 51 of proc(5)
        with open("/proc/self/environ", "rb") as block_file:
            block = block_file.read()
    except (OSError, IndexError, ValueError):
        return 0
    if end - start != len(block) or ctypes.string_at(start, len(block)) != block:
        return 0  # not the layout proc(5) describes: leave the memory alone
    scrubbed, offset = 0, 0
    for entry in block.split(b"\0"):
        if entry.startswith(prefix):
            ctypes.memset(start + offset, 0, len(entry))
            scrubbed += 1
        offset += len(entry) + 1
    return scrubbed


def _seconds(slot_env: dict[str, str], name: str, default: float) -> float:
    raw = slot_env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise Unusable(f"{name} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise Unusable(f"{name} must be a positive number of seconds")
    return value


def read_settings(slot_env: dict[str, str], environ: MutableMapping[str, str]) -> Settings:
    """Settings from the ``ACA_SLOT_*`` variables (as taken out) and ``PORT``; raises Unusable."""
    raw_port = environ.get("PORT", "").strip() or str(DEFAULT_PORT)
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise Unusable("PORT is not a TCP port")
    slot_dir = slot_env.get("ACA_SLOT_DIR", "")
    if not slot_dir:
        raise Unusable("ACA_SLOT_DIR is not set")
    return Settings(
        slot_dir=os.path.abspath(slot_dir),
        host=slot_env.get("ACA_SLOT_HOST", "").strip() or DEFAULT_HOST,
        port=int(raw_port),
        claim_ttl=_seconds(slot_env, "ACA_SLOT_CLAIM_TTL", DEFAULT_CLAIM_TTL),
        home_wait=_seconds(slot_env, "ACA_SLOT_HOME_WAIT", DEFAULT_HOME_WAIT),
    )


def make_fernet(key: str) -> Any:
    """The slot key as a ``cryptography`` Fernet; raises Unusable (the reason never holds the key)."""
    try:
        from cryptography.fernet import Fernet
    except ImportError as exc:
        raise Unusable(f"cannot import cryptography ({exc})") from None
    if not key:
        raise Unusable("ACA_SLOT_KEY is not set")
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError):
        raise Unusable("ACA_SLOT_KEY is not a Fernet key (urlsafe base64 of 32 bytes)") from None


def server_extensions() -> list[str]:
    """The Jupyter server extensions this image enables, found as ``ServerApp.find_server_extensions`` finds them.

    Only the image's own configuration is known before the claim: a user's
    ``~/.jupyter`` arrives with the home, and its extensions load at start.
    """
    paths = importlib.import_module("jupyter_core.paths")  # the image's, by name: never a dependency of this file
    config = importlib.import_module("jupyter_server.extension.config")
    found = config.ExtensionConfigManager(read_config_path=paths.jupyter_config_path()).get_jpserver_extensions()
    return sorted(name for name, enabled in found.items() if enabled)


def _service_handlers() -> list[str]:
    """The modules of jupyter_server's services, which the server imports when it sets its handlers up."""
    serverapp = sys.modules["jupyter_server.serverapp"]
    table = getattr(serverapp, "JUPYTER_SERVICE_HANDLERS", {})
    return [module for modules in table.values() for module in modules or ()]


def preimport() -> None:
    """Import what ``jupyterhub-singleuser`` imports when it starts, so that a claim finds it loaded; raises Unusable.

    Each enabled server extension's ``_jupyter_server_extension_points`` is
    called too: that is where extensions such as JupyterLab import their app.
    """
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an image without the stack, or a broken one: the reason is the answer
            raise Unusable(f"cannot import {name} ({type(exc).__name__}: {exc})") from None
    missing = []
    for name in (*OPTIONAL_MODULES, *_service_handlers()):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: PERF203 - an image may lack any of them; the server then does not need it
            missing.append(name)
    try:
        extensions = server_extensions()
    except Exception as exc:
        log(f"cannot list the server extensions ({type(exc).__name__}: {exc}); they load at start")
        extensions = []
    for name in extensions:
        try:
            module = importlib.import_module(name)
            points = getattr(module, "_jupyter_server_extension_points", None) or getattr(
                module, "_jupyter_server_extension_paths", None)
            if points is not None:
                for point in points():
                    importlib.import_module(point["module"])
        except Exception as exc:
            missing.append(f"{name} ({type(exc).__name__})")
    # what was imported lives as long as the process: out of the collector's sight, a full collection during the
    # server's start walks only what the start makes (measured: ~0.2 s of the claim's start on 2 cores otherwise)
    gc.collect()
    gc.freeze()
    log(f"pre-imported {len(sys.modules)} modules; server extensions: {', '.join(extensions) or 'none'}"
        + (f"; not available: {', '.join(missing)}" if missing else ""))


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

    def __init__(self, settings: Settings | None, fernet: Any | None, problem: str | None) -> None:
        self.settings = settings
        self.fernet = fernet
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
        assert self.settings is not None and self.fernet is not None
        try:
            claim = open_claim(self.fernet, token, self.settings.claim_ttl, time.time() if now is None else now)
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


def home_ready(settings: Settings) -> bool:
    """True once the user's home folder is in the slot: a directory moved there (a symlink is not a home)."""
    return os.path.isdir(settings.home) and not os.path.islink(settings.home)


def serve_until_claimed(slot: Slot, host: str, port: int) -> Claim:
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
            assert slot.settings is not None and slot.claimed_at is not None
            waited = time.monotonic() - slot.claimed_at
            if home_ready(slot.settings):
                log(f"home folder found {waited:.2f} s after the claim")
                return slot.claim
            if waited > slot.settings.home_wait:
                log(f"the home folder {slot.settings.home} did not appear within {slot.settings.home_wait:g} s "
                    "of the claim; exiting")
                raise SystemExit(EXIT_NO_HOME)
    finally:
        server.server_close()


# ---- becoming the server ----------------------------------------------------------------------------------


def adopt_user_site() -> None:
    """Put the new ``HOME``'s user site-packages on ``sys.path``, as a Python started there would.

    ``site`` computed it from the launcher's ``HOME`` at start; packages a user
    installed with ``pip install --user`` live in the home that just arrived.
    """
    old = site.USER_SITE
    site.USER_BASE = site.USER_SITE = None  # recomputed from HOME by getusersitepackages()
    new = site.getusersitepackages()
    if old and old != new and old in sys.path:
        sys.path.remove(old)
    if site.ENABLE_USER_SITE and os.path.isdir(new) and new not in sys.path:
        before = len(sys.path)
        site.addsitedir(new)
        added = sys.path[before:]
        del sys.path[before:]
        # before the image's site-packages, where a start in the home would have put it
        at = next((i for i, p in enumerate(sys.path) if os.path.basename(p) in ("site-packages", "dist-packages")),
                  len(sys.path))
        sys.path[at:at] = added
    importlib.invalidate_caches()


def server_environment(current: dict[str, str], claim: Claim, home: str) -> dict[str, str]:
    """The single-user server's environment: ``current`` without ``ACA_SLOT_*``, the claim's env, HOME the home."""
    env = {name: value for name, value in current.items() if not name.startswith(ENV_PREFIX)}
    env.update(claim.env)
    env["HOME"] = home
    return env


def server_argv(claim: Claim, host: str, port: int) -> list[str]:
    """``sys.argv`` of the server: the claim's args without any address of their own, then the launcher's address.

    The slot's address is the one its ingress targets. Naming it last is not
    enough: traitlets refuses an option given twice ("port only accepts one
    value"), so the claim's ``--ip``/``--port`` (in any spelling) are dropped.
    """
    kept: list[str] = []
    value_follows = False
    for arg in claim.args:
        if value_follows:
            value_follows = False
            continue
        name, has_value, _ = arg.partition("=")
        if name in ADDRESS_OPTIONS:
            value_follows = not has_value
            continue
        kept.append(arg)
    return ["jupyterhub-singleuser", *kept, f"--ip={host}", f"--port={port}"]


def become_server(claim: Claim, settings: Settings) -> int:
    """Turn this process into the claim's ``jupyterhub-singleuser`` (what its console script does); its exit code."""
    env = server_environment(dict(os.environ), claim, settings.home)
    for name in [n for n in os.environ if n not in env]:
        del os.environ[name]
    os.environ.update(env)
    os.chdir(settings.home)
    adopt_user_site()
    sys.argv = server_argv(claim, settings.host, settings.port)
    # jupyterhub.singleuser picks extension or app from JUPYTERHUB_SINGLEUSER_* when imported: the claim's env decides
    singleuser = importlib.reload(sys.modules["jupyterhub.singleuser"])
    log(f"starting jupyterhub-singleuser on {settings.host}:{settings.port} (nonce {claim.nonce})")
    return singleuser.main() or 0


def prepare_home(settings: Settings) -> None:
    """Check the slot's folder and make ``HOME`` the home to come, before anything is imported; raises Unusable.

    Modules compute paths from ``HOME`` when imported (JupyterLab's settings
    and workspaces folders are class defaults, for one): imported with the
    launcher's own ``HOME`` they would point the user's server elsewhere.
    """
    if not os.path.isdir(settings.slot_dir):
        raise Unusable(f"ACA_SLOT_DIR {settings.slot_dir} is not a directory")
    if os.path.lexists(settings.home):
        # a fresh slot has no home: this one served a user before (a restarted replica) and is not claimable again
        raise Unusable(f"{settings.home} exists already: this slot was claimed before")
    os.environ["HOME"] = settings.home


def main() -> int:
    """Run the launcher: pre-import, serve until claimed, become the server."""
    started = time.monotonic()
    slot_env = take_slot_environment(os.environ)
    scrubbed = scrub_environ_block()
    log(f"started (pid {os.getpid()}); {len(slot_env)} {ENV_PREFIX}* variables taken out of the environment"
        + (f", {scrubbed} overwritten in its initial block" if scrubbed else ""))
    settings: Settings | None = None
    fernet = None
    problem: str | None = None
    # where an unusable slot still listens, to say why
    host = slot_env.get("ACA_SLOT_HOST", "").strip() or DEFAULT_HOST
    port = _port_or_default(os.environ.get("PORT", ""))
    try:
        settings = read_settings(slot_env, os.environ)
        fernet = make_fernet(slot_env.get("ACA_SLOT_KEY", ""))
        prepare_home(settings)
        preimport()
        if os.path.lexists(settings.home):
            raise Unusable(f"importing the Jupyter stack created {settings.home}: the home cannot be moved there")
    except Unusable as unusable:
        problem = str(unusable)
        log(f"not usable: {problem}")
    slot_env.clear()
    if problem is None:
        log(f"pre-import done in {time.monotonic() - started:.2f} s")
    slot = Slot(settings, fernet, problem)
    del fernet
    claim = serve_until_claimed(slot, host, port)
    assert settings is not None
    return become_server(claim, settings)


def _port_or_default(raw: str) -> int:
    # an unusable slot still listens, to say why: on PORT if it is one, else on the default port
    raw = raw.strip()
    return int(raw) if raw.isdigit() and 0 < int(raw) < 65536 else DEFAULT_PORT


if __name__ == "__main__":
    sys.exit(main())
