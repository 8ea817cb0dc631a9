"""The launcher of a warm slot: a container app that becomes one user's ``jupyterhub-singleuser`` on a claim.

This file and its claim endpoint (:mod:`functions.slot_claims`) are shipped on
their own (two files of the slot's Secret volume) and run by the image's Python,
so they import only the standard library, ``cryptography``, each other and, at
run time, the image's Jupyter stack; nothing else of this repository.

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
import math
import os
import site
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

if __package__:  # functions.slot_launcher: in the functions app and its tests
    from .slot_claims import ENV_PREFIX, Claim, Slot, log, serve_until_claimed
else:  # the slot's command: the file run on its own, its sibling shipped beside it
    _HERE = os.path.dirname(os.path.abspath(__file__))
    if "slot_claims" not in sys.modules and _HERE not in sys.path:
        sys.path.insert(0, _HERE)  # what Python does for a script, unless told not to (-P, PYTHONSAFEPATH)
    from slot_claims import ENV_PREFIX, Claim, Slot, log, serve_until_claimed

DEFAULT_PORT = 8888
DEFAULT_HOST = "0.0.0.0"
DEFAULT_CLAIM_TTL = 120.0
DEFAULT_HOME_WAIT = 120.0
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


class Unusable(Exception):
    """Why this slot cannot serve: every request is answered 503 with this one-line reason."""


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
    slot = Slot(fernet, settings.claim_ttl if settings else DEFAULT_CLAIM_TTL, problem)
    del fernet
    home, home_wait = (settings.home, settings.home_wait) if settings else ("", DEFAULT_HOME_WAIT)
    claim = serve_until_claimed(slot, host, port, home, home_wait)
    assert settings is not None
    return become_server(claim, settings)


def _port_or_default(raw: str) -> int:
    # an unusable slot still listens, to say why: on PORT if it is one, else on the default port
    raw = raw.strip()
    return int(raw) if raw.isdigit() and 0 < int(raw) < 65536 else DEFAULT_PORT


if __name__ == "__main__":
    sys.exit(main())
