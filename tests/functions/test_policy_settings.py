"""App settings (validated lazily, naming what is missing) and the request policy."""

from __future__ import annotations

import dataclasses
import json
import secrets
from pathlib import Path

import pytest
from fn_support import HOME_STORAGE, base_env, home_volume, request

from acaspawner.contract import Op, Request, ServerSpec, Volume
from acaspawner.naming import home_folder, legacy_home_folder, server_key
from functions.policy import ForeignHub, PolicyViolation, check_request, image_allowed, key_belongs_to
from functions.settings import Settings, SettingsError, read_host_limits
from local.funchost import parse_timespan

REPO = Path(__file__).resolve().parents[2]


def test_defaults(settings):
    assert settings.queue_name == "aca-lifecycle" and settings.table_name == "acaservers"
    assert settings.max_cpu == 4 and settings.max_memory_gi == 8
    assert settings.stop_mode == "delete" and settings.arm_poll_interval == 1
    assert settings.seal_max_age == 900 and not settings.home_delete_on_delete
    assert settings.allowed_images == ("quay.io/jupyter/*", "example.org/notebook:*")


@pytest.mark.parametrize("missing", ["ACA_HUB_ID", "ACA_SEALING_KEYS", "ACA_SUBSCRIPTION_ID", "ACA_RESOURCE_GROUP",
                                     "ACA_ENVIRONMENT_ID", "ACA_LOCATION", "ACA_ALLOWED_IMAGES", "AcaStorage"])
def test_a_missing_setting_is_named(missing):
    env = base_env()
    del env[missing]
    with pytest.raises(SettingsError, match=missing):
        Settings.from_environ(env)


def test_all_problems_at_once():
    with pytest.raises(SettingsError) as info:
        Settings.from_environ({"ACA_MAX_CPU": "lots", "ACA_STOP_MODE": "pause"})
    text = str(info.value)
    for name in ("ACA_HUB_ID", "ACA_SEALING_KEYS", "ACA_MAX_CPU", "ACA_STOP_MODE", "AcaStorage"):
        assert name in text


@pytest.mark.parametrize("changes, name", [
    ({"ACA_SEALING_KEYS": "not-a-key"}, "ACA_SEALING_KEYS"),
    ({"ACA_MAX_MEMORY": "8GB"}, "ACA_MAX_MEMORY"),
    ({"ACA_REGISTRY_SERVER": "r.azurecr.io"}, "ACA_REGISTRY_IDENTITY"),
    ({"ACA_HOME_SHARE_NAME": ""}, "ACA_HOME_SHARE_NAME"),
    ({"ACA_HOME_FILES_ACCOUNT_URL": "http://x.file.core.windows.net"}, "ACA_HOME_FILES_ACCOUNT_URL"),
    ({"ACA_HOME_MOUNT_PATH": "home/jovyan"}, "ACA_HOME_MOUNT_PATH"),
    ({"ACA_HOME_MOUNT_PATH": "/"}, "ACA_HOME_MOUNT_PATH"),
    ({"ACA_HOME_MOUNT_OPTIONS": "uid=1000\nx"}, "ACA_HOME_MOUNT_OPTIONS"),
    ({"ACA_HOME_FILES_CA_BUNDLE": "/nonexistent/ca.pem"}, "ACA_HOME_FILES_CA_BUNDLE"),
    ({"ACA_ARM_ENDPOINT": "http://127.0.0.1:1"}, "ACA_ARM_ENDPOINT"),
    ({"ACA_ARM_CA_BUNDLE": "/nonexistent/ca.pem"}, "ACA_ARM_CA_BUNDLE"),
    ({"ACA_HOME_DELETE_ON_DELETE": "maybe"}, "ACA_HOME_DELETE_ON_DELETE"),
    ({"ACA_ARM_TOKEN": "static"}, "ACA_ARM_TOKEN"),
])
def test_invalid_values_are_named(changes, name):
    with pytest.raises(SettingsError, match=name):
        Settings.from_environ(base_env(**changes))


