"""The pure ARM body builder: routing rules, secrets, identity, tags, resources, volumes."""

from __future__ import annotations

import json
import re

import pytest
from fn_support import ENV_ID, HOME_STORAGE, TOKEN, base_env, request

from acaspawner.contract import Volume
from acaspawner.naming import home_folder
from functions.app_body import MAX_TAG_VALUE, build_container_app, secret_names, tag_value
from functions.settings import Settings


def build(req, settings, **kwargs):
    """The body for ``req``, its home (when it asks for one) being the user's folder."""
    kwargs.setdefault("home_folder", home_folder(req.user) if req.spec.volumes else "")
    return build_container_app(req, settings, **kwargs)


def test_ingress_is_internal_plain_http_and_allows_insecure(settings):
    body = build(request(), settings)
    ingress = body["properties"]["configuration"]["ingress"]
    assert ingress == {"external": False, "targetPort": 8888, "transport": "http", "allowInsecure": True}
    assert body["properties"]["configuration"]["activeRevisionsMode"] == "Single"
    assert body["properties"]["template"]["scale"] == {"minReplicas": 1, "maxReplicas": 1}


def test_target_port_follows_the_spec(settings):
    body = build(request(target_port=9999), settings)
    assert body["properties"]["configuration"]["ingress"]["targetPort"] == 9999


