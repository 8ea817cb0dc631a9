"""Environment storages and volume mounts: an Azure Files share as a directory, a mount as a path rewrite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from emulator_helpers import ECHO_APP, http_session

from local.emulator.apps import ImageRule, build_launch
from local.emulator.volumes import Mount, local_path, rewrite_paths

ACCOUNT, SHARE = "sthomes", "homes"


def add_storage(client, emulator, name: str = "homes", environment: str | None = None, **azure_file) -> None:
    body = {"properties": {"azureFile": {"accountName": ACCOUNT, "accountKey": "a2V5", "shareName": SHARE,
                                         "accessMode": "ReadWrite", **azure_file}}}
    client.managed_environments_storages.create_or_update(
        emulator.resource_group, environment or emulator.environment_name, name, body)


def share_dir(emulator) -> Path:
    path = emulator.storages.share_dir(ACCOUNT, SHARE)
    path.mkdir(parents=True, exist_ok=True)
    return path


def app_body(emulator, volumes: list[dict], mounts: list[dict], args: list[str] | None = None) -> dict:
    container = {
        "name": "notebook",
        "image": "quay.io/jupyter/base-notebook:latest",
        "command": [sys.executable],
        "args": [str(ECHO_APP), "--port=8888", "--ip", "0.0.0.0", *(args or [])],
        "env": [{"name": "NOTEBOOKS", "value": "/home/jovyan/work"}],
        "resources": {"cpu": 0.5, "memory": "1Gi"},
        "volumeMounts": mounts,
    }
    return {
        "location": emulator.location,
        "properties": {
            "environmentId": emulator.environment_id,
            "configuration": {"ingress": {"external": False, "targetPort": 8888, "transport": "http",
                                          "allowInsecure": True}},
            "template": {"containers": [container], "volumes": volumes, "scale": {"minReplicas": 1, "maxReplicas": 1}},
        },
    }


def home_volume() -> list[dict]:
    return [{"name": "home", "storageType": "AzureFile", "storageName": "homes"}]


def home_mount(sub_path: str = "users/alice") -> list[dict]:
    return [{"volumeName": "home", "mountPath": "/home/jovyan", "subPath": sub_path}]


def create(client, emulator, name: str, body: dict):
    return client.container_apps.begin_create_or_update(emulator.resource_group, name, body).result(timeout=60)


def ask(app) -> dict:
    return http_session().get(f"http://{app.properties.configuration.ingress.fqdn}/", timeout=10).json()


def test_storages_are_kept_per_environment_and_never_answer_their_key(aca_client, aca_emulator):
    add_storage(aca_client, aca_emulator)
    storages = aca_client.managed_environments_storages
    found = storages.get(aca_emulator.resource_group, aca_emulator.environment_name, "homes").as_dict()
    assert found["properties"]["azureFile"] == {"accountName": ACCOUNT, "shareName": SHARE, "accessMode": "ReadWrite"}
    assert found["id"].endswith("/managedEnvironments/cae-emulator/storages/homes")
    listed = storages.list(aca_emulator.resource_group, aca_emulator.environment_name)
    assert [s.name for s in listed.value] == ["homes"]
    storages.delete(aca_emulator.resource_group, aca_emulator.environment_name, "homes")
    with pytest.raises(ResourceNotFoundError):
        storages.get(aca_emulator.resource_group, aca_emulator.environment_name, "homes")


def test_a_storage_needs_its_account_share_and_key(aca_client, aca_emulator):
    with pytest.raises(HttpResponseError) as refused:
        add_storage(aca_client, aca_emulator, accountKey=None)
    assert refused.value.error.code == "InvalidRequestContent" and "accountKey" in refused.value.error.message


def test_the_server_sees_its_folder_of_the_share_as_home_and_working_directory(aca_client, aca_emulator):
    add_storage(aca_client, aca_emulator)
    folder = share_dir(aca_emulator) / "users" / "alice"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("kept")
    (share_dir(aca_emulator) / "users" / "bob").mkdir()
    app = create(aca_client, aca_emulator, "user-alice",
                 app_body(aca_emulator, home_volume(), home_mount(), args=["--notebook-dir=/home/jovyan/work"]))
    seen = ask(app)
    assert seen["env"]["HOME"] == seen["cwd"] == str(folder)
    assert seen["files"] == ["notes.txt"]  # its own folder, not the share's root
    assert seen["argv"][-1] == f"--notebook-dir={folder / 'work'}"  # mount paths are rewritten like ports
    assert seen["env"]["NOTEBOOKS"] == str(folder / "work")
    # what the server writes lands in the share, under its folder
    http_session().post(f"http://{app.properties.configuration.ingress.fqdn}/?write=new.ipynb", data=b"{}",
                        timeout=10)
    assert (folder / "new.ipynb").read_bytes() == b"{}"


def test_files_in_the_share_outlive_the_app_and_its_own_files_do_not(aca_client, aca_emulator):
    add_storage(aca_client, aca_emulator)
    folder = share_dir(aca_emulator) / "users" / "alice"
    folder.mkdir(parents=True)
    volumes = [*home_volume(), {"name": "scratch", "storageType": "EmptyDir"}]
    mounts = [*home_mount(), {"volumeName": "scratch", "mountPath": "/scratch"}]
    body = app_body(aca_emulator, volumes, mounts)
    app = create(aca_client, aca_emulator, "user-alice", body)
    fqdn = app.properties.configuration.ingress.fqdn
    http_session().post(f"http://{fqdn}/?write=kept.txt", data=b"1", timeout=10)
    replica = aca_emulator.apps["user-alice"].log_path.parent / "replica"
    assert (replica / "volumes" / "scratch").is_dir()

    group = aca_emulator.resource_group
    aca_client.container_apps.begin_stop(group, "user-alice").result(timeout=60)
    assert not replica.exists()  # a stopped replica leaves nothing of its own
    aca_client.container_apps.begin_start(group, "user-alice").result(timeout=60)
    assert ask(app)["files"] == ["kept.txt"]
    aca_client.container_apps.begin_delete(group, "user-alice").result(timeout=60)
    assert not replica.exists() and (folder / "kept.txt").read_bytes() == b"1"


def test_without_a_mount_at_home_the_home_is_the_replicas_own_and_starts_empty(aca_client, aca_emulator):
    app = create(aca_client, aca_emulator, "user-plain", app_body(aca_emulator, [], []))
    http_session().post(f"http://{app.properties.configuration.ingress.fqdn}/?write=gone.txt", data=b"x", timeout=10)
    seen = ask(app)
    assert "gone.txt" in seen["files"] and Path(seen["env"]["HOME"]).is_relative_to(aca_emulator.state_dir)
    group = aca_emulator.resource_group
    aca_client.container_apps.begin_stop(group, "user-plain").result(timeout=60)
    aca_client.container_apps.begin_start(group, "user-plain").result(timeout=60)
    assert ask(app)["files"] == []


@pytest.mark.parametrize(("volumes", "mounts", "code", "words"), [
    ([{"name": "home", "storageType": "AzureFile", "storageName": "nope"}], [],
     "ManagedEnvironmentStorageNotFound", "Storage nope not found under managed environment"),
    ([], [{"volumeName": "home", "mountPath": "/home/jovyan"}],
     "ContainerAppInvalidVolumeMount", "Volume 'home' to mount doesn't defined"),
    (home_volume(), [{"volumeName": "home", "mountPath": "/"}], "ContainerAppInvalidMountPath", "mountPath"),
    (home_volume(), [{"volumeName": "home", "mountPath": "/a:b"}], "ContainerAppInvalidMountPath", "':'"),
    ([{"name": "s", "storageType": "Bogus"}], [], "InvalidParameterValue", "does not model"),
    ([{"name": "s", "storageType": "Secret", "secrets": [{"secretRef": "nope"}]}], [],
     "ContainerAppSecretRefNotFound", "SecretRef 'nope' defined for volume 's' not found"),
])
def test_what_arm_refuses_at_once(aca_client, aca_emulator, volumes, mounts, code, words):
    add_storage(aca_client, aca_emulator)
    with pytest.raises(HttpResponseError) as refused:
        create(aca_client, aca_emulator, "user-bad", app_body(aca_emulator, volumes, mounts))
    assert refused.value.status_code == 400 and refused.value.error.code == code
    assert words in refused.value.error.message
    assert aca_emulator.apps == {}


# a container that answers what it finds in the folders named by its args: path → (value, mode)
READ_FILES = r"""
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        files = {}
        for root in sys.argv[1:]:
            for folder, _, names in os.walk(root):
                for name in names:
                    path = os.path.join(folder, name)
                    with open(path) as f:
                        files[path] = [f.read(), oct(os.stat(path).st_mode & 0o777)]
        body = json.dumps({"roots": sys.argv[1:], "files": files}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def secret_app_body(emulator, volumes: list[dict], mounts: list[dict], secrets: dict[str, str]) -> dict:
    body = app_body(emulator, volumes, mounts)
    container = body["properties"]["template"]["containers"][0]
    container["command"] = [sys.executable, "-c", READ_FILES]
    container["args"] = [m["mountPath"] for m in mounts]
    body["properties"]["configuration"]["secrets"] = [{"name": k, "value": v} for k, v in secrets.items()]
    return body


def test_a_secret_volume_is_a_folder_of_the_app_secrets_as_files(aca_client, aca_emulator):
    secrets = {"api-token": "t0ken", "db-password": "pa55\nword"}
    volumes = [{"name": "all", "storageType": "Secret"},  # without secrets: every secret, named after itself
               {"name": "some", "storageType": "Secret",
                "secrets": [{"secretRef": "api-token", "path": "conf/token.txt"}, {"secretRef": "db-password"}]}]
    mounts = [{"volumeName": "all", "mountPath": "/mnt/secrets"}, {"volumeName": "some", "mountPath": "/etc/app/"}]
    app = create(aca_client, aca_emulator, "user-secrets", secret_app_body(aca_emulator, volumes, mounts, secrets))
    seen = http_session().get(f"http://{app.properties.configuration.ingress.fqdn}/", timeout=10).json()
    replica = aca_emulator.apps["user-secrets"].log_path.parent / "replica"
    all_dir, some_dir = (Path(root) for root in seen["roots"])  # the mount paths, rewritten in the args
    assert all_dir == replica / "volumes" / "all" and some_dir == replica / "volumes" / "some"
    assert seen["files"] == {
        str(all_dir / "api-token"): ["t0ken", "0o400"],
        str(all_dir / "db-password"): ["pa55\nword", "0o400"],
        str(some_dir / "conf" / "token.txt"): ["t0ken", "0o400"],
        str(some_dir / "db-password"): ["pa55\nword", "0o400"],
    }
    # the app as ARM answers it names the secrets of its volumes, never their values
    answered = aca_client.container_apps.get(aca_emulator.resource_group, "user-secrets").as_dict()
    assert "t0ken" not in str(answered)
    aca_client.container_apps.begin_stop(aca_emulator.resource_group, "user-secrets").result(timeout=60)
    assert not replica.exists()  # the secrets' files went with the replica


@pytest.mark.parametrize(("items", "words"), [
    ([{"secretRef": "api-token", "path": "../token"}], "must be a relative path"),
    ([{"secretRef": "api-token", "path": "/token"}], "must be a relative path"),
    ([{"path": "token"}], "needs a secretRef"),
    ([{"secretRef": "api-token", "path": "x"}, {"secretRef": "db-password", "path": "x"}], "more than one secret"),
])
def test_what_arm_refuses_in_a_secret_volume(aca_client, aca_emulator, items, words):
    volumes = [{"name": "some", "storageType": "Secret", "secrets": items}]
    body = secret_app_body(aca_emulator, volumes, [], {"api-token": "t", "db-password": "p"})
    with pytest.raises(HttpResponseError) as refused:
        create(aca_client, aca_emulator, "user-bad", body)
    assert refused.value.status_code == 400 and words in refused.value.error.message


@pytest.mark.parametrize(("sub_path", "words"), [
    ("/users/alice", "must be a relative path"),
    ("users/../bob", "must be a relative path"),
    ("users/nobody", "is not a folder of the file share"),
])
def test_a_mount_that_cannot_be_made_fails_the_revision(aca_client, aca_emulator, sub_path, words):
    add_storage(aca_client, aca_emulator)
    (share_dir(aca_emulator) / "users" / "alice").mkdir(parents=True)
    with pytest.raises(HttpResponseError) as failed:
        create(aca_client, aca_emulator, "user-bad", app_body(aca_emulator, home_volume(), home_mount(sub_path)))
    assert failed.value.error.code == "ContainerAppOperationError" and words in failed.value.error.message
    app = aca_emulator.apps["user-bad"]
    assert (app.provisioning_state, app.pid) == ("Failed", None)


def test_a_missing_share_fails_the_revision(aca_client, aca_emulator):
    add_storage(aca_client, aca_emulator, shareName="absent")
    with pytest.raises(HttpResponseError) as failed:
        create(aca_client, aca_emulator, "user-bad", app_body(aca_emulator, home_volume(), home_mount()))
    assert "the file share 'absent'" in failed.value.error.message


def test_paths_are_rewritten_only_at_path_boundaries(tmp_path):
    mounts = [Mount("/home/jovyan", tmp_path / "h"), Mount("/home/jovyan/data", tmp_path / "d")]
    assert rewrite_paths(["/home/jovyan", "--dir=/home/jovyan/work", "/home/jovyan/data/x", "/home/jovyanx",
                          "/opt/home/jovyan", "a:/home/jovyan:b"], mounts) == [
        str(tmp_path / "h"), f"--dir={tmp_path / 'h' / 'work'}", str(tmp_path / "d" / "x"), "/home/jovyanx",
        "/opt/home/jovyan", f"a:{tmp_path / 'h'}:b"]
    assert local_path("/home/jovyan/data/x/y", mounts) == tmp_path / "d" / "x" / "y"
    assert local_path("/srv", mounts) is None
    launch = build_launch({"image": "quay.io/jupyter/minimal-notebook:1"}, {}, [ImageRule("*", home="/home/jovyan",
                          entrypoint=["serve"])], tmp_path / "own", None, None, mounts=mounts)
    assert launch.cwd == tmp_path / "h" and launch.env["HOME"] == str(tmp_path / "h")