def test_secrets_stay_out_of_repr():
    account_key = secrets.token_hex(8)  # made here: no key-shaped literal in the repository
    env = base_env(ACA_ARM_TOKEN="arm-token-xyz", ACA_ARM_ENDPOINT="https://127.0.0.1:1",
                   AcaStorage=f"AccountName=a;AccountKey={account_key}")
    text = repr(Settings.from_environ(env))
    for secret in ("arm-token-xyz", account_key, env["ACA_SEALING_KEYS"]):
        assert secret not in text


def test_identity_based_storage():
    env = base_env()
    del env["AcaStorage"]
    env.update({"AcaStorage__queueServiceUri": "https://a.queue.core.windows.net",
                "AcaStorage__tableServiceUri": "https://a.table.core.windows.net", "AcaStorage__clientId": "cid"})
    assert Settings.from_environ(env).storage.client_id == "cid"


def test_host_limits_come_from_host_json():
    host = json.loads((REPO / "host.json").read_text())
    limits = read_host_limits()
    assert limits.max_dequeue_count == host["extensions"]["queues"]["maxDequeueCount"] == 5
    assert limits.function_timeout == 600


def test_host_json_is_tuned_for_spawning():
    host = json.loads((REPO / "host.json").read_text())
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"
    assert parse_timespan(queues["maxPollingInterval"], numbers_are_ms=True) <= 5
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"


