"""Pure builders for what the spawner sends: the server spec and the lifecycle request.

Nothing here touches JupyterHub, the network or the clock, so the rules that
matter for security and routing (the API token only ever in ``secret_env``,
the origin fix on the single-user command line, a safe home folder per user)
are plain functions with plain inputs, easy to test on their own.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Iterable, Mapping
from urllib.parse import urlparse

from . import naming
from .contract import Op, Request, ServerSpec, Volume

#: environment variables through which JupyterHub hands a server its API token
TOKEN_ENV_NAMES = frozenset({"JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"})

HOME_VOLUME = "home"
_MEMORY = re.compile(r"^(?:\d+(?:\.\d+)?|\.\d+)Gi$")


def next_generation(current: int, *seen: int, now: float | None = None) -> int:
    """A generation newer than ``current`` and every generation in ``seen``.

    Generations are milliseconds since the epoch, so they stay monotonic even
    when the spawner's saved state was lost (a fresh ``0`` still beats the
    generation of whatever the table holds from an earlier run).
    """
    now_ms = int((time.time() if now is None else now) * 1000)
    return max(current + 1, now_ms, *(s + 1 for s in seen))


def home_sub_path(user_name: str) -> str:
    """The home folder the spawner names in a request: the functions check it and choose the folder themselves.

    It is the name homes always had (:func:`~acaspawner.naming.legacy_home_folder`), so
    functions of an earlier release, which mount what the request names, keep
    mounting the folder users already have. Current functions mount the user's
    own folder by their own rule and refuse any other name.
    """
    return naming.legacy_home_folder(user_name)


def split_env(env: Mapping[str, object], api_token: str) -> tuple[dict[str, str], dict[str, str]]:
    """Split the server's environment into plain variables and secret ones.

    The JupyterHub API token (under its known names, or under any name whose
    value carries it) must only reach the container as an ACA secret
    referenced with ``secretRef``, never as a plain variable that anyone who
    may read the app's definition can see. ``None`` values are dropped.
    """
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for name, value in env.items():
        if value is None:
            continue
        text = str(value)
        if name in TOKEN_ENV_NAMES or (api_token and api_token in text):
            secret[name] = text
        else:
            plain[name] = text
    return plain, secret


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, or ``""`` when it is not an absolute http(s) URL."""
    parsed = urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return ""
    return f"{parsed.scheme}://{parsed.netloc}"


def as_served(url: str, base_url: str) -> str:
    """``url`` (a server's address) as JupyterHub's ``Server.url`` writes it: ``scheme://host:port`` and the
    server's prefix ``base_url``; ``url`` as it is when it is no absolute http(s) URL or there is no prefix."""
    parsed = urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not base_url:
        return url
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.scheme}://{parsed.hostname}:{port}{base_url}"


def _cli_value(value: str) -> str:
    """Quote values that traitlets would otherwise parse as Python literals (as JupyterHub does)."""
    try:
        ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value
    return repr(value)


def singleuser_args(args: Iterable[str], *, ip: str, port: int, allow_origin: str) -> list[str]:
    """The single-user server's arguments: the admin's ``args`` plus bind address and origin fix.

    Behind configurable-http-proxy with ``--change-origin`` the server sees
    ``Host: <app fqdn>`` but ``Origin: <hub public URL>``; without
    ``allow_origin`` jupyter_server blocks every API call as cross-origin.
    Our flags come last so they win over conflicting ones in ``args``.
    """
    result = [str(a) for a in args]
    result += [f"--ip={_cli_value(ip)}", f"--port={int(port)}"]
    if allow_origin:
        result.append(f"--ServerApp.allow_origin={_cli_value(allow_origin)}")
    return result


def validate_memory(memory: str) -> str:
    """``memory`` if it is an ACA memory size such as ``"2Gi"`` or ``"0.5Gi"``; ``ValueError`` otherwise."""
    if not isinstance(memory, str) or not _MEMORY.match(memory):
        raise ValueError(f"memory must look like '2Gi' or '0.5Gi', not {memory!r}")
    return memory


def validate_cpu(cpu: object) -> float:
    """``cpu`` as a float if it is a positive number of cores; ``ValueError`` otherwise."""
    if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or not cpu > 0:
        raise ValueError(f"cpu must be a positive number of cores, not {cpu!r}")
    return float(cpu)


def home_volume(storage_name: str, mount_path: str, user_name: str, mount_options: str = "") -> Volume:
    """The persistent home: the user's own folder of the one shared Azure Files storage."""
    return Volume(
        name=HOME_VOLUME,
        storage_name=storage_name,
        mount_path=mount_path,
        sub_path=home_sub_path(user_name),
        storage_type="AzureFile",
        mount_options=mount_options,
    )


def build_spec(
    *,
    image: str,
    cpu: float,
    memory: str,
    port: int,
    cmd: Iterable[str],
    args: Iterable[str],
    env: Mapping[str, object],
    api_token: str,
    ip: str,
    allow_origin: str,
    volumes: Iterable[Volume] = (),
    workload_profile: str = "",
) -> ServerSpec:
    """The container app's spec for one server, validated against the contract."""
    plain, secret = split_env(env, api_token)
    spec = ServerSpec(
        image=image,
        cpu=validate_cpu(cpu),
        memory=validate_memory(memory),
        target_port=int(port),
        command=[str(c) for c in cmd],
        args=singleuser_args(args, ip=ip, port=port, allow_origin=allow_origin),
        env=plain,
        secret_env=secret,
        volumes=list(volumes),
        workload_profile=workload_profile,
    )
    spec.validate()
    return spec


def delete_spec(image: str, volumes: Iterable[Volume]) -> ServerSpec | None:
    """What a ``delete`` carries: only the volumes whose folders the functions may remove (no env, no token).

    ``None`` when there is nothing to name: the functions then remove the app only.
    """
    volumes = list(volumes)
    if not volumes:
        return None
    spec = ServerSpec(image=image, volumes=volumes)
    spec.validate()
    return spec


def build_request(
    op: Op | str,
    *,
    hub_id: str,
    server_key: str,
    user: str,
    server_name: str,
    generation: int,
    spec: ServerSpec | None = None,
) -> Request:
    """One lifecycle request; ``spec`` for ``start`` (the server) and ``delete`` (the folders to remove)."""
    op = Op(op)
    return Request(
        op=op,
        hub_id=hub_id,
        server_key=server_key,
        user=user,
        server_name=server_name,
        generation=generation,
        spec=spec if op in (Op.START, Op.DELETE) else None,
    )
