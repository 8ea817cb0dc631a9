"""The emulator answers the published requests as the published contract says ARM does.

The x-ms-examples' requests are replayed over plain HTTPS; status codes must be ones the
operation publishes, long-running answers must carry the published headers, and every body
must pass the strict response schemas (published enums, no unknown properties, no secrets).
"""

from __future__ import annotations

import copy
import sys

import pytest
from armspec import example, operations, violations
from waiting import wait_until

PROFILE = {"name": "My-GP-01", "workloadProfileType": "D4"}  # the examples' workload profile
IDENTITY = ("/subscriptions/34adfa4f-cedf-4dc0-ba29-b6d1a69ab345/resourcegroups/rg/providers/"
            "Microsoft.ManagedIdentity/userAssignedIdentities/myidentity")


def _url(emu, name: str = "", action: str = "", version: str = "2026-07-01") -> str:
    base = (f"{emu.arm_endpoint}/subscriptions/{emu.subscription_id}/resourceGroups/{emu.resource_group}"
            f"/providers/Microsoft.App/containerApps")
    return f"{base}{'/' + name if name else ''}{'/' + action if action else ''}?api-version={version}"


def _published(operation_id: str, status: int) -> dict:
    responses = operations()["operations"][operation_id]["responses"]
    assert str(status) in responses, f"{operation_id} does not publish {status}"
    return responses[str(status)]


def _check(operation_id: str, response) -> None:
    """Status published, published headers present, body of the published schema (or none)."""
    published = _published(operation_id, response.status_code)
    for header in published["headers"]:
        assert header in response.headers, f"{operation_id} {response.status_code} lacks {header}"
    if "Retry-After" in response.headers:
        assert int(response.headers["Retry-After"]) >= 0  # an int32 number of seconds
    for header in ("Location", "Azure-AsyncOperation"):
        if header in response.headers:
            assert response.headers[header].startswith("https://") and "api-version=" in response.headers[header]
    if published["schema"] is None:
        assert not response.content
    else:
        assert violations(response.json(), published["schema"], "response") == []


def _example_envelope(emu) -> dict:
    body = copy.deepcopy(example("ContainerApps_CreateOrUpdate")["parameters"]["containerAppEnvelope"])
    body["properties"]["environmentId"] = emu.environment_id
    body["location"] = "West Europe"  # the environment's region, written as its display name
    return body


def _sleeper(emu) -> dict:
    container = {"name": "main", "image": "busybox:latest", "resources": {"cpu": 0.25, "memory": "0.5Gi"},
                 "command": [sys.executable, "-c", "import time; time.sleep(600)"]}
    return {"location": emu.location, "properties": {"environmentId": emu.environment_id,
                                                     "template": {"containers": [container]}}}


def _poll(session, url: str, *, until=lambda answer: answer.status_code != 202, timeout: float = 30.0):
    """GET ``url`` until its answer is final (by default: no longer 202 Accepted); that answer."""
    answers = []

    def final() -> bool:
        answers.append(session.get(url))
        return until(answers[-1])

    wait_until(final, timeout=timeout, what=f"a final answer from {url}",
               describe=lambda: f"last answer {answers[-1].status_code}")
    return answers[-1]


def test_create_replays_the_published_example(arm):
    # no process starts within the test: only ARM's synchronous answers are looked at
    emu, session = arm(provisioning_delay=120, retry_after=1, workload_profiles=[PROFILE])
    version = example("ContainerApps_CreateOrUpdate")["parameters"]["api-version"]
    # the storages its volumes name, as ManagedEnvironmentsStorages_CreateOrUpdate makes them
    environment = emu.environment_id.split("/")[-1]
    storages = {"storage": {"azureFile": {"accountName": "account1", "accountKey": "key", "shareName": "share1",
                                          "accessMode": "ReadOnly"}},
                "nfsStorage": {"nfsAzureFile": {"server": "account1.file.core.windows.net",
                                                "shareName": "/account1/share2", "accessMode": "ReadWrite"}}}
    for name, props in storages.items():
        url = f"{emu.arm_endpoint}/subscriptions/{emu.subscription_id}/resourceGroups/{emu.resource_group}" \
              f"/providers/Microsoft.App/managedEnvironments/{environment}/storages/{name}?api-version={version}"
        stored = session.put(url, json={"properties": props})
        assert stored.status_code == 201 and "accountKey" not in stored.text, stored.text
    created = session.put(_url(emu, "testcontainerApp0".lower(), version=version), json=_example_envelope(emu))
    assert created.status_code == 201, created.text
    _check("ContainerApps_CreateOrUpdate", created)
    app = created.json()
    assert app["properties"]["provisioningState"] == "InProgress"
    identity = app["identity"]
    assert identity["type"] == "SystemAssigned,UserAssigned" and identity["principalId"] and identity["tenantId"]
    assert set(identity["userAssignedIdentities"][IDENTITY]) == {"principalId", "clientId"}

    status = session.get(created.headers["Azure-AsyncOperation"])
    assert status.status_code == 200 and status.json()["status"] == "InProgress"
    assert violations(status.json(), "OperationStatusResult", "response") == []

    got = session.get(_url(emu, "testcontainerapp0"))
    _check("ContainerApps_Get", got)
    assert got.json()["identity"] == identity  # the identity block is kept, ids stable
    assert session.delete(_url(emu, "testcontainerapp0")).status_code == 202


