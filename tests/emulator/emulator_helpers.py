"""Helpers shared by the emulator tests: app bodies and a bounded wait."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import requests
from azure.mgmt.appcontainers import models
from waiting import wait_until  # noqa: F401 - the tests import it from here

ECHO_APP = Path(__file__).with_name("echo_app.py")
SECRET = "s3cret-value"


def echo_container_app(environment_id: str, **overrides: Any) -> models.ContainerApp:
    """The app shape the spawner uses (internal http ingress, allowInsecure, one replica) running echo_app.py."""
    container = models.Container(
        name="notebook",
        image="quay.io/jupyter/base-notebook:latest",
        command=[sys.executable],
        args=[str(ECHO_APP), "--port=8888", "--ip", "0.0.0.0"],
        env=[
            models.EnvironmentVar(name="PLAIN", value="hello"),
            models.EnvironmentVar(name="TOKEN", secret_ref="api-token"),
            models.EnvironmentVar(name="SERVICE_URL", value="http://0.0.0.0:8888/user/x/"),
            models.EnvironmentVar(name="JUPYTER_PORT", value="8888"),
        ],
        resources=models.ContainerResources(cpu=overrides.pop("cpu", 0.5), memory=overrides.pop("memory", "1Gi")),
    )
    return models.ContainerApp(
        location="westeurope",
        tags={"hub": "test", "user": "x"},
        managed_environment_id=environment_id,
        configuration=models.Configuration(
            ingress=models.Ingress(external=False, target_port=8888, transport="http", allow_insecure=True),
            secrets=[models.Secret(name="api-token", value=SECRET)],
        ),
        template=models.Template(containers=[container], scale=models.Scale(min_replicas=1, max_replicas=1)),
        **overrides,
    )


def sleeper_container_app(environment_id: str) -> models.ContainerApp:
    """An app without ingress whose process just sleeps."""
    container = models.Container(
        name="main",
        image="busybox:latest",
        command=[sys.executable, "-c", "import time; time.sleep(600)"],
        resources=models.ContainerResources(cpu=0.25, memory="0.5Gi"),
    )
    return models.ContainerApp(
        location="westeurope", managed_environment_id=environment_id, template=models.Template(containers=[container])
    )


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie nobody reaped counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def http_session() -> requests.Session:
    """Plain HTTP without proxies or env settings (tests only talk to 127.0.0.1)."""
    session = requests.Session()
    session.trust_env = False
    return session
