"""The functions' ARM gateway (``ArmApps``), every method through the real SDK against the emulator.

Fakes answer what a test expects; ARM answers what the published API says:
PUT 201 with ``Azure-AsyncOperation``, Stop/Start/Delete 202 with a
``Location`` and no body, 204 for deleting nothing, 403 on a read the
identity may not make. Each answer below is the emulator's, which
``tests/microsoft_app`` holds to the published Microsoft.App examples.
"""

from __future__ import annotations

import inspect
import sys
import uuid
from pathlib import Path

import pytest
from fn_support import emulator_env
from waiting import wait_until

from functions.arm import ArmApps, TerminalArmError, for_users, make_client
from functions.settings import Settings
from local.emulator import pytest_fixtures

aca_emulator_factory = pytest_fixtures.aca_emulator_factory

SERVER = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "8888"]


def app_body(environment_id: str, image: str = "quay.io/jupyter/base-notebook:latest") -> dict:
    return {
        "location": "westeurope",
        "tags": {"aca-generation": "1"},
        "properties": {
            "environmentId": environment_id,
            "configuration": {"ingress": {"external": False, "targetPort": 8888, "transport": "http",
                                          "allowInsecure": True}},
            "template": {
                "containers": [{"name": "notebook", "image": image, "command": SERVER,
                                "resources": {"cpu": 0.5, "memory": "1Gi"}}],
                "scale": {"minReplicas": 1, "maxReplicas": 1},
            },
        },
    }


@pytest.fixture
def emulator(aca_emulator_factory):
    return aca_emulator_factory(retry_after=2)


@pytest.fixture
def apps(emulator):
    settings = Settings.from_environ(emulator_env(emulator, ACA_ARM_TOKEN="emulator-token"))
    gateway = ArmApps.for_settings(make_client(settings), settings)
    yield gateway
    gateway.close()


def settled(emulator, name: str, state: str = "Succeeded", running: str | None = "Running") -> None:
    def done() -> bool:
        app = emulator.apps.get(name)
        return app is not None and (app.provisioning_state, app.running_status) == (state, running)

    wait_until(done, timeout=30, interval=0.05, what=f"{name} to be {state}/{running}",
               describe=lambda: str(emulator.apps.get(name)))


def test_create_stop_start_and_delete_answer_what_arm_answers(emulator, apps):
    created = apps.send_create_or_update("user-a", app_body(emulator.environment_id))
    assert not created.done and "/containerappOperationStatuses/" in created.operation_url
    assert created.retry_after == 2
    settled(emulator, "user-a")

    stopped = apps.send_stop("user-a")  # 202, Location, no body
    assert not stopped.done and "/containerappOperationResults/" in stopped.operation_url
    assert stopped.retry_after == 2
    settled(emulator, "user-a", running="Stopped")
    assert emulator.apps["user-a"].pid is None

    started = apps.send_start("user-a")  # 202, Location, no body
    assert not started.done and "/containerappOperationResults/" in started.operation_url
    settled(emulator, "user-a")
    assert emulator.apps["user-a"].pid is not None

    deleted = apps.send_delete("user-a")
    assert not deleted.done and "/containerappOperationResults/" in deleted.operation_url
    wait_until(lambda: "user-a" not in emulator.apps, timeout=30, what="the app to be deleted")
    stats = emulator.stats
    assert (stats["creates"], stats["stops"], stats["starts"], stats["deletes"]) == (1, 1, 1, 1)


def test_every_write_carries_the_hubs_request_id_to_arm(emulator, apps):
    """x-ms-client-request-id: what the Azure activity log shows, here the emulator's ARM request log."""
    ids = {what: str(uuid.uuid4()) for what in ("create", "stop", "start", "delete")}
    apps.send_create_or_update("user-i", app_body(emulator.environment_id), request_id=ids["create"])
    settled(emulator, "user-i")
    apps.send_stop("user-i", request_id=ids["stop"])
    settled(emulator, "user-i", running="Stopped")
    apps.send_start("user-i", request_id=ids["start"])
    settled(emulator, "user-i")
    apps.send_delete("user-i", request_id=ids["delete"])
    apps.send_delete("user-j")  # none given: the SDK's own id
    lines = Path(emulator.info()["arm_request_log"]).read_text().splitlines()
    writes = [line.split() for line in lines if line.split()[1] in ("PUT", "POST", "DELETE")]
    assert [(w[1], w[2].rsplit("/", 1)[-1], w[4]) for w in writes] == [
        ("PUT", "user-i", f"client-request-id={ids['create']}"),
        ("POST", "stop", f"client-request-id={ids['stop']}"),
        ("POST", "start", f"client-request-id={ids['start']}"),
        ("DELETE", "user-i", f"client-request-id={ids['delete']}"),
        ("DELETE", "user-j", writes[-1][4]),
    ]
    assert writes[-1][4] not in {f"client-request-id={i}" for i in ids.values()} | {"client-request-id=-"}