def test_local_settings_example_covers_every_function_setting():
    example = json.loads((REPO / "local.settings.example.json").read_text())
    values = example["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == values["AcaStorage"] == "UseDevelopmentStorage=true"
    documented = (REPO / "docs" / "settings.md").read_text()
    for name in values:
        if name.startswith("ACA_"):
            assert f"`{name}`" in documented, name
    for name in ("ACA_HUB_ID", "ACA_SEALING_KEYS", "ACA_ALLOWED_IMAGES", "ACA_LIFECYCLE_QUEUE", "ACA_ENVIRONMENT_ID"):
        assert name in values


# -- policy ------------------------------------------------------------------


def test_image_globs():
    patterns = ("quay.io/jupyter/*", "example.org/notebook:*")
    assert image_allowed("quay.io/jupyter/base-notebook:2025-01-01", patterns)
    assert image_allowed("example.org/notebook:1", patterns)
    assert not image_allowed("example.org/other:1", patterns)
    assert not image_allowed("evil.io/quay.io/jupyter/x", patterns)
    assert not image_allowed("quay.io/jupyter/x y", patterns)


def test_a_valid_request_passes(settings):
    check_request(request(), settings)
    check_request(request(Op.STOP), settings)


@pytest.mark.parametrize("changes, words", [
    ({"image": "docker.io/evil/miner:latest"}, "not allowed"),
    ({"cpu": 8.0}, "cpu"),
    ({"memory": "16Gi"}, "memory"),
    ({"memory": "lots"}, "memory"),
    ({"volumes": [Volume(name="data", storage_name="other", mount_path="/data")]}, "home storage"),
    ({"volumes": [dataclasses.replace(home_volume(), sub_path="../bob")]}, "not the home folder of user 'alice'"),
    ({"volumes": [dataclasses.replace(home_volume(), sub_path="/abs")]}, "not the home folder"),
    ({"volumes": [dataclasses.replace(home_volume(), sub_path=".")]}, "not the home folder"),
    # another user's folder, by either naming
    ({"volumes": [dataclasses.replace(home_volume(), sub_path=home_folder("bob"))]}, "not the home folder"),
    ({"volumes": [home_volume("bob")]}, "not the home folder"),
    ({"volumes": [home_volume(), dataclasses.replace(home_volume(), name="data")]}, "one volume at most"),
    ({"volumes": [dataclasses.replace(home_volume(), name="Bad_Name")]}, "invalid volume name"),
])
def test_violations(settings, changes, words):
    with pytest.raises(PolicyViolation, match=words):
        check_request(request(**changes), settings)


def test_workload_profiles_are_the_operators_choice(settings):
    """L3: a dedicated or GPU profile bills per node; only the profiles the settings allow may be asked for."""
    check_request(request(workload_profile="Consumption"), settings)
    check_request(request(), settings)  # none named: the environment's default
    with pytest.raises(PolicyViolation, match="workload profile 'gpu-a100' is not allowed here"):
        check_request(request(workload_profile="gpu-a100"), settings)
    pinned = Settings.from_environ(base_env(ACA_WORKLOAD_PROFILE="d4"))
    check_request(request(workload_profile="D4"), pinned)
    with pytest.raises(PolicyViolation):
        check_request(request(workload_profile="Consumption"), pinned)
    several = Settings.from_environ(base_env(ACA_ALLOWED_WORKLOAD_PROFILES="Consumption, gpu-a100"))
    check_request(request(workload_profile="gpu-a100"), several)


def test_the_users_own_folder_by_either_naming_or_none_passes(settings):
    for sub_path in (home_folder("alice"), legacy_home_folder("alice"), ""):
        check_request(request(volumes=[dataclasses.replace(home_volume(), sub_path=sub_path)]), settings)
    # what the hub says about where and how to mount does not count (the functions' settings do)
    check_request(request(volumes=[dataclasses.replace(home_volume(), mount_path="relative", mount_options="\n")]),
                  settings)


def test_a_delete_may_only_name_its_users_own_home(settings):
    own = Request(op=Op.DELETE, hub_id="hub-test", server_key=server_key("hub-test", "alice"), user="alice",
                  server_name="", generation=1, spec=ServerSpec(image="x", volumes=[home_volume()]))
    check_request(own, settings)
    bobs = dataclasses.replace(own, spec=ServerSpec(image="x", volumes=[home_volume("bob")]))
    with pytest.raises(PolicyViolation, match="not the home folder"):
        check_request(bobs, settings)


def test_volumes_need_a_home_storage():
    env = base_env()
    for name in ("ACA_HOME_STORAGE_NAME", "ACA_HOME_FILES_ACCOUNT_URL", "ACA_HOME_SHARE_NAME"):
        del env[name]
    with pytest.raises(PolicyViolation, match="no home storage"):
        check_request(request(), Settings.from_environ(env))


def test_another_hubs_request_is_foreign(settings):
    with pytest.raises(ForeignHub):
        check_request(request(hub_id="other-hub"), settings)


def test_a_server_key_must_belong_to_its_user(settings):
    forged = Request(op=Op.STOP, hub_id="hub-test", server_key=server_key("hub-test", "bob"), user="alice",
                     server_name="", generation=1)
    assert not key_belongs_to(forged)
    with pytest.raises(PolicyViolation, match="does not match"):
        check_request(forged, settings)
    prefixed = Request(op=Op.STOP, hub_id="hub-test", server_key=server_key("hub-test", "alice", prefix="nb"),
                       user="alice", server_name="", generation=1)
    assert key_belongs_to(prefixed)


def test_home_storage_name_is_the_only_storage(settings):
    assert settings.home_storage_name == HOME_STORAGE


def test_culling_users_and_deleting_homes_do_not_go_together():
    """L5: the culler deletes users idle for an hour; removing homes on delete would take their files too."""
    from functions.appsettings import InvalidSetting
    from functions.culler import CullOptions

    both = {"ACA_CULL_USERS": "true", "ACA_HOME_DELETE_ON_DELETE": "true"}
    with pytest.raises(SettingsError, match="ACA_CULL_USERS and ACA_HOME_DELETE_ON_DELETE must not both be true"):
        Settings.from_environ(base_env(**both))
    with pytest.raises(InvalidSetting, match="must not both be true"):
        CullOptions.from_settings(both)
    # culling users alone: admins are spared unless asked for
    assert CullOptions.from_settings({"ACA_CULL_USERS": "true"}).cull_admin_users is False
    assert CullOptions.from_settings({"ACA_CULL_USERS": "true", "ACA_CULL_ADMIN_USERS": "true"}).cull_admin_users
    assert CullOptions.from_settings({}).cull_admin_users is True
