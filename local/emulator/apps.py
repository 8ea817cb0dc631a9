"""Container apps as local processes.

A container becomes a process in its own process group (so stop/delete can end it and every
child), started from a *launch* computed from the container template:

* **argv** — Docker semantics: the template's ``command`` replaces the image's entrypoint, and
  ``args`` follow. The image's own entrypoint is unknown locally, so an image map says what an
  image stands for: the first :class:`ImageRule` whose glob matches the image supplies a command
  prefix, an ``entrypoint`` used when the template has no ``command``, directories put first on
  ``PATH`` and extra env. By default ``quay.io/jupyter/*`` and ``jupyter/*`` map to
  ``jupyterhub-singleuser`` with this interpreter's ``bin`` directory on ``PATH``, and every
  other image runs the template's command and args with that same ``PATH``.
* **env** — a small allow-list of the host environment (``PATH``, locale, ...), ``HOME`` set to
  the replica's own directory (also the working directory; gone when the replica stops, like a
  container's file system) or, when a volume is mounted at the image's home, to that volume's
  local directory (:mod:`.volumes`), then the template's env with every ``secretRef`` resolved
  from the app's secrets and mount paths rewritten to their local directories.
* **ports** — in a container the app binds ``targetPort`` in its own network namespace; here it
  gets a free loopback port instead, and the launch is rewritten as a container network would
  make it look: ``PORT`` is set, and the target port is replaced in args (``--port=8888``,
  ``--ServerApp.port=8888``, ``--port 8888``, a bare ``8888``, ``0.0.0.0:8888``) and in env values
  (``JUPYTERHUB_SERVICE_URL=http://0.0.0.0:8888/user/x/``, ``JUPYTER_PORT=8888``). Bind-all
  addresses (``0.0.0.0``, ``::``) become ``127.0.0.1``: a laptop is not a network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .volumes import Mount, local_path, rewrite_paths

VENV_BIN = str(Path(sys.executable).parent)
JUPYTER_CONFIG = Path(__file__).resolve().parent / "jupyter_config"
BIND_HOST = "127.0.0.1"
JUPYTER_HOME = "/home/jovyan"  # the Jupyter images' user and working directory
INHERITED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM")

_BIND_ALL = {"0.0.0.0", "::", "[::]", "*", ""}
_LOCAL_HOSTS = _BIND_ALL | {"127.0.0.1", "localhost", "[::1]"}
_URL = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://)(?P<host>\[[0-9A-Fa-f:]*\]|[^/:@\s\[\]]*):(?P<port>\d+)(?=$|[/?#])")
_HOST_PORT = re.compile(r"^(?P<pre>(?:[^=]*=)?)(?P<host>\[[0-9A-Fa-f:]*\]|0\.0\.0\.0|127\.0\.0\.1|localhost|\*|):(?P<port>\d+)$")
_PORT_OPTION = re.compile(r"^(?P<pre>--?[\w.-]*port[=:])(?P<port>\d+)$", re.IGNORECASE)
_BIND_OPTION = re.compile(
    r"^(?P<pre>--?[\w.-]*(?:ip|host|bind|address|addr|listen)=)(?P<host>0\.0\.0\.0|::|\[::\]|\*|''|\"\")?$",
    re.IGNORECASE,
)


@dataclass
class ImageRule:
    """What an image stands for locally (first matching ``pattern`` wins)."""

    pattern: str  # fnmatch glob on the image reference, e.g. "quay.io/jupyter/*"
    prefix: list[str] = field(default_factory=list)  # put before the whole argv (e.g. a wrapper)
    entrypoint: list[str] = field(default_factory=list)  # the image's ENTRYPOINT/CMD when the template has no command
    path: list[str] = field(default_factory=list)  # directories put first on PATH
    env: dict[str, str] = field(default_factory=dict)  # env the image would carry
    home: str = ""  # the image's HOME and WORKDIR: a volume mounted there becomes both

    def matches(self, image: str) -> bool:
        return fnmatch.fnmatchcase(image, self.pattern)


def default_image_map() -> list[ImageRule]:
    """Jupyter images run ``jupyterhub-singleuser`` from this interpreter's environment; anything else
    runs the template command, also with this environment's ``bin`` first on ``PATH``."""
    jupyter: dict[str, Any] = {"entrypoint": ["jupyterhub-singleuser"], "path": [VENV_BIN], "home": JUPYTER_HOME}
    if os.geteuid() == 0:
        # Jupyter images run as jovyan; a local process run by root needs jupyter_server's allow_root
        jupyter["env"] = {"JUPYTER_CONFIG_PATH": str(JUPYTER_CONFIG)}
    return [
        ImageRule("quay.io/jupyter/*", **jupyter),
        ImageRule("jupyter/*", **jupyter),
        ImageRule("*", path=[VENV_BIN]),
    ]