def test_deleting_or_stopping_nothing_is_done_at_once_and_starting_nothing_fails(apps):
    assert apps.send_delete("user-gone").done  # ARM answers 204
    assert apps.send_stop("user-gone").done
    with pytest.raises(TerminalArmError) as refused:
        apps.send_start("user-gone")
    assert refused.value.status == 404 and refused.value.code == "ResourceNotFound"


def test_get_and_list_read_the_apps_of_the_resource_group(emulator, apps):
    assert apps.get("user-none") is None
    emulator.set_faults(list_page_size=2)  # three apps: two pages, one nextLink
    for name in ("user-a", "user-b", "user-c"):
        apps.send_create_or_update(name, app_body(emulator.environment_id))
    for name in ("user-a", "user-b", "user-c"):
        settled(emulator, name)
    app = apps.get("user-b")
    assert app["name"] == "user-b" and app["properties"]["configuration"]["ingress"]["fqdn"]
    assert app["tags"] == {"aca-generation": "1"}
    assert sorted(a["name"] for a in apps.list()) == ["user-a", "user-b", "user-c"]
    assert [len(page) for page in apps.pages()] == [2, 1]  # one ARM read per page


class _ForgedPages:
    """A client whose every listing page is one app and a nextLink elsewhere (ARM never answers so)."""

    def __init__(self, arm: str, next_link: str):
        self._config = type("Config", (), {"api_version": "2025-01-01", "subscription_id": "s"})()
        self.arm, self.next_link, self.urls = arm, next_link, []

    def send_request(self, request):
        url = request.url if "://" in request.url else f"https://{self.arm}{request.url}"  # as the client formats it
        self.urls.append(url)
        body = {"value": [{"name": f"app-{len(self.urls)}"}], "nextLink": self.next_link}
        sent = type("Sent", (), {"url": url})()
        return type("Response", (), {"status_code": 200, "request": sent, "json": lambda _self: body})()


@pytest.mark.parametrize("elsewhere", [
    "https://attacker.example/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps?page=2",
    "http://{arm}/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps?page=2",
    "https://{arm}/subscriptions/s/resourceGroups/other/providers/Microsoft.App/containerApps?page=2",
    "https://{arm}/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/../../../../x",
])
def test_a_listing_follows_a_next_link_only_below_its_own_url(elsewhere):
    arm = "management.example"
    client = _ForgedPages(arm, elsewhere.format(arm=arm))
    gateway = ArmApps(client, "rg", "")
    assert [a["name"] for a in gateway.list()] == ["app-1"]
    assert client.urls == [f"https://{arm}/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps"
                           "?api-version=2025-01-01"]


def test_the_listing_asks_for_the_api_version_of_the_sdk_it_runs_with(emulator):
    """The listing reads the pinned SDK's own subscription and api-version; an SDK that moves them fails here,
    not in Azure."""
    settings = Settings.from_environ(emulator_env(emulator, ACA_ARM_TOKEN="emulator-token"))
    client = make_client(settings)
    try:
        version = client._config.api_version
        assert isinstance(version, str) and len(version) == 10 and version[:2] == "20"
        assert client._config.subscription_id == settings.subscription_id
    finally:
        client.close()


def test_a_failed_operation_reports_arms_own_code_and_message(emulator, apps):
    emulator.set_faults(fail_images=["example.org/notebook:broken"])
    accepted = apps.send_create_or_update("user-f", app_body(emulator.environment_id, "example.org/notebook:broken"))
    settled(emulator, "user-f", state="Failed", running=None)
    error = apps.operation_error(accepted.operation_url)
    assert isinstance(error, TerminalArmError) and error.code == "ContainerAppOperationError"
    assert "MANIFEST_UNKNOWN" in error.message


def test_a_succeeded_operation_has_no_error(emulator, apps):
    accepted = apps.send_create_or_update("user-s", app_body(emulator.environment_id))
    settled(emulator, "user-s")
    assert apps.operation_error(accepted.operation_url) is None
    assert apps.operation_error("") is None


