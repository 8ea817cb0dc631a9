"""``python -m local.emulator`` as a command: JSON line on stdout, stats endpoint, clean exit on SIGTERM."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
import time

import requests
from emulator_helpers import pid_alive, sleeper_container_app, wait_until

from local.emulator import make_client
from local.procs import REPO, stop_process_group


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first stdout line of ``proc`` within ``timeout`` seconds."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=0.2):
            return proc.stdout.readline()
        assert proc.poll() is None, f"emulator exited with {proc.returncode}"
    raise AssertionError(f"no output within {timeout} s")


class Endpoint:
    """What make_client needs, from the command's JSON line."""

    def __init__(self, info: dict) -> None:
        self.subscription_id = info["subscription_id"]
        self.arm_endpoint = info["arm_endpoint"]
        self.ca_bundle = info["ca_bundle"]


def test_command_prints_its_endpoint_serves_and_cleans_up(tmp_path):
    cmd = [sys.executable, "-m", "local.emulator", "--state-dir", str(tmp_path / "state"), "--resource-group", "rg-cli",
           "--no-retry-after", "--provisioning-delay", "0.1", "--write-bucket", "50",
           "--hub-host", "127.0.0.1:9=http://127.0.0.1:9", "--image-map", "busybox:*=env FROM_MAP=1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        info = json.loads(read_line(proc, timeout=30))
        assert info["arm_endpoint"].startswith("https://127.0.0.1:")
        assert info["environment_id"].endswith("/resourceGroups/rg-cli/providers/Microsoft.App/managedEnvironments/"
                                               "cae-emulator")
        assert info["hubs"] == {"127.0.0.1:9": "http://127.0.0.1:9"}

        client = make_client(Endpoint(info), polling_interval=0.05)
        client.container_apps.begin_create_or_update("rg-cli", "cli-app", sleeper_container_app(info["environment_id"])
                                                     ).result(timeout=30)
        session = requests.Session()
        session.trust_env = False
        session.verify = info["ca_bundle"]
        stats = session.get(info["stats_url"], timeout=10).json()
        assert stats["creates"] == 1 and stats["requests_by_method"]["PUT"] == 1
        apps = session.get(info["arm_endpoint"] + "/_emulator/apps", timeout=10).json()
        assert apps["cli-app"]["argv"][:2] == ["env", "FROM_MAP=1"]
        pid = apps["cli-app"]["pid"]
        assert pid_alive(pid)
        faults = session.post(info["arm_endpoint"] + "/_emulator/faults", json={"error_rate": 0.25}, timeout=10).json()
        assert faults["error_rate"] == 0.25 and faults["write_bucket"] == 50
        client.close()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        wait_until(lambda: not pid_alive(pid), timeout=10)
    finally:
        stop_process_group(proc)
