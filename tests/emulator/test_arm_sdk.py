"""The real azure-mgmt-appcontainers client against the emulator, changing only base_url and connection_verify."""

from __future__ import annotations

import os
import time

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.mgmt.appcontainers import ContainerAppsAPIClient, models
from emulator_helpers import echo_container_app, sleeper_container_app, wait_until

from local.emulator import StaticTokenCredential


def test_lifecycle_create_get_stop_start_list_delete(aca_client, aca_emulator, echo_app):
    rg = aca_emulator.resource_group
    env = aca_client.managed_environments.get(rg, aca_emulator.environment_id.rsplit("/", 1)[1])
    assert env.properties.provisioning_state == "Succeeded"
    assert env.properties.default_domain

    created = echo_app("user-x")
    props = created.properties
    assert props.provisioning_state == "Succeeded"
    assert props.running_status == "Running"
    assert props.managed_environment_id == aca_emulator.environment_id
    assert props.latest_revision_name.startswith("user-x--")
    assert props.latest_ready_revision_name == props.latest_revision_name
    fqdn = props.configuration.ingress.fqdn
    assert fqdn == f"127.0.0.1:{aca_emulator.apps['user-x'].ingress_port}"
    assert created.tags == {"hub": "test", "user": "x"}

    got = aca_client.container_apps.get(rg, "user-x")
    assert got.properties.configuration.ingress.target_port == 8888
    assert got.properties.configuration.ingress.allow_insecure is True
    assert got.properties.template.scale.min_replicas == got.properties.template.scale.max_replicas == 1
    assert [s.name for s in got.properties.configuration.secrets] == ["api-token"]
    assert all(s.value is None for s in got.properties.configuration.secrets)  # secrets are write-only
    assert "s3cret" not in str(got.as_dict())

    stopped = aca_client.container_apps.begin_stop(rg, "user-x").result(timeout=30)
    assert stopped.properties.running_status == "Stopped"
    assert aca_emulator.apps["user-x"].pid is None

    started = aca_client.container_apps.begin_start(rg, "user-x").result(timeout=30)
    assert started.properties.running_status == "Running"
    assert aca_emulator.apps["user-x"].pid is not None

    assert [a.name for a in aca_client.container_apps.list_by_resource_group(rg)] == ["user-x"]

    pid = aca_emulator.apps["user-x"].pid
    assert aca_client.container_apps.begin_delete(rg, "user-x").result(timeout=30) is None
    assert "user-x" not in aca_emulator.apps
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ResourceNotFoundError) as err:
        aca_client.container_apps.get(rg, "user-x")
    assert err.value.error.code == "ResourceNotFound"

    stats = aca_emulator.stats
    assert (stats["creates"], stats["stops"], stats["starts"], stats["deletes"]) == (1, 1, 1, 1)
    assert stats["requests_by_method"]["PUT"] == 1