def test_get_and_list_answer_as_published(arm):
    emu, session = arm(list_page_size=1)
    for name in ("app-a", "app-b"):
        assert session.put(_url(emu, name), json=_sleeper(emu)).status_code == 201
    _check("ContainerApps_Get", session.get(_url(emu, "app-a")))
    missing = session.get(_url(emu, "app-zz"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
    assert violations(missing.json(), "ErrorResponse", "response") == []

    first = session.get(_url(emu))
    _check("ContainerApps_ListByResourceGroup", first)
    assert [a["name"] for a in first.json()["value"]] == ["app-a"]
    second = session.get(first.json()["nextLink"])
    _check("ContainerApps_ListByResourceGroup", second)
    assert [a["name"] for a in second.json()["value"]] == ["app-b"] and "nextLink" not in second.json()


def test_stop_start_and_delete_answer_as_published(arm):
    emu, session = arm(retry_after=1)
    created = session.put(_url(emu, "worker"), json=_sleeper(emu))
    assert _poll(session, created.headers["Azure-AsyncOperation"]).json()["status"] == "Succeeded"
    for action, operation_id, state in (("stop", "ContainerApps_Stop", "Stopped"),
                                        ("start", "ContainerApps_Start", "Running")):
        accepted = session.post(_url(emu, "worker", action))
        assert accepted.status_code == 202
        _check(operation_id, accepted)
        done = _poll(session, accepted.headers["Location"])
        _check(operation_id, done)  # the final state: 200 with the app
        assert done.json()["properties"]["runningStatus"] == state

    deleting = session.delete(_url(emu, "worker"))
    assert deleting.status_code == 202
    _check("ContainerApps_Delete", deleting)
    assert _poll(session, deleting.headers["Location"]).status_code == 204
    again = session.delete(_url(emu, "worker"))  # "Resource does not exist"
    assert again.status_code == 204
    _check("ContainerApps_Delete", again)


def test_a_failed_operation_reports_as_published(arm):
    emu, session = arm(fail_images=("busybox:*",))
    created = session.put(_url(emu, "broken"), json=_sleeper(emu))
    status = _poll(session, created.headers["Azure-AsyncOperation"],
                   until=lambda answer: answer.status_code != 202 and answer.json()["status"] != "InProgress")
    body = status.json()
    assert body["status"] == "Failed" and body["error"]["code"] and body["error"]["message"]
    assert violations(body, "OperationStatusResult", "response") == []
    app = session.get(_url(emu, "broken")).json()
    assert app["properties"]["provisioningState"] == "Failed" and "runningStatus" not in app["properties"]
    assert violations(app, "ContainerApp", "response") == []


@pytest.mark.parametrize("change, code", [
    (lambda b: b.update(location="eastus"), "InvalidParameterValue"),
    (lambda b: b["properties"].update(workloadProfileName="D32"), "InvalidParameterValue"),
    (lambda b: b["properties"].setdefault("configuration", {}).update(
        registries=[{"server": "myreg.azurecr.io", "identity": IDENTITY}]), "InvalidParameterValueInContainerTemplate"),
    (lambda b: b["properties"].setdefault("configuration", {}).update(
        identitySettings=[{"identity": "system", "lifecycle": "None"}]), "InvalidParameterValue"),
])
def test_what_arm_refuses_is_refused(arm, change, code):
    emu, session = arm()
    body = _sleeper(emu)
    change(body)
    refused = session.put(_url(emu, "refused"), json=body)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == code, refused.text
    assert violations(refused.json(), "ErrorResponse", "response") == []
    assert session.get(_url(emu, "refused")).status_code == 404


def test_a_registry_identity_assigned_to_the_app_is_accepted(arm):
    emu, session = arm(provisioning_delay=120)
    body = _sleeper(emu)
    body["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY: {}}}
    body["properties"]["configuration"] = {"registries": [{"server": "myreg.azurecr.io", "identity": IDENTITY.upper()}]}
    accepted = session.put(_url(emu, "pulls"), json=body)
    assert accepted.status_code == 201, accepted.text
    assert list(accepted.json()["identity"]["userAssignedIdentities"]) == [IDENTITY]


@pytest.mark.parametrize("version", ["2099-01-01", "2021-01-01", "latest"])
def test_an_api_version_the_provider_never_registered_is_refused(arm, version):
    emu, session = arm()
    refused = session.get(_url(emu, version=version))
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "NoRegisteredProviderFound"
    assert f"API version '{version}'" in error["message"] and "2026-07-01" in error["message"]
    assert session.get(_url(emu, version="2025-01-01")).status_code == 200
