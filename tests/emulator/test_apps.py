"""Apps as processes: launch rewriting, image mapping, env and secrets, process-group lifetime."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from azure.mgmt.appcontainers import models
from emulator_helpers import SECRET, http_session, pid_alive, wait_until

from local.emulator.apps import VENV_BIN, build_launch, image_rules, rewrite_args, rewrite_env
from local.emulator.errors import ArmError
from local.emulator.validation import validate_name, validate_resources


def test_target_port_and_bind_address_are_rewritten_in_args():
    args = [
        "--port=8888",
        "--ServerApp.port=8888",
        "--port",
        "8888",
        "--ip=0.0.0.0",
        "--ServerApp.ip=0.0.0.0",
        "--ip",
        "0.0.0.0",
        "0.0.0.0:8888",
        "--url=http://0.0.0.0:8888/user/x/",
        "--port=9999",
        "--other=88880",
        "--name=8888x",
    ]
    assert rewrite_args(args, 8888, 41000) == [
        "--port=41000",
        "--ServerApp.port=41000",
        "--port",
        "41000",
        "--ip=127.0.0.1",
        "--ServerApp.ip=127.0.0.1",
        "--ip",
        "127.0.0.1",
        "127.0.0.1:41000",
        "--url=http://127.0.0.1:41000/user/x/",
        "--port=9999",
        "--other=88880",
        "--name=8888x",
    ]
    assert rewrite_args(["--port=8888"], None, None) == ["--port=8888"]  # no ingress: nothing to rewrite


def test_target_port_is_rewritten_in_env_urls_only_for_local_hosts():
    env = {
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/x/",
        "LOCAL_URL": "http://localhost:8888",
        "JUPYTERHUB_API_URL": "http://hub-app:8888/hub/api",
        "JUPYTER_PORT": "8888",
        "COUNT": "8888",
        "BIND_IP": "0.0.0.0",
    }
    assert rewrite_env(env, 8888, 41000) == {
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:41000/user/x/",
        "LOCAL_URL": "http://localhost:41000",
        "JUPYTERHUB_API_URL": "http://hub-app:8888/hub/api",
        "JUPYTER_PORT": "41000",
        "COUNT": "8888",
        "BIND_IP": "127.0.0.1",
    }


def test_launch_from_image_map_env_and_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "host-secret")  # the host's env must not leak into apps
    rules = image_rules({"registry.local/tools/*": "env TOOL=1"})
    container = {
        "image": "quay.io/jupyter/scipy-notebook:2025-01-01",
        "args": ["--ServerApp.port=8888"],
        "env": [{"name": "TOKEN", "secretRef": "tok"}, {"name": "PLAIN", "value": "v"}],
    }
    launch = build_launch(container, {"tok": "xyz"}, rules, tmp_path, 8888, 41000)
    assert launch.argv == ["jupyterhub-singleuser", "--ServerApp.port=41000"]  # the image's entrypoint stand-in
    assert launch.env["PATH"].split(os.pathsep)[0] == VENV_BIN
    assert (launch.env["TOKEN"], launch.env["PLAIN"], launch.env["PORT"]) == ("xyz", "v", "41000")
    assert launch.env["HOME"] == str(tmp_path) and launch.cwd == tmp_path
    assert "JUPYTERHUB_API_TOKEN" not in launch.env

    tool = build_launch({"image": "registry.local/tools/x:1", "command": ["run"]}, {}, rules, tmp_path, None, None)
    assert tool.argv == ["env", "TOOL=1", "run"]
    assert "PORT" not in tool.env

    jupyter = image_rules({"quay.io/jupyter/*": ["nice"]})  # a user prefix keeps the image's entrypoint stand-in
    assert build_launch({"image": "quay.io/jupyter/a:1"}, {}, jupyter, tmp_path, None, None).argv == [
        "nice",
        "jupyterhub-singleuser",
    ]

    with pytest.raises(ValueError, match="no command"):
        build_launch({"image": "docker.io/library/nginx"}, {}, rules, tmp_path, 80, 41000)


@pytest.mark.parametrize("name", ["ab", "a-b", "user-x-1a2b3c", "a" * 32])
def test_valid_names(name):
    validate_name(name)


@pytest.mark.parametrize("name", ["a", "1abc", "abc-", "a--b", "Abc", "a_b", "a" * 33, "ab.c"])
def test_invalid_names(name):
    with pytest.raises(ArmError) as err:
        validate_name(name)
    assert err.value.code == "ContainerAppInvalidName"


def test_resource_pairs():
    validate_resources([{"resources": {"cpu": 0.25, "memory": "0.5Gi"}}], None)
    validate_resources([{"resources": {"cpu": 4, "memory": "8Gi"}}], "Consumption")
    validate_resources([{"resources": {"cpu": 0.25, "memory": "0.5Gi"}}] * 2, None)  # totals count
    validate_resources([{"resources": {"cpu": 3, "memory": "7Gi"}}], "D4")  # dedicated profiles are not checked
    for cpu, memory in [(0.5, "2Gi"), (4.25, "8.5Gi"), (0.3, "0.6Gi"), (1, "lots")]:
        with pytest.raises(ArmError) as err:
            validate_resources([{"resources": {"cpu": cpu, "memory": memory}}], None)
        assert err.value.code == "ContainerAppInvalidResourceTotal"


def test_env_and_secret_reach_the_process_and_ports_are_rewritten(echo_app, aca_emulator):
    app = echo_app("user-x")
    info = aca_emulator.apps["user-x"]
    port = info.container_port
    answer = http_session().get(f"http://{app.properties.configuration.ingress.fqdn}/user/x/", timeout=10).json()
    assert answer["env"]["TOKEN"] == SECRET
    assert answer["env"]["PLAIN"] == "hello"
    assert answer["env"]["PORT"] == str(port)
    assert answer["env"]["JUPYTER_PORT"] == str(port)
    assert answer["env"]["SERVICE_URL"] == f"http://127.0.0.1:{port}/user/x/"
    assert answer["argv"] == [f"--port={port}", "--ip", "127.0.0.1"]
    assert Path(answer["env"]["HOME"]).is_relative_to(aca_emulator.state_dir)
    assert info.log_path.is_file() and info.log_path.is_relative_to(aca_emulator.state_dir)


def test_stop_and_delete_end_the_whole_process_group(aca_client, aca_emulator):
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(f'CHILD-PID:{child.pid}', flush=True)\n"
        "time.sleep(600)\n"
    )
    container = models.Container(name="main", image="python:3.11", command=[sys.executable, "-c", script],
                                 resources=models.ContainerResources(cpu=0.25, memory="0.5Gi"))
    body = models.ContainerApp(location="westeurope", managed_environment_id=aca_emulator.environment_id,
                               template=models.Template(containers=[container]))
    rg = aca_emulator.resource_group
    aca_client.container_apps.begin_create_or_update(rg, "family", body).result(timeout=30)
    info = aca_emulator.apps["family"]

    def child_pids() -> list[int]:
        return [int(pid) for pid in re.findall(r"^CHILD-PID:(\d+)$", info.log_path.read_text(), re.MULTILINE)]

    first_child = wait_until(child_pids)[0]
    assert pid_alive(info.pid) and pid_alive(first_child)
    aca_client.container_apps.begin_stop(rg, "family").result(timeout=30)
    assert not pid_alive(info.pid)
    wait_until(lambda: not pid_alive(first_child), timeout=10)

    aca_client.container_apps.begin_start(rg, "family").result(timeout=30)
    info = aca_emulator.apps["family"]
    second_child = wait_until(lambda: len(child_pids()) == 2 and child_pids())[1]
    aca_client.container_apps.begin_delete(rg, "family").result(timeout=30)
    assert not pid_alive(info.pid)
    wait_until(lambda: not pid_alive(second_child), timeout=10)
