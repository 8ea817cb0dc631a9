"""The container app bodies the functions send hold to the published contract, as they go on the wire.

Each body is built by ``functions.app_body.build_container_app`` and sent by ``functions.arm.ArmApps``
through the real SDK; a policy records what the SDK serialised, which must pass the strict
request schema (no unknown or read-only properties, published enums, int32 ranges). The
emulator must accept it and answer with a body that passes the strict response schema.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from armspec import violations
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from acaspawner.contract import Op, Request, ServerSpec, Volume
from acaspawner.naming import home_folder, server_key
from acaspawner.sealing import generate_key
from functions.app_body import build_container_app
from functions.arm import ArmApps, make_credential
from functions.settings import Settings

REGISTRY_IDENTITY = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ids/providers/"
                     "Microsoft.ManagedIdentity/userAssignedIdentities/acr-pull")
HOME = Volume(name="home", storage_name="homes", mount_path="/home/jovyan", sub_path="",
              mount_options="uid=1000,gid=100,dir_mode=0755,file_mode=0644,mfsymlinks,nobrl")


class WireRecorder(SansIOHTTPPolicy):
    """Keeps the JSON body of every PUT/PATCH the SDK sends."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def on_request(self, request: Any) -> None:
        http = request.http_request
        if http.method in ("PUT", "PATCH"):
            raw = getattr(http, "content", None) or http.body
            self.bodies.append(json.loads(raw))


def _settings(emu, **env: str) -> Settings:
    return Settings.from_environ({
        "AcaStorage": "UseDevelopmentStorage=true",
        "ACA_HUB_ID": "hub-contract",
        "ACA_SEALING_KEYS": generate_key(),
        "ACA_FOLLOWUP_KEYS": generate_key(),
        "ACA_SUBSCRIPTION_ID": emu.subscription_id,
        "ACA_RESOURCE_GROUP": emu.resource_group,
        "ACA_ENVIRONMENT_ID": emu.environment_id,
        "ACA_LOCATION": emu.location,
        "ACA_ALLOWED_IMAGES": "quay.io/jupyter/*",
        "ACA_HOME_STORAGE_NAME": "homes",
        "ACA_HOME_FILES_ACCOUNT_URL": "https://sthomes.file.core.windows.net",
        "ACA_HOME_SHARE_NAME": "homes",
        "ACA_ARM_ENDPOINT": emu.arm_endpoint,
        "ACA_ARM_CA_BUNDLE": str(emu.ca_bundle),
        "ACA_ARM_TOKEN": "emulator",
        **env,
    })


def _request(user: str, **spec: Any) -> Request:
    values: dict[str, Any] = dict(
        image="quay.io/jupyter/base-notebook:latest", cpu=0.5, memory="1Gi", target_port=8888,
        command=["jupyterhub-singleuser"], args=["--ServerApp.allow_origin=https://hub.example.org"],
        env={"JUPYTERHUB_USER": user}, secret_env={"JUPYTERHUB_API_TOKEN": "t0ken", "EMPTY": ""},
    )
    values.update(spec)
    return Request(op=Op.START, hub_id="hub-contract", server_key=server_key("hub-contract", user, ""), user=user,
                   server_name="", generation=int(time.time() * 1000), spec=ServerSpec(**values))


CASES = {
    "plain": ({}, {}),
    "home volume with subPath": ({}, {"volumes": [HOME]}),
    "registry identity": ({"ACA_REGISTRY_SERVER": "myreg.azurecr.io", "ACA_REGISTRY_IDENTITY": REGISTRY_IDENTITY}, {}),
    "workload profile": ({"ACA_ALLOWED_WORKLOAD_PROFILES": "gpu"}, {"workload_profile": "gpu", "cpu": 3.0,
                                                                      "memory": "7Gi"}),
    "network ingress open to the hub only": ({"ACA_ENVIRONMENTS": "vnet"}, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_body_on_the_wire_holds_to_the_contract(aca_emulator_factory, case):
    env, spec = CASES[case]
    # a long provisioning delay: only the synchronous answer matters here, no notebook is started
    emu = aca_emulator_factory(provisioning_delay=120, workload_profiles=[{"name": "gpu", "workloadProfileType": "D4"}])
    if env.get("ACA_ENVIRONMENTS") == "vnet":  # the emulator's environment as one of environments 2..N
        env = {**env, "ACA_ENVIRONMENTS": json.dumps([{"id": emu.environment_id, "vnet_ingress": True,
                                                         "allow_from": ["10.42.0.0/23", "10.42.2.0/24"]}])}
    settings = _settings(emu, **env)
    request = _request("alice", **spec)
    recorder = WireRecorder()
    client = ContainerAppsAPIClient(make_credential(settings), settings.subscription_id, base_url=emu.arm_endpoint,
                                    connection_verify=str(emu.ca_bundle), per_call_policies=[recorder])
    # the home storage every deployment defines on its environments (infra/modules/environment.bicep)
    client.managed_environments_storages.create_or_update(
        settings.resource_group, emu.environment_name, "homes",
        {"properties": {"azureFile": {"accountName": "sthomes", "accountKey": "a2V5", "shareName": "homes",
                                      "accessMode": "ReadWrite"}}})
    recorder.bodies.clear()
    apps = ArmApps.for_settings(client, settings)
    try:
        home = home_folder(request.user) if request.spec.volumes else ""
        accepted = apps.send_create_or_update(request.server_key,
                                              build_container_app(request, settings, home_folder=home))
        answer = apps.get(request.server_key)
        gone = apps.send_delete(request.server_key)
        missing = apps.send_delete(request.server_key + "x")
    finally:
        apps.close()

    [sent] = recorder.bodies
    assert violations(sent, "ContainerApp", "request") == []
    assert accepted.operation_url and not accepted.done
    assert answer is not None and violations(answer, "ContainerApp", "response") == []
    assert not gone.done and missing.done  # ARM answers 204 for an app that is not there
    if case == "home volume with subPath":
        assert sent["properties"]["template"]["containers"][0]["volumeMounts"][0]["subPath"] == home_folder("alice")
    if case == "registry identity":
        assert answer["identity"]["type"] == "UserAssigned"
        assigned = answer["identity"]["userAssignedIdentities"][REGISTRY_IDENTITY]
        assert set(assigned) == {"principalId", "clientId"}
    if case == "workload profile":
        assert answer["properties"]["workloadProfileName"] == "gpu"
    if case == "network ingress open to the hub only":
        rules = sent["properties"]["configuration"]["ingress"]["ipSecurityRestrictions"]
        assert [r["ipAddressRange"] for r in rules] == ["10.42.0.0/23", "10.42.2.0/24"]
        assert answer["properties"]["configuration"]["ingress"]["ipSecurityRestrictions"] == rules