def arm_session(emu, token: str) -> requests.Session:
    """Plain HTTPS to the emulator (per-request verify: REQUESTS_CA_BUNDLE in the env would override session.verify)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emu.ca_bundle)
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def test_lro_headers_as_arm_sends_them(aca_emulator_factory, aca_credential):
    emu = aca_emulator_factory(retry_after=1)
    client = ContainerAppsAPIClient(aca_credential, emu.subscription_id, base_url=emu.arm_endpoint,
                                    connection_verify=str(emu.ca_bundle))
    rg = emu.resource_group
    poller = client.container_apps.begin_create_or_update(rg, "hdr", sleeper_container_app(emu.environment_id),
                                                          polling_interval=0.05)
    poller.result(timeout=30)
    session = arm_session(emu, aca_credential.get_token().token)
    base = f"{emu.arm_endpoint}/subscriptions/{emu.subscription_id}/resourceGroups/{rg}/providers/Microsoft.App"
    body = client.container_apps.get(rg, "hdr").as_dict()
    put = session.put(f"{base}/containerApps/hdr?api-version=2025-01-01", json={**body, "location": "westeurope"})
    assert put.status_code == 200
    assert "/containerappOperationStatuses/" in put.headers["Azure-AsyncOperation"]
    assert put.headers["Retry-After"] == "1"
    status = wait_until(lambda: (b := session.get(put.headers["Azure-AsyncOperation"]).json())["status"] != "InProgress" and b)
    assert status["status"] == "Succeeded" and status["name"] in put.headers["Azure-AsyncOperation"]

    stop = session.post(f"{base}/containerApps/hdr/stop?api-version=2025-01-01")
    assert stop.status_code == 202
    assert "/containerappOperationResults/" in stop.headers["Location"]
    result = wait_until(lambda: (r := session.get(stop.headers["Location"])).status_code == 200 and r)
    assert result.json()["properties"]["runningStatus"] == "Stopped"

    delete = session.delete(f"{base}/containerApps/hdr?api-version=2025-01-01")
    assert delete.status_code == 202
    wait_until(lambda: session.get(delete.headers["Location"]).status_code == 204)
    assert session.delete(f"{base}/containerApps/hdr?api-version=2025-01-01").status_code == 204

    # the SDK parses Retry-After on 202s and honours it (1 s here) over its own polling_interval
    client.container_apps.begin_create_or_update(rg, "hdr2", sleeper_container_app(emu.environment_id)).result()
    emu.set_faults(provisioning_delay=0.3)  # the SDK polls once at once; the stop must still be running then
    started = time.monotonic()
    stopped = client.container_apps.begin_stop(rg, "hdr2", polling_interval=0.01).result(timeout=30)
    assert stopped.properties.running_status == "Stopped"
    assert time.monotonic() - started >= 0.9
    client.close()


def test_update_patch_keeps_secrets_and_rolls_a_revision(aca_client, aca_emulator, echo_app):
    rg = aca_emulator.resource_group
    first = echo_app("user-y")
    pid = aca_emulator.apps["user-y"].pid

    patched = aca_client.container_apps.begin_update(rg, "user-y", {"tags": {"hub": "test", "phase": "2"}}).result()
    assert patched.tags == {"hub": "test", "phase": "2"}
    assert patched.properties.latest_revision_name == first.properties.latest_revision_name

    body = aca_client.container_apps.get(rg, "user-y")
    body.properties.template.containers[0].env.append(models.EnvironmentVar(name="EXTRA", value="1"))
    updated = aca_client.container_apps.begin_create_or_update(rg, "user-y", body).result(timeout=60)
    assert updated.properties.provisioning_state == "Succeeded"
    assert updated.properties.latest_revision_name != first.properties.latest_revision_name
    assert aca_emulator.apps["user-y"].pid != pid
    # the GET body carried no secret values; the stored value survives the round trip
    secrets = aca_client.container_apps.list_secrets(rg, "user-y")
    assert [(s.name, s.value) for s in secrets.value] == [("api-token", "s3cret-value")]
    assert aca_emulator.stats["updates"] == 2


def test_throttled_request_is_retried_after_retry_after(aca_emulator_factory, aca_credential):
    emu = aca_emulator_factory(write_bucket=2, write_refill=2.0)
    client = ContainerAppsAPIClient(aca_credential, emu.subscription_id, base_url=emu.arm_endpoint,
                                    connection_verify=str(emu.ca_bundle), polling_interval=0.05)
    rg = emu.resource_group
    client.container_apps.begin_create_or_update(rg, "busy", sleeper_container_app(emu.environment_id)).result()
    for _ in range(3):  # writes: the bucket (2) is empty after the create and the first call
        assert [s.name for s in client.container_apps.list_secrets(rg, "busy").value] == []
    assert emu.stats["throttled"] >= 1

    no_retry = ContainerAppsAPIClient(aca_credential, emu.subscription_id, base_url=emu.arm_endpoint,
                                      connection_verify=str(emu.ca_bundle), retry_total=0)
    emu.set_faults(write_bucket=1, write_refill=0.5)
    no_retry.container_apps.list_secrets(rg, "busy")
    with pytest.raises(HttpResponseError) as err:
        no_retry.container_apps.list_secrets(rg, "busy")
    assert err.value.status_code == 429
    assert err.value.error.code == "SubscriptionRequestsThrottled"
    assert int(err.value.response.headers["Retry-After"]) >= 1
    client.close()
    no_retry.close()


def test_injected_server_errors(aca_emulator, aca_credential):
    no_retry = ContainerAppsAPIClient(aca_credential, aca_emulator.subscription_id, base_url=aca_emulator.arm_endpoint,
                                      connection_verify=str(aca_emulator.ca_bundle), retry_total=0)
    aca_emulator.set_faults(error_rate=1.0, error_status=503)
    with pytest.raises(HttpResponseError) as err:
        list(no_retry.container_apps.list_by_resource_group(aca_emulator.resource_group))
    assert err.value.status_code == 503
    assert err.value.error.code == "ServiceUnavailable"

    aca_emulator.set_faults(error_rate=0.5, error_seed=7)
    retrying = ContainerAppsAPIClient(aca_credential, aca_emulator.subscription_id, base_url=aca_emulator.arm_endpoint,
                                      connection_verify=str(aca_emulator.ca_bundle), retry_backoff_factor=0.01,
                                      retry_status=20)
    for _ in range(5):
        assert list(retrying.container_apps.list_by_resource_group(aca_emulator.resource_group)) == []
    assert aca_emulator.stats["injected_errors"] >= 2
    no_retry.close()
    retrying.close()


def test_create_that_fails_like_a_bad_image(aca_client, aca_emulator):
    aca_emulator.set_faults(fail_images=("quay.io/jupyter/broken*",))
    body = echo_container_app(aca_emulator.environment_id)
    body.template.containers[0].image = "quay.io/jupyter/broken:1"
    poller = aca_client.container_apps.begin_create_or_update(aca_emulator.resource_group, "bad-image", body)
    with pytest.raises(HttpResponseError) as err:
        poller.result(timeout=30)
    assert err.value.error.code == "ContainerAppOperationError"
    assert "quay.io/jupyter/broken:1" in err.value.message
    got = aca_client.container_apps.get(aca_emulator.resource_group, "bad-image")
    assert got.properties.provisioning_state == "Failed"
    assert got.properties.running_status is None  # as ARM lists a failed app: no runningStatus at all
    assert aca_emulator.apps["bad-image"].pid is None


def test_container_that_exits_at_startup_fails_the_create(aca_client, aca_emulator):
    body = echo_container_app(aca_emulator.environment_id)
    body.template.containers[0].args = ["-c", "import sys; print('boom'); sys.exit(3)"]
    poller = aca_client.container_apps.begin_create_or_update(aca_emulator.resource_group, "crashy", body)
    with pytest.raises(HttpResponseError) as err:
        poller.result(timeout=30)
    assert "exited with code 3" in err.value.message
    info = aca_emulator.apps["crashy"]
    assert "boom" in info.log_path.read_text()


def test_crash_after_start_keeps_a_published_running_status(aca_client, aca_emulator, echo_app):
    # "Failed" is no ContainerAppRunningStatus: the app stays Running, the crash shows in the exit code
    echo_app("user-z")
    os.kill(aca_emulator.apps["user-z"].pid, 9)
    wait_until(lambda: aca_emulator.apps["user-z"].exit_code is not None)
    assert aca_emulator.stats["processes_exited"] == 1
    got = aca_client.container_apps.get(aca_emulator.resource_group, "user-z").properties
    assert (got.provisioning_state, got.running_status) == ("Succeeded", "Running")


def test_operation_in_flight_blocks_writes_and_delete_cancels_it(aca_client, aca_emulator):
    rg = aca_emulator.resource_group
    aca_emulator.set_faults(provisioning_delay=2.0)
    poller = aca_client.container_apps.begin_create_or_update(rg, "racy", sleeper_container_app(aca_emulator.environment_id))
    assert aca_client.container_apps.get(rg, "racy").properties.provisioning_state == "InProgress"
    with pytest.raises(HttpResponseError) as err:
        aca_client.container_apps.begin_stop(rg, "racy")
    assert err.value.status_code == 409
    assert err.value.error.code == "ContainerAppOperationInProgress"
    aca_emulator.set_faults(provisioning_delay=0)
    deleting = aca_client.container_apps.begin_delete(rg, "racy")
    with pytest.raises(HttpResponseError):
        poller.result(timeout=30)  # the create was canceled by the delete
    deleting.result(timeout=30)
    assert "racy" not in aca_emulator.apps

    # with concurrent operations allowed, the newer write wins and the older operation ends Canceled
    aca_emulator.set_faults(reject_concurrent_operations=False, provisioning_delay=1.0)
    creating = aca_client.container_apps.begin_create_or_update(rg, "racy", sleeper_container_app(aca_emulator.environment_id))
    stopping = aca_client.container_apps.begin_stop(rg, "racy")
    with pytest.raises(HttpResponseError) as err:
        creating.result(timeout=30)
    assert err.value.error.code == "OperationCanceled"
    assert stopping.result(timeout=30).properties.running_status == "Stopped"
    assert aca_emulator.apps["racy"].pid is None


def test_list_pages_with_next_link(aca_emulator_factory, aca_credential):
    emu = aca_emulator_factory(list_page_size=2)
    client = ContainerAppsAPIClient(aca_credential, emu.subscription_id, base_url=emu.arm_endpoint,
                                    connection_verify=str(emu.ca_bundle), polling_interval=0.05)
    pollers = [
        client.container_apps.begin_create_or_update(emu.resource_group, f"app-{i}", sleeper_container_app(emu.environment_id))
        for i in range(5)
    ]
    for poller in pollers:
        poller.result(timeout=30)
    names = [a.name for a in client.container_apps.list_by_resource_group(emu.resource_group)]
    assert names == [f"app-{i}" for i in range(5)]
    assert len([a.name for a in client.container_apps.list_by_subscription()]) == 5
    client.close()


@pytest.mark.parametrize(
    ("name", "change", "status", "code"),
    [
        ("Bad_Name", {}, 400, "ContainerAppInvalidName"),
        ("a--b", {}, 400, "ContainerAppInvalidName"),
        ("x" * 33, {}, 400, "ContainerAppInvalidName"),
        ("cpu-mem", {"cpu": 0.5, "memory": "2Gi"}, 400, "ContainerAppInvalidResourceTotal"),
        ("cpu-odd", {"cpu": 0.3, "memory": "0.6Gi"}, 400, "ContainerAppInvalidResourceTotal"),
        ("no-image", {"image": None}, 400, "InvalidParameterValueInContainerTemplate"),
        ("no-env", {"env": "other"}, 404, "ManagedEnvironmentNotFound"),
    ],
)
def test_arm_errors(aca_client, aca_emulator, name, change, status, code):
    body = echo_container_app(aca_emulator.environment_id, **{k: v for k, v in change.items() if k in ("cpu", "memory")})
    if "image" in change:
        body.template.containers[0].image = change["image"]
    if "env" in change:
        body.managed_environment_id = aca_emulator.environment_id.rsplit("/", 1)[0] + "/other"
    with pytest.raises(HttpResponseError) as err:
        aca_client.container_apps.begin_create_or_update(aca_emulator.resource_group, name, body)
    assert err.value.status_code == status
    assert err.value.error.code == code
    assert err.value.error.message
    assert aca_emulator.apps == {}


def test_valid_consumption_pairs_are_accepted(aca_client, aca_emulator):
    body = sleeper_container_app(aca_emulator.environment_id)
    body.template.containers[0].resources = models.ContainerResources(cpu=1.75, memory="3.5Gi")
    result = aca_client.container_apps.begin_create_or_update(aca_emulator.resource_group, "big", body).result()
    assert result.properties.provisioning_state == "Succeeded"


def test_unknown_app_is_resource_not_found(aca_client, aca_emulator):
    for call in (aca_client.container_apps.get, aca_client.container_apps.begin_stop):
        with pytest.raises(ResourceNotFoundError) as err:
            call(aca_emulator.resource_group, "nope")
        assert err.value.error.code == "ResourceNotFound"


def test_bearer_token_is_required(aca_emulator):
    class EmptyToken:
        def get_token(self, *scopes, **kwargs):
            return AccessToken("", 2**31)

    client = ContainerAppsAPIClient(EmptyToken(), aca_emulator.subscription_id, base_url=aca_emulator.arm_endpoint,
                                    connection_verify=str(aca_emulator.ca_bundle))
    with pytest.raises(ClientAuthenticationError) as err:
        client.container_apps.get(aca_emulator.resource_group, "any")
    assert err.value.status_code == 401
    assert err.value.error.code == "InvalidAuthenticationToken"

    url = (f"{aca_emulator.arm_endpoint}/subscriptions/{aca_emulator.subscription_id}/resourceGroups/"
           f"{aca_emulator.resource_group}/providers/Microsoft.App/containerApps?api-version=2025-01-01")
    response = arm_session(aca_emulator, "unused").get(url, headers={"Authorization": None}, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert aca_emulator.stats["auth_failures"] == 2
    client.close()


def test_static_credential_and_custom_scopes(aca_emulator):
    # the client may be given credential_scopes for a non-public cloud; the emulator accepts any token
    client = ContainerAppsAPIClient(StaticTokenCredential("anything"), aca_emulator.subscription_id,
                                    base_url=aca_emulator.arm_endpoint, connection_verify=str(aca_emulator.ca_bundle),
                                    credential_scopes=["https://management.core.usgovcloudapi.net/.default"])
    assert list(client.container_apps.list_by_resource_group(aca_emulator.resource_group)) == []
    client.close()

