"""infra/hooks/hub_rollout.py against the ARM emulator: the hub app is stopped before a change and started after."""

from __future__ import annotations

import importlib.util
import ssl
import sys
from pathlib import Path

import pytest

HOOKS = Path(__file__).resolve().parents[2] / "infra" / "hooks"


def load(name: str):
    sys.path.insert(0, str(HOOKS))
    try:
        spec = importlib.util.spec_from_file_location(name, HOOKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(HOOKS))


hub_rollout = load("hub_rollout")  # with it, the azure_rest module it imports (Arm, ArmError)


@pytest.fixture
def arm(aca_emulator):
    context = ssl.create_default_context(cafile=str(aca_emulator.ca_bundle))
    return hub_rollout.Arm("emulator-token", endpoint=aca_emulator.arm_endpoint, context=context)


def path_of(aca_emulator, name: str) -> str:
    values = {"AZURE_SUBSCRIPTION_ID": aca_emulator.subscription_id,
              "AZURE_RESOURCE_GROUP": aca_emulator.resource_group, "HUB_APP_NAME": name}
    return hub_rollout.hub_path(values)


def test_stop_then_start_the_hub_app(arm, aca_emulator, echo_app):
    echo_app("jupyterhub")
    path = path_of(aca_emulator, "jupyterhub")
    assert hub_rollout.switch(arm, path, "stop", interval=0.2, timeout=60) == "the hub is stopped"
    assert aca_emulator.apps["jupyterhub"].pid is None  # no replica of any revision runs
    assert hub_rollout.switch(arm, path, "stop", interval=0.2) == "the hub is already stopped"
    assert hub_rollout.switch(arm, path, "start", interval=0.2, timeout=60) == "the hub is running"
    assert aca_emulator.apps["jupyterhub"].pid is not None


def test_before_the_first_provision_there_is_nothing_to_do(arm, aca_emulator):
    assert hub_rollout.hub_path({"AZURE_SUBSCRIPTION_ID": "s", "AZURE_RESOURCE_GROUP": "g"}) is None
    assert hub_rollout.switch(arm, path_of(aca_emulator, "jupyterhub"), "stop") == "no hub app yet; nothing to do"


def test_an_arm_refusal_is_an_error_not_a_silent_skip(arm, aca_emulator, echo_app, monkeypatch):
    echo_app("jupyterhub")
    monkeypatch.setattr(hub_rollout, "API_VERSION", "1999-01-01")  # ARM refuses an api-version it does not know
    with pytest.raises(hub_rollout.ArmError, match="answered 400.*NoRegisteredProviderFound"):
        hub_rollout.switch(arm, path_of(aca_emulator, "jupyterhub"), "stop")