def test_a_refused_or_unknown_operation_read_is_no_error_of_the_operation(emulator, apps):
    """ARM answers 403 (no right to read operations) or 404 (expired): neither is why the app failed."""
    emulator.set_faults(fail_images=["example.org/notebook:broken"])
    accepted = apps.send_create_or_update("user-r", app_body(emulator.environment_id, "example.org/notebook:broken"))
    settled(emulator, "user-r", state="Failed", running=None)
    emulator.set_faults(refuse_operation_reads=True)
    assert apps.operation_error(accepted.operation_url) is None
    emulator.set_faults(refuse_operation_reads=False)
    unknown = accepted.operation_url.replace(accepted.operation_url.split("/")[-1].split("?")[0], "no-such-op")
    assert apps.operation_error(unknown) is None


def test_an_environment_reports_whether_it_is_internal(aca_emulator_factory):
    emulator = aca_emulator_factory(more_environments=["cae-inside"], internal_environments=["cae-inside"])
    settings = Settings.from_environ(emulator_env(emulator, ACA_ARM_TOKEN="emulator-token"))
    gateway = ArmApps.for_settings(make_client(settings), settings)
    try:
        outside, inside = emulator.environment_ids
        assert (gateway.environment_is_internal(outside), gateway.environment_is_internal(inside)) == (False, True)
        with pytest.raises(TerminalArmError) as missing:
            gateway.environment_is_internal(outside + "-gone")
        assert missing.value.status == 404
    finally:
        gateway.close()


def test_an_operation_url_elsewhere_is_never_sent_the_arm_token(aca_emulator_factory, emulator, apps):
    """The functions read an operation with their ARM token only on the ARM host, under their subscription."""
    # another HTTPS endpoint the client would trust (same test CA), counting what reaches it
    elsewhere = aca_emulator_factory(state_dir=emulator.state_dir)
    sub, arm = emulator.subscription_id, emulator.arm_endpoint
    operations = f"/subscriptions/{sub}/providers/Microsoft.App/locations/westeurope/containerappOperationStatuses"
    refused = [
        f"{elsewhere.arm_endpoint}{operations}/1",  # another host
        arm.replace("https://", "http://") + f"{operations}/1",  # no TLS
        f"{arm}/subscriptions/00000000-0000-0000-0000-00000000dead/providers/Microsoft.App/locations/x/op/1",
        f"{arm}/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x",
        f"{arm}/subscriptions/{sub}/providers/Microsoft.App/../../../{elsewhere.arm_endpoint}",
        f"{arm}/subscriptions/{sub}/providers/Microsoft.App/%2e%2e/%2e%2e/x",
        arm.replace("https://", "https://someone@") + f"{operations}/1",
        "not a url at all",
    ]
    before = (emulator.stats["requests"], elsewhere.stats["requests"])
    for url in refused:
        assert apps.operation_error(url) is None, url
    assert (emulator.stats["requests"], elsewhere.stats["requests"]) == before


def test_messages_for_users_keep_the_meaning_and_drop_ids():
    message = ("The subscription '3f2b6a1c-0d4e-4b7a-9c1e-2a5d8f0b7e61' has no quota left in "
               "/subscriptions/3f2b6a1c-0d4e-4b7a-9c1e-2a5d8f0b7e61/resourceGroups/rg/providers/Microsoft.App/x.")
    shown = for_users(message)
    assert "3f2b6a1c" not in shown and "/subscriptions/" not in shown
    assert shown.startswith("The subscription '<id>' has no quota left in <Azure resource>")


# every public method of the gateway, and the tests above that run it through the SDK against the emulator
RUN_ABOVE = {
    "send_create_or_update": "test_create_stop_start_and_delete_answer_what_arm_answers",
    "send_stop": "test_create_stop_start_and_delete_answer_what_arm_answers",
    "send_start": "test_create_stop_start_and_delete_answer_what_arm_answers",
    "send_delete": "test_deleting_or_stopping_nothing_is_done_at_once_and_starting_nothing_fails",
    "get": "test_get_and_list_read_the_apps_of_the_resource_group",
    "list": "test_get_and_list_read_the_apps_of_the_resource_group",
    "pages": "test_get_and_list_read_the_apps_of_the_resource_group",
    "operation_error": "test_a_refused_or_unknown_operation_read_is_no_error_of_the_operation",
    "environment_is_internal": "test_an_environment_reports_whether_it_is_internal",
    "close": "apps",
}


def test_no_gateway_method_is_left_to_fakes():
    """A new ArmApps method fails this until a test here runs it against the emulator (DESIGN.md, Trust)."""
    methods = {name for name, _ in inspect.getmembers(ArmApps, inspect.isfunction) if not name.startswith("_")}
    assert methods == set(RUN_ABOVE)
    for where in RUN_ABOVE.values():
        assert where in globals(), where
