"""Helpers for the functions' tests: app settings, requests, a recording home share."""

from __future__ import annotations

import time
from itertools import count

from acaspawner.contract import Op, Request, ServerSpec, Volume
from acaspawner.naming import server_key
from acaspawner.sealing import generate_key

HUB = "hub-test"
TOKEN = "secret-api-token-4f1d2c"  # the JupyterHub API token every test start carries
ENV_ID = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.App/managedEnvironments/env"
HOME_STORAGE = "homes"

_generations = count(int(time.time() * 1000))


def next_generation() -> int:
    """Milliseconds-based and increasing, as the spawner makes them."""
    return next(_generations)


def base_env(**overrides: str) -> dict[str, str]:
    """A complete set of app settings (storage and ARM point nowhere useful)."""
    env = {
        "AcaStorage": "UseDevelopmentStorage=true",
        "ACA_HUB_ID": HUB,
        "ACA_SEALING_KEYS": generate_key(),
        "ACA_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "ACA_RESOURCE_GROUP": "rg",
        "ACA_ENVIRONMENT_ID": ENV_ID,
        "ACA_LOCATION": "westeurope",
        "ACA_ALLOWED_IMAGES": "quay.io/jupyter/*, example.org/notebook:*",
        "ACA_HOME_STORAGE_NAME": HOME_STORAGE,
    }
    env.update(overrides)
    return env


def home_volume(user: str = "alice") -> Volume:
    return Volume(name="home", storage_name=HOME_STORAGE, mount_path="/home/jovyan", sub_path=f"users/{user}",
                  mount_options="uid=1000,gid=100,dir_mode=0755,file_mode=0644,mfsymlinks,nobrl")


def spec(**changes) -> ServerSpec:
    values = dict(
        image="example.org/notebook:1",
        cpu=0.5,
        memory="1Gi",
        target_port=8888,
        command=["jupyterhub-singleuser"],
        args=["--ServerApp.allow_origin=https://hub.example.org"],
        env={"JUPYTERHUB_USER": "alice", "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"},
        secret_env={"JUPYTERHUB_API_TOKEN": TOKEN},
        volumes=[home_volume()],
    )
    values.update(changes)
    return ServerSpec(**values)


def request(op: Op = Op.START, user: str = "alice", server_name: str = "", generation: int | None = None,
            hub_id: str = HUB, **spec_changes) -> Request:
    return Request(
        op=op,
        hub_id=hub_id,
        server_key=server_key(hub_id, user, server_name),
        user=user,
        server_name=server_name,
        generation=next_generation() if generation is None else generation,
        spec=spec(**spec_changes) if op is Op.START else None,
    )


class RecordingHomes:
    """A home share that records what the lifecycle asked of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def ensure(self, sub_path: str) -> None:
        self.calls.append(("ensure", sub_path))

    def delete(self, sub_path: str) -> None:
        self.calls.append(("delete", sub_path))


class FakeApps:
    """An in-memory stand-in for :class:`functions.arm.ArmApps` with hooks to stage races and failures.

    ``before_create``/``after_create`` run inside ``create_or_update`` (e.g. to deliver a stop
    mid-create); ``failures`` is a list of exceptions raised by the next ARM calls, in order.
    """

    def __init__(self) -> None:
        self.apps: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.failures: list[Exception] = []
        self.before_create = None
        self.after_create = None

    def _call(self, what: str, name: str) -> None:
        self.calls.append((what, name))
        if self.failures:
            raise self.failures.pop(0)

    def count(self, what: str) -> int:
        return sum(1 for w, _ in self.calls if w == what)

    def create_or_update(self, name: str, body: dict, budget: float = 0) -> dict:
        self._call("create", name)
        if self.before_create:
            hook, self.before_create = self.before_create, None
            hook()
        app = {**body, "name": name}
        app["properties"] = {**body["properties"], "runningStatus": "Running"}
        app["properties"]["configuration"] = {**body["properties"]["configuration"]}
        app["properties"]["configuration"]["ingress"] = {
            **body["properties"]["configuration"]["ingress"], "fqdn": f"{name}.internal.env.example"}
        self.apps[name] = app
        if self.after_create:
            hook, self.after_create = self.after_create, None
            hook()
        return app

    def get(self, name: str) -> dict | None:
        self._call("get", name)
        return self.apps.get(name)

    def delete(self, name: str, budget: float = 0) -> bool:
        self._call("delete", name)
        return self.apps.pop(name, None) is not None

    def stop(self, name: str, budget: float = 0) -> bool:
        self._call("stop", name)
        if name not in self.apps:
            return False
        self.apps[name]["properties"]["runningStatus"] = "Stopped"
        return True

    def start(self, name: str, budget: float = 0) -> None:
        self._call("start", name)
        self.apps[name]["properties"]["runningStatus"] = "Running"

    def close(self) -> None:
        pass