def test_the_token_travels_only_as_a_secret_reference(settings):
    body = build(request(), settings)
    container = body["properties"]["template"]["containers"][0]
    token_env = [e for e in container["env"] if e["name"] == "JUPYTERHUB_API_TOKEN"]
    assert token_env == [{"name": "JUPYTERHUB_API_TOKEN", "secretRef": "jupyterhub-api-token"}]
    assert body["properties"]["configuration"]["secrets"] == [{"name": "jupyterhub-api-token", "value": TOKEN}]
    # the token appears exactly once in the whole body: as the secret's value
    assert json.dumps(body).count(TOKEN) == 1
    assert all("value" not in e or TOKEN not in e["value"] for e in container["env"])
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert plain == {"JUPYTERHUB_USER": "alice", "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}


def test_a_name_in_both_env_and_secret_env_is_only_a_secret(settings):
    req = request(env={"JUPYTERHUB_API_TOKEN": "plain!"}, secret_env={"JUPYTERHUB_API_TOKEN": TOKEN})
    container = build(req, settings)["properties"]["template"]["containers"][0]
    assert container["env"] == [{"name": "JUPYTERHUB_API_TOKEN", "secretRef": "jupyterhub-api-token"}]


def test_no_identity_on_the_app_without_a_private_registry(settings):
    body = build(request(), settings)
    assert "identity" not in body
    assert "registries" not in body["properties"]["configuration"]
    assert "identitySettings" not in body["properties"]["configuration"]


def test_registry_pull_identity_is_only_for_the_platform():
    identity = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull"
    settings = Settings.from_environ(base_env(ACA_REGISTRY_SERVER="myreg.azurecr.io", ACA_REGISTRY_IDENTITY=identity))
    body = build(request(), settings)
    configuration = body["properties"]["configuration"]
    assert configuration["registries"] == [{"server": "myreg.azurecr.io", "identity": identity}]
    # ACA needs the pull identity assigned; lifecycle None keeps it away from the user's code
    assert body["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}}
    assert configuration["identitySettings"] == [{"identity": identity, "lifecycle": "None"}]


def test_tags_resources_location_environment(settings):
    req = request(user="alice", server_name="gpu", cpu=1.0, memory="2Gi")
    body = build(req, settings)
    assert body["location"] == "westeurope"
    assert body["properties"]["environmentId"] == settings.environment_id
    assert body["tags"] == {"aca-hub": "hub-test", "aca-user": "alice", "aca-server": "gpu",
                            "aca-generation": str(req.generation)}
    container = body["properties"]["template"]["containers"][0]
    assert container["name"] == "notebook"
    assert container["image"] == "example.org/notebook:1"
    assert container["resources"] == {"cpu": 1.0, "memory": "2Gi"}
    assert container["command"] == ["jupyterhub-singleuser"]
    assert container["args"] == ["--ServerApp.allow_origin=https://hub.example.org"]


def test_user_tag_is_sanitised_and_truncated(settings):
    long_user = "ü" * 300 + "\n\x00x"
    assert len(tag_value(long_user)) == MAX_TAG_VALUE
    assert "\n" not in tag_value("a\nb") and tag_value("a\nb") == "ab"
    body = build(request(user=long_user), settings)
    assert len(body["tags"]["aca-user"]) <= MAX_TAG_VALUE


def test_workload_profile_from_spec_or_settings(settings):
    assert "workloadProfileName" not in build(request(), settings)["properties"]
    assert build(request(workload_profile="D4"), settings)["properties"]["workloadProfileName"] == "D4"
    configured = Settings.from_environ(base_env(ACA_WORKLOAD_PROFILE="Consumption"))
    assert build(request(), configured)["properties"]["workloadProfileName"] == "Consumption"
    assert build(request(workload_profile="D4"), configured)["properties"]["workloadProfileName"] == "D4"


def test_the_home_is_the_users_folder_mounted_as_the_functions_say(settings):
    body = build(request(), settings)
    template = body["properties"]["template"]
    assert template["volumes"] == [{
        "name": "home", "storageType": "AzureFile", "storageName": HOME_STORAGE,
        "mountOptions": "uid=1000,gid=100,dir_mode=0755,file_mode=0644,mfsymlinks,nobrl",
    }]
    assert template["containers"][0]["volumeMounts"] == [
        {"volumeName": "home", "mountPath": "/home/jovyan", "subPath": home_folder("alice")}
    ]


def test_the_requests_mount_path_and_options_do_not_count(settings):
    hub_says = Volume(name="data", storage_name=HOME_STORAGE, mount_path="/etc", mount_options="uid=0,gid=0",
                      sub_path="")
    configured = Settings.from_environ(base_env(ACA_HOME_MOUNT_PATH="/home/rstudio/",
                                                ACA_HOME_MOUNT_OPTIONS="uid=1001,gid=1001,nobrl"))
    template = build(request(volumes=[hub_says]), configured)["properties"]["template"]
    assert template["volumes"][0]["name"] == "home" and template["volumes"][0]["mountOptions"] == "uid=1001,gid=1001,nobrl"
    assert template["containers"][0]["volumeMounts"] == [
        {"volumeName": "home", "mountPath": "/home/rstudio", "subPath": home_folder("alice")}]


def test_a_home_without_its_folder_is_not_built(settings):
    with pytest.raises(ValueError, match="home folder"):
        build(request(), settings, home_folder="")


def test_no_volumes_no_mounts(settings):
    body = build(request(volumes=[]), settings)
    assert body["properties"]["template"]["volumes"] == []
    assert "volumeMounts" not in body["properties"]["template"]["containers"][0]


def test_secret_names_are_valid_and_unique():
    names = secret_names(["JUPYTERHUB_API_TOKEN", "A_B", "A-B", "_", "9lives", "x" * 300])
    assert names["JUPYTERHUB_API_TOKEN"] == "jupyterhub-api-token"
    assert len(set(names.values())) == len(names)
    for name in names.values():
        assert name[0].isalpha() and name[-1].isalnum() and len(name) <= 60
        assert all(c.islower() or c.isdigit() or c == "-" for c in name)


def test_an_empty_secret_is_an_empty_plain_variable(settings):
    req = request(secret_env={"JUPYTERHUB_API_TOKEN": TOKEN, "OPTIONAL": ""})
    body = build(req, settings)
    env = body["properties"]["template"]["containers"][0]["env"]
    assert {"name": "OPTIONAL", "value": ""} in env
    assert [s["name"] for s in body["properties"]["configuration"]["secrets"]] == ["jupyterhub-api-token"]


def test_the_body_is_accepted_by_the_sdk_model(settings):
    from azure.mgmt.appcontainers.models import ContainerApp

    app = ContainerApp(build(request(), settings))
    assert app.configuration.ingress.transport == "http"
    assert app.template.containers[0].env[-1].secret_ref == "jupyterhub-api-token"


def test_an_internal_environment_of_the_pool_gets_network_ingress_and_the_hubs_reachable_api():
    """Environments 2..N: internal ingress would be reachable from their own environment only, and the hub's
    internal name does not resolve there (docs/deploy.md, "More than one environment")."""
    other = ENV_ID.rsplit("/", 1)[0] + "/cae-two"
    pool = json.dumps([{"id": ENV_ID},
                       {"id": other, "vnet_ingress": True, "hub_api_url": "https://hub.example.org/hub/api/",
                        "allow_from": ["10.42.0.0/23"]}])
    settings = Settings.from_environ(base_env(ACA_ENVIRONMENTS=pool))
    hub_env = {"JUPYTERHUB_API_URL": "http://jupyterhub:8081/hub/api",
               "JUPYTERHUB_ACTIVITY_URL": "http://jupyterhub:8081/hub/api/users/alice/activity",
               "JUPYTERHUB_USER": "alice"}
    req = request(env=hub_env)

    def plain_env(body: dict) -> dict[str, str]:
        container = body["properties"]["template"]["containers"][0]
        return {e["name"]: e["value"] for e in container["env"] if "value" in e}

    moved = build(req, settings, environment_id=other)
    assert moved["properties"]["environmentId"] == other
    assert moved["properties"]["configuration"]["ingress"]["external"] is True
    # L1: the virtual network's ingress, open to the hub's proxy only
    assert moved["properties"]["configuration"]["ingress"]["ipSecurityRestrictions"] == [
        {"name": "hub-1", "description": "the hub's proxy", "ipAddressRange": "10.42.0.0/23", "action": "Allow"}]
    assert plain_env(moved) == {"JUPYTERHUB_API_URL": "https://hub.example.org/hub/api",
                                "JUPYTERHUB_ACTIVITY_URL": "https://hub.example.org/hub/api/users/alice/activity",
                                "JUPYTERHUB_USER": "alice"}
    # the hub's own environment: unchanged (internal ingress, the hub's internal address)
    home = build(req, settings, environment_id=ENV_ID)
    assert home["properties"]["configuration"]["ingress"]["external"] is False
    assert "ipSecurityRestrictions" not in home["properties"]["configuration"]["ingress"]
    assert plain_env(home) == hub_env


def test_pool_entries_are_checked():
    from fn_support import ENV_ID

    for entry, problem in [({"id": ENV_ID, "vnet_ingress": "yes"}, "true or false as vnet_ingress"),
                           ({"id": ENV_ID, "hub_api_url": "jupyterhub:8081"}, "http(s) URL as hub_api_url"),
                           ({"id": ENV_ID, "zone": 1}, "unknown keys ['zone']"),
                           ({"id": ENV_ID, "vnet_ingress": True}, "vnet_ingress without allow_from"),
                           ({"id": ENV_ID, "vnet_ingress": True, "allow_from": ["10.0.0.300/8"]}, "invalid address"),
                           ({"id": ENV_ID, "allow_from": ["10.0.0.0/8"]}, "allow_from without vnet_ingress")]:
        with pytest.raises(Exception, match=re.escape(problem)):
            Settings.from_environ(base_env(ACA_ENVIRONMENTS=json.dumps([entry])))