def image_rules(image_map: Mapping[str, str | Sequence[str]] | Iterable[ImageRule] | None) -> list[ImageRule]:
    """User rules before the defaults. ``{glob: prefix}`` (prefix a list or a shell string) keeps the
    default rule's entrypoint and ``PATH`` for that glob; ImageRules are taken as they are."""
    defaults = default_image_map()
    rules: list[ImageRule] = []
    if isinstance(image_map, Mapping):
        for pattern, prefix in image_map.items():
            argv = shlex.split(prefix) if isinstance(prefix, str) else list(prefix)
            base = match_rule(defaults, pattern)
            rules.append(ImageRule(pattern, prefix=argv, entrypoint=list(base.entrypoint), path=list(base.path),
                                   home=base.home))
    elif image_map is not None:
        rules.extend(image_map)
    return rules + defaults


def match_rule(rules: Sequence[ImageRule], image: str) -> ImageRule:
    return next((r for r in rules if r.matches(image)), ImageRule("*"))


def rewrite_value(value: str, target: int, local: int, bind_host: str = BIND_HOST) -> str:
    """Point URLs and ``host:port`` values that name the target port on a local/bind-all host at ``local``."""

    def url(m: re.Match[str]) -> str:
        host = m.group("host")
        if int(m.group("port")) != target or host.lower() not in _LOCAL_HOSTS:
            return m.group(0)
        return f"{m.group('pre')}{bind_host if host in _BIND_ALL else host}:{local}"

    value = _URL.sub(url, value)
    m = _HOST_PORT.match(value)
    if m and int(m.group("port")) == target:
        host = m.group("host")
        value = f"{m.group('pre')}{bind_host if host in _BIND_ALL else host}:{local}"
    return value


def rewrite_args(args: Sequence[str], target: int | None, local: int | None, bind_host: str = BIND_HOST) -> list[str]:
    """Args as the process must see them: target port → local port, bind-all → ``bind_host``."""
    out = []
    for arg in args:
        if arg in _BIND_ALL - {""}:
            arg = bind_host
        elif m := _BIND_OPTION.match(arg):
            arg = m.group("pre") + bind_host
        if target is not None and local is not None:
            if arg == str(target):
                arg = str(local)  # "--port 8888" or a positional port
            elif (m := _PORT_OPTION.match(arg)) and int(m.group("port")) == target:
                arg = f"{m.group('pre')}{local}"
            else:
                arg = rewrite_value(arg, target, local, bind_host)
        out.append(arg)
    return out


def rewrite_env(env: Mapping[str, str], target: int | None, local: int | None, bind_host: str = BIND_HOST) -> dict[str, str]:
    out = {}
    for name, value in env.items():
        if value in _BIND_ALL - {""} and re.search(r"(IP|HOST|BIND|ADDR)", name, re.IGNORECASE):
            value = bind_host
        if target is not None and local is not None:
            if value == str(target) and name.upper().endswith("PORT"):
                value = str(local)
            else:
                value = rewrite_value(value, target, local, bind_host)
        out[name] = value
    return out


