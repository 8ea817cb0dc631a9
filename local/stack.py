"""The whole system on one machine: Azurite, the ACA emulator, the functions, a hub.

Each part is a child process in its own process group, so stopping the stack
(or Ctrl-C in ``make demo``) leaves nothing behind. The hub is registered in
the emulator's ingress as the environment's hub host, exactly as the hub app
is in a real Container Apps environment.

| local part | Azure counterpart |
|---|---|
| Azurite | the Storage account (queue ``aca-lifecycle``, table ``acaservers``) |
| ``python -m local.emulator`` | ARM ``Microsoft.App`` + the environment's envoy ingress, and the homes share |
| ``python -m local.funchost`` | the Function App (Flex Consumption) |
| ``jupyterhub`` + configurable-http-proxy | the hub container app |
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from acaspawner.sealing import generate_key

from .azurite import Azurite, start_azurite
from .homes import EMULATOR_TOKEN, provision_homes, share_dir
from .procs import NODE_BIN, REPO, ensure_node_tools, free_port, stop_process_group, wait_for_port

BIN = Path(sys.executable).parent
DEMO_CONFIG = Path(__file__).resolve().parent / "demo" / "jupyterhub_config.py"
DEMO_IMAGE = "quay.io/jupyter/base-notebook:latest"  # the demo hub's server image (its config says so too)


@dataclass
class StackOptions:
    port: int = 8000
    password: str = "aca-demo"
    hub_id: str = "demo"
    state_dir: Path | None = None
    change_origin: bool = True  # False reproduces the 431 loop
    allow_origin_fix: bool = True  # False reproduces the blocked kernel websocket
    emulator_args: list[str] = field(default_factory=list)
    function_settings: dict[str, str] = field(default_factory=dict)
    # tests only: a hub service with admin scopes and this token
    test_admin_token: str = ""
    start_timeout: int = 180  # the hub's (and so the spawner's) start_timeout, seconds
    # several emulated environments: the cores the functions may fill in each (ACA_ENVIRONMENTS); empty: one
    environment_cores: tuple[float, ...] = ()
    # warm servers kept ready for the demo hub's default server (ACA_WARM_POOL); 0: none
    warm_pool_size: int = 0


class Stack:
    """Start with :meth:`start`, stop with :meth:`stop` (or use it as a context manager)."""

    def __init__(self, options: StackOptions | None = None):
        self.options = options or StackOptions()
        self.state_dir = Path(self.options.state_dir or tempfile.mkdtemp(prefix="aca-stack-"))
        self.logs = self.state_dir / "logs"
        self.azurite: Azurite | None = None
        self.emulator_info: dict = {}
        self.home_settings: dict[str, str] = {}  # the functions' ACA_HOME_* settings (local.homes)
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self.sealing_key = generate_key()
        self.followup_key = generate_key()  # the functions' own: the hub never gets it
        self.culler_token = secrets.token_hex(32)
        self.public_url = f"http://127.0.0.1:{self.options.port}"
        self.hub_api_url = f"http://127.0.0.1:{free_port()}"  # the hub's internal address

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        ensure_node_tools()
        try:
            self.azurite = start_azurite(self.state_dir, log_path=self.logs / "azurite.log")
            self._start_emulator()
            self.home_settings = provision_homes(self.emulator_info)
            # the hub before the functions: the culler's first run should find it listening
            self._start_hub()
            self._start_functions()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # the emulator last: it ends the app processes it started
        for _name, proc in reversed(self._procs):
            stop_process_group(proc)
        self._procs.clear()
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None

    def check_alive(self) -> None:
        """Raise if a part has exited (the demo watches this)."""
        for name, proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.logs / (name + '.log')}")

    # -- parts ----------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            cmd, stdout=kw.pop("stdout", log), stderr=log, env={**os.environ, **(env or {})},
            start_new_session=True, cwd=kw.pop("cwd", REPO), **kw,
        )
        log.close()
        self._procs.append((name, proc))
        return proc

    def _start_emulator(self) -> None:
        hub_host = f"127.0.0.1:{self.options.port}"
        cmd = [
            sys.executable, "-m", "local.emulator",
            "--state-dir", str(self.state_dir / "aca"),
            "--hub-host", f"{hub_host}={self.public_url}",
            "--hub-host", f"localhost:{self.options.port}={self.public_url}",
            *(arg for i in range(2, len(self.options.environment_cores) + 1)
              for arg in ("--more-environment", f"cae-env-{i}")),
            *self.options.emulator_args,
        ]
        proc = self._spawn("emulator", cmd, stdout=subprocess.PIPE)
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the ACA emulator did not start; see {self.logs / 'emulator.log'}")
        self.emulator_info = json.loads(line)

    def pool_settings(self) -> dict[str, str]:
        """ACA_ENVIRONMENTS for several emulated environments (``StackOptions.environment_cores``)."""
        cores = self.options.environment_cores
        if not cores:
            return {}
        ids = [e["id"] for e in self.emulator_info["environments"]]
        return {"ACA_ENVIRONMENTS": json.dumps([{"id": i, "cores": c} for i, c in zip(ids, cores, strict=True)])}

    def warm_pool_settings(self) -> dict[str, str]:
        """ACA_WARM_POOL for the demo hub's default server (its image and size: local/demo/jupyterhub_config.py)."""
        if not self.options.warm_pool_size:
            return {}
        return {"ACA_WARM_POOL": json.dumps([{"name": "demo", "image": DEMO_IMAGE, "cpu": 0.5, "memory": "1Gi",
                                              "size": self.options.warm_pool_size}])}

    def function_settings(self) -> dict[str, str]:
        info = self.emulator_info
        return {
            "AcaStorage": self.azurite.connection_string,
            "AzureWebJobsStorage": self.azurite.connection_string,
            "ACA_HUB_ID": self.options.hub_id,
            "ACA_SEALING_KEYS": self.sealing_key,
            "ACA_FOLLOWUP_KEYS": self.followup_key,
            "ACA_LIFECYCLE_QUEUE": "aca-lifecycle",
            "ACA_STATUS_TABLE": "acaservers",
            "ACA_CULL_SCHEDULE": "0 */5 * * * *",
            "ACA_CULL_TIMEOUT": "3600",
            "ACA_RECONCILE_SCHEDULE": "30 */10 * * * *",
            "ACA_WARM_POOL_SCHEDULE": "*/5 * * * * *",  # refills the warm pool (when ACA_WARM_POOL names one)
            "ACA_SUBSCRIPTION_ID": info["subscription_id"],
            "ACA_RESOURCE_GROUP": info["resource_group"],
            "ACA_ENVIRONMENT_ID": info["environment_id"],
            "ACA_LOCATION": info["location"],
            "ACA_ALLOWED_IMAGES": "quay.io/jupyter/*",
            "ACA_ARM_ENDPOINT": info["arm_endpoint"],
            "ACA_ARM_CA_BUNDLE": info["ca_bundle"],
            "ACA_ARM_TOKEN": EMULATOR_TOKEN,
            "ACA_HUB_API_URL": f"{self.hub_api_url}/hub/api",
            "ACA_HUB_API_TOKEN": self.culler_token,
            **self.pool_settings(),
            **self.home_settings,
            **self.warm_pool_settings(),
            **self.options.function_settings,
        }

    def _start_functions(self) -> None:
        # settings travel in the environment (never on a command line that `ps` shows)
        cmd = [sys.executable, "-m", "local.funchost", "--app", str(REPO / "function_app.py"),
               "--host-json", str(REPO / "host.json")]
        self._spawn("functions", cmd, env=self.function_settings())

    def kill_functions(self) -> None:
        """Kill the functions host at once (SIGKILL, no clean-up), as a crash or a stopped Function App does.

        Messages the dead host had received stay leased (invisible) for the lease it took, as in Azure.
        """
        for entry in [e for e in self._procs if e[0] == "functions"]:
            os.killpg(entry[1].pid, signal.SIGKILL)
            entry[1].wait(timeout=10)
            self._procs.remove(entry)

    def start_functions(self) -> None:
        """Start a functions host (after :meth:`kill_functions`)."""
        self._start_functions()

    def restart_hub(self) -> None:
        """Stop the hub (and its proxy) and start it again on the same database, as a roll-out does."""
        for entry in [e for e in self._procs if e[0] == "hub"]:
            stop_process_group(entry[1])
            self._procs.remove(entry)
        self._start_hub()

    @property
    def home_share(self) -> Path:
        """The directory of the homes share (every user's folder is in it)."""
        return Path(share_dir(self.emulator_info))

    def crash_functions(self) -> None:
        """Kill the functions host and start a new one at once, as after a crash."""
        self.kill_functions()
        self._start_functions()

    def _start_hub(self) -> None:
        state = self.state_dir / "hub"
        state.mkdir(exist_ok=True)
        env = {
            "ACA_DEMO_STATE_DIR": str(state),
            "ACA_DEMO_PUBLIC_URL": self.public_url,
            "ACA_DEMO_CHP": str(NODE_BIN / "configurable-http-proxy"),
            "ACA_DEMO_CHANGE_ORIGIN": "1" if self.options.change_origin else "0",
            "ACA_DEMO_ALLOW_ORIGIN": "1" if self.options.allow_origin_fix else "0",
            "ACA_DEMO_PROXY_API_PORT": str(free_port()),
            "ACA_DEMO_STATUS_PORT": str(free_port()),
            "ACA_DEMO_HUB_API_URL": self.hub_api_url,
            "ACA_DEMO_PASSWORD": self.options.password,
            "ACA_DEMO_STORAGE": self.azurite.connection_string,
            "ACA_HUB_ID": self.options.hub_id,
            "ACA_SEALING_KEYS": self.sealing_key,
            "ACA_HUB_API_TOKEN": self.culler_token,
            "ACA_DEMO_TEST_ADMIN_TOKEN": self.options.test_admin_token,
            "ACA_DEMO_START_TIMEOUT": str(self.options.start_timeout),
            "ACA_HOME_STORAGE_NAME": self.home_settings.get("ACA_HOME_STORAGE_NAME", ""),
            # the culler's role follows the functions' setting: deleting users needs two more scopes
            "ACA_CULL_USERS": self.options.function_settings.get("ACA_CULL_USERS", "false"),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        proc = self._spawn("hub", [str(BIN / "jupyterhub"), "-f", str(DEMO_CONFIG)], env=env, cwd=state)
        wait_for_port(self.options.port, proc=proc, timeout=60)
        self._wait_healthy(proc)

    def _wait_healthy(self, proc: subprocess.Popen, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the hub exited with {proc.returncode}; see {self.logs / 'hub.log'}")
            try:
                with urllib.request.urlopen(f"{self.public_url}/hub/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"the hub is not healthy after {timeout} s; see {self.logs / 'hub.log'}")

    # -- inspection -----------------------------------------------------------------------
    def _emulator_get(self, path: str) -> dict:
        ctx = ssl.create_default_context(cafile=self.emulator_info["ca_bundle"])
        with urllib.request.urlopen(f"{self.emulator_info['arm_endpoint']}{path}", context=ctx, timeout=10) as r:
            return json.loads(r.read())

    def emulator_stats(self) -> dict:
        """The emulator's counters (``/_emulator/stats``)."""
        return self._emulator_get("/_emulator/stats")

    def set_emulator_faults(self, **changes: object) -> dict:
        """Change the emulator's fault settings while it runs (``POST /_emulator/faults``)."""
        ctx = ssl.create_default_context(cafile=self.emulator_info["ca_bundle"])
        request = urllib.request.Request(f"{self.emulator_info['arm_endpoint']}/_emulator/faults", method="POST",
                                         data=json.dumps(changes).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=ctx, timeout=10) as r:
            return json.loads(r.read())

    def emulator_apps(self) -> dict[str, dict]:
        """The emulator's container apps by name: state, fqdn, pid, log (``/_emulator/apps``)."""
        return self._emulator_get("/_emulator/apps")
