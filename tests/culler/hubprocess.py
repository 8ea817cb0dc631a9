"""A real JupyterHub (and its configurable-http-proxy) in subprocesses, for the culler tests.

Both run in their own process groups on free loopback ports and are killed
by group when the test ends. The hub uses :mod:`tinyspawner` (no real
servers), a dummy authenticator, SQLite in the test's temporary directory,
the ``aca-idle-culler`` service with exactly the documented scopes, and a
``test-admin`` service the test uses to create users, start servers and
set activity.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import requests
from waiting import wait_until

from acaspawner.culler_service import REQUIRED_SCOPES, SERVICE_NAME
from local.procs import NODE_BIN, ensure_node_tools, free_port, stop_process_group, wait_for_port

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 60.0


def q(name: str) -> str:
    return quote(name, safe="")


@dataclass
class RunningHub:
    """Handles on a running hub: its API URL, the two service tokens, an admin session."""

    api_url: str
    culler_token: str
    admin_token: str
    workdir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    admin: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.admin.headers["Authorization"] = f"token {self.admin_token}"

    # --- admin helpers (the test's own service, not the culler) ---------------------------------

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 202, 204), **kwargs) -> requests.Response:
        response = self.admin.request(method, self.api_url + path, timeout=30, **kwargs)
        assert response.status_code in ok, f"{method} {path}: {response.status_code} {response.text[:300]}"
        return response

    def create_users(self, names: list[str], admin: bool = False) -> list[str]:
        """Create users in one call; returns their names as the hub normalised them."""
        created = self.call("POST", "/users", json={"usernames": names, "admin": admin}).json()
        return [u["name"] for u in created]

    def start(self, user: str, server: str = "") -> None:
        path = f"/users/{q(user)}/servers/{q(server)}" if server else f"/users/{q(user)}/server"
        if self.call("POST", path, ok=(201, 202)).status_code == 202:  # 201: ready already
            self.wait_ready(user, server)

    def start_many(self, users: list[str], workers: int = 16) -> None:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(self.start, users))

    def server(self, user: str, server: str = "") -> dict | None:
        """The server model if the hub counts it as active (pending or ready), else ``None``."""
        model = self.call("GET", f"/users/{q(user)}").json()
        return model.get("servers", {}).get(server)

    def wait_ready(self, user: str, server: str = "", timeout: float = 30) -> None:
        wait_until(lambda: (self.server(user, server) or {}).get("ready"), timeout=timeout, interval=0.1,
                   what=f"{user}/{server} to be ready")

    def wait_stopped(self, user: str, server: str = "", timeout: float = 30) -> None:
        wait_until(lambda: self.server(user, server) is None, timeout=timeout, interval=0.1,
                   what=f"{user}/{server} to stop")

    def set_activity(self, user: str, when: datetime, servers: tuple[str, ...] = ("",)) -> None:
        """Record activity (the hub only ever moves it forward)."""
        stamp = when.isoformat().replace("+00:00", "Z")
        body = {"last_activity": stamp, "servers": {s: {"last_activity": stamp} for s in servers}}
        self.call("POST", f"/users/{q(user)}/activity", json=body)

    def user_names(self) -> set[str]:
        items = self.call("GET", "/users", params={"limit": 200}).json()
        return {u["name"] for u in items}

    def all_users(self) -> list[dict]:
        """Every user's model, page by page (the hub answers at most 200 at a time)."""
        users: list[dict] = []
        while True:
            page = self.call("GET", "/users", params={"offset": len(users), "limit": 200}).json()
            if not page:
                return users
            users.extend(page)

    def remove_all_users(self, workers: int = 16) -> None:
        """Stop every server and delete every user: the hub as it started, for the next test."""

        def remove(user: dict) -> None:
            name = user["name"]
            for server in user.get("servers") or {}:
                path = f"/users/{q(name)}/servers/{q(server)}" if server else f"/users/{q(name)}/server"
                self.call("DELETE", path, ok=(202, 204))
                self.wait_stopped(name, server)
            self.call("DELETE", f"/users/{q(name)}", ok=(204,))

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(remove, self.all_users()))

    def log_tail(self, lines: int = 60) -> str:
        text = (self.workdir / "hub.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        for proc in reversed(self.processes):
            stop_process_group(proc)
        self.admin.close()


CONFIG = """
import sys
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite://"
c.JupyterHub.cookie_secret_file = "{workdir}/jupyterhub_cookie_secret"
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "tinyspawner.TinySpawner"
c.JupyterHub.allow_named_servers = True
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.tornado_settings = {{"slow_stop_timeout": {slow_stop_timeout}}}
c.JupyterHub.last_activity_interval = 3600
c.JupyterHub.cleanup_servers = True
c.JupyterHub.services = [
    {{"name": {culler_name!r}, "api_token": {culler_token!r}}},
    {{"name": "test-admin", "api_token": {admin_token!r}, "admin": True}},
]
c.JupyterHub.load_roles = [
    {{"name": {culler_name!r}, "scopes": {culler_scopes!r}, "services": [{culler_name!r}]}},
]
"""


def start_hub(workdir: Path, *, culler_scopes: tuple[str, ...] = REQUIRED_SCOPES,
              slow_stop_timeout: float = 10) -> RunningHub:
    """Start CHP and JupyterHub; returns once the hub API answers through the proxy."""
    ensure_node_tools()
    workdir.mkdir(parents=True, exist_ok=True)
    proxy_port, proxy_api_port, hub_port = free_port(), free_port(), free_port()
    proxy_token = secrets.token_hex(16)
    hub = RunningHub(
        api_url=f"http://127.0.0.1:{proxy_port}/hub/api",
        culler_token=secrets.token_hex(16),
        admin_token=secrets.token_hex(16),
        workdir=workdir,
    )
    (workdir / "jupyterhub_config.py").write_text(CONFIG.format(
        proxy_port=proxy_port, hub_port=hub_port, proxy_api_port=proxy_api_port, proxy_token=proxy_token,
        workdir=workdir, culler_name=SERVICE_NAME, culler_token=hub.culler_token, admin_token=hub.admin_token,
        culler_scopes=list(culler_scopes), slow_stop_timeout=slow_stop_timeout,
    ))
    log = open(workdir / "hub.log", "ab")  # noqa: SIM115 - owned by the children
    try:  # a failure here stops what already runs (the proxy), as the wait below does
        chp = subprocess.Popen(
            [str(NODE_BIN / "configurable-http-proxy"), "--ip", "127.0.0.1", "--port", str(proxy_port),
             "--api-ip", "127.0.0.1", "--api-port", str(proxy_api_port),
             "--default-target", f"http://127.0.0.1:{hub_port}", "--change-origin"],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": proxy_token},
        )
        hub.processes.append(chp)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(workdir / "jupyterhub_config.py")],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )
        hub.processes.append(proc)
    except BaseException:
        hub.stop()
        raise
    finally:
        log.close()
    try:
        wait_for_port(proxy_port, timeout=START_TIMEOUT, proc=chp)
        wait_until(lambda: _answers(hub, proc), timeout=START_TIMEOUT, interval=0.2, what="the hub to answer",
                   describe=lambda: "\n" + hub.log_tail())
    except BaseException:
        hub.stop()
        raise
    return hub


def _answers(hub: RunningHub, proc: subprocess.Popen) -> bool:
    """True once the hub's API answers through the proxy; raises if the hub has exited."""
    if proc.poll() is not None:
        raise RuntimeError(f"jupyterhub exited with {proc.returncode}:\n{hub.log_tail()}")
    try:
        return requests.get(hub.api_url + "/", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def dump(obj) -> str:
    return json.dumps(obj, indent=1, default=str)