@dataclass
class Launch:
    """Everything needed to start one container as a process."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


def build_launch(
    container: Mapping[str, Any],
    secrets: Mapping[str, str | None],
    rules: Sequence[ImageRule],
    home: Path,
    target_port: int | None,
    local_port: int | None,
    bind_host: str = BIND_HOST,
    mounts: Sequence[Mount] = (),
) -> Launch:
    """The argv, env and working directory that stand for ``container`` (see the module docstring).

    ``home`` is the container's own (ephemeral) home; a mount at the image's home replaces it.
    """
    rule = match_rule(rules, str(container.get("image", "")))
    command = list(container.get("command") or []) or list(rule.entrypoint)
    args = rewrite_args(command + list(container.get("args") or []), target_port, local_port, bind_host)
    argv = list(rule.prefix) + rewrite_paths(args, mounts)
    if not argv:
        raise ValueError(f"image {container.get('image')!r} has no command: set one or add an image map rule")
    home = (local_path(rule.home, mounts) if rule.home else None) or home

    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    env["PATH"] = os.pathsep.join([*rule.path, env.get("PATH", os.defpath)])
    env["HOME"] = str(home)
    env.update(rule.env)
    template_env: dict[str, str] = {}
    for var in container.get("env") or []:
        ref = var.get("secretRef")
        template_env[var["name"]] = (secrets.get(ref) or "") if ref else str(var.get("value") or "")
    rewritten = rewrite_env(template_env, target_port, local_port, bind_host)
    env.update(zip(rewritten, rewrite_paths(rewritten.values(), mounts), strict=True))
    if local_port is not None:
        env["PORT"] = str(local_port)
    return Launch(argv=argv, env=env, cwd=home)


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class AppProcess:
    """One replica: a process group whose output goes to ``log_path``; ``on_exit(code)`` fires if it
    ends without being asked to."""

    def __init__(self, launch: Launch, log_path: Path, on_exit: Callable[[int], None] | None = None) -> None:
        self.launch = launch
        self.log_path = log_path
        self.on_exit = on_exit
        self.proc: asyncio.subprocess.Process | None = None
        self.exit_code: int | None = None
        self._stopping = False
        self._watcher: asyncio.Task | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.exit_code is None

    async def start(self) -> None:
        with self._open_log() as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.launch.argv,
                env=self.launch.env,
                cwd=self.launch.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop ends the children too
            )
        self._watcher = asyncio.create_task(self._watch())

    def _open_log(self) -> BinaryIO:
        self.launch.cwd.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed by the caller once the child has it
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {shlex.join(self.launch.argv)}\n".encode())
        log.flush()
        return log

    async def _watch(self) -> None:
        assert self.proc is not None
        self.exit_code = await self.proc.wait()
        if not self._stopping and self.on_exit is not None:
            self.on_exit(self.exit_code)

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``grace`` seconds."""
        if self.proc is None:
            return
        self._stopping = True
        _kill_group(self.proc.pid, signal.SIGTERM)  # the group may outlive its leader
        if self._watcher is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._watcher), grace)
            except TimeoutError:
                pass
        _kill_group(self.proc.pid, signal.SIGKILL)
        if self._watcher is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._watcher), grace)

    def kill_now(self) -> None:
        """Synchronous last resort (interpreter exit): SIGKILL the group."""
        if self.proc is not None:
            self._stopping = True
            _kill_group(self.proc.pid, signal.SIGKILL)


async def wait_listening(
    port: int,
    within: float,
    processes: Sequence[AppProcess],
    cancelled: asyncio.Event | None = None,
    host: str = BIND_HOST,
) -> bool:
    """True once ``host:port`` accepts connections, False if ``cancelled`` is set first; raises when a
    process exits or ``within`` seconds pass (like ACA's default TCP startup probe on the target port)."""
    deadline = time.monotonic() + within
    while True:
        if cancelled is not None and cancelled.is_set():
            return False
        dead = next((p for p in processes if not p.running), None)
        if dead is not None:
            raise RuntimeError(f"the container exited with code {dead.exit_code} (log: {dead.log_path})")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (TimeoutError, OSError):
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"nothing listened on the target port within {within:g} s (log: {processes[0].log_path})"
                ) from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
