"""Helpers for the functions' tests: app settings, requests, a recording home share, a scripted ARM."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from itertools import count

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from acaspawner import wire
from acaspawner.contract import Op, Request, ServerSpec, Volume
from acaspawner.naming import legacy_home_folder, server_key
from acaspawner.sealing import generate_key
from functions.arm import Accepted, TerminalArmError
from functions.deps import Deps
from functions.lifecycle import Outcome, handle_message

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
        "ACA_FOLLOWUP_KEYS": generate_key(),
        "ACA_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "ACA_RESOURCE_GROUP": "rg",
        "ACA_ENVIRONMENT_ID": ENV_ID,
        "ACA_LOCATION": "westeurope",
        "ACA_ALLOWED_IMAGES": "quay.io/jupyter/*, example.org/notebook:*",
        "ACA_HOME_STORAGE_NAME": HOME_STORAGE,
        "ACA_HOME_FILES_ACCOUNT_URL": "https://sthomes.file.core.windows.net",
        "ACA_HOME_SHARE_NAME": "homes",
    }
    env.update(overrides)
    return env


def emulator_env(emulator, **overrides: str) -> dict[str, str]:
    """:func:`base_env` aimed at ``emulator``: its subscription, group, environment, region and ARM endpoint."""
    return base_env(
        ACA_SUBSCRIPTION_ID=emulator.subscription_id,
        ACA_RESOURCE_GROUP=emulator.resource_group,
        ACA_ENVIRONMENT_ID=emulator.environment_id,
        ACA_LOCATION=emulator.location,
        ACA_ARM_ENDPOINT=emulator.arm_endpoint,
        ACA_ARM_CA_BUNDLE=str(emulator.ca_bundle),
        **overrides,
    )


def home_volume(user: str = "alice") -> Volume:
    """The home volume the spawner sends for ``user`` (the folder name homes always had)."""
    return Volume(name="home", storage_name=HOME_STORAGE, mount_path="/home/jovyan",
                  sub_path=legacy_home_folder(user),
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
        spec=spec(**{"volumes": [home_volume(user)], **spec_changes}) if op is Op.START else None,
    )


class RecordingHomes:
    """A home share that records what the lifecycle asked of it (and keeps the folders it made)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.folders: set[str] = set()

    def ensure(self, sub_path: str) -> None:
        self.calls.append(("ensure", sub_path))
        self.folders.add(sub_path)

    def exists(self, sub_path: str) -> bool:
        return sub_path in self.folders

    def delete(self, sub_path: str) -> None:
        self.calls.append(("delete", sub_path))
        self.folders = {f for f in self.folders if f != sub_path and not f.startswith(f"{sub_path}/")}

    def move(self, source: str, target: str) -> None:
        self.calls.append(("move", f"{source} -> {target}"))
        assert source in self.folders and target not in self.folders, (source, target, self.folders)
        self.folders = {target + f[len(source):] if f == source or f.startswith(f"{source}/") else f
                        for f in self.folders}


class FakeApps:
    """An in-memory stand-in for :class:`functions.arm.ArmApps` with hooks to stage races and failures.

    Writes are accepted at once and run as operations that finish at the next read (``get`` or
    ``list``), unless ``hold`` keeps them in flight (ARM still working). ``before_create``/
    ``after_create`` run inside ``send_create_or_update`` (e.g. to deliver a stop mid-create);
    ``failures`` is a list of exceptions raised by the next ARM calls, in order (``failures_for``
    the same for one kind of call); ``fail_next``
    makes the next create's operation end Failed with that error.
    """

    def __init__(self) -> None:
        self.apps: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.failures: list[Exception] = []
        self.failures_for: dict[str, list[Exception]] = {}  # by kind of call ("create", "list", ...)
        self.before_create = None
        self.after_create = None
        self.hold = False
        self.retry_after: float | None = None  # what ARM answers a write with
        self.fail_next: TerminalArmError | None = None
        self._failing: TerminalArmError | None = None
        self.in_flight: dict[str, str] = {}  # app name -> kind of its operation
        self.operation_errors: dict[str, TerminalArmError] = {}
        self._operations = count(1)
        self.request_ids: list[tuple[str, str, str]] = []  # (write, app, x-ms-client-request-id) of each write

    def _call(self, what: str, name: str) -> None:
        self.calls.append((what, name))
        if self.failures_for.get(what):
            raise self.failures_for[what].pop(0)
        if self.failures:
            raise self.failures.pop(0)

    def count(self, what: str) -> int:
        return sum(1 for w, _ in self.calls if w == what)

    def _operation(self, name: str, kind: str) -> Accepted:
        self.in_flight[name] = kind
        url = f"https://arm.test/operations/{next(self._operations)}"
        if kind == "failed":
            self.operation_errors[url] = self._failing
        return Accepted(done=False, operation_url=url, retry_after=self.retry_after)

    def finish_operations(self) -> None:
        """ARM finishes what is in flight (reads do this unless ``hold`` is set)."""
        for name, kind in list(self.in_flight.items()):
            del self.in_flight[name]
            app = self.apps.get(name)
            if app is None:
                continue
            props = app["properties"]
            if kind == "delete":
                del self.apps[name]
            elif kind == "failed":
                props["provisioningState"] = "Failed"
            else:
                props["provisioningState"] = "Succeeded"
                if kind in ("start", "stop"):
                    props["runningStatus"] = "Running" if kind == "start" else "Stopped"

    def _read(self) -> None:
        if not self.hold:
            self.finish_operations()

    def send_create_or_update(self, name: str, body: dict, request_id: str = "") -> Accepted:
        self._call("create", name)
        self.request_ids.append(("create", name, request_id))
        if self.before_create:
            hook, self.before_create = self.before_create, None
            hook()
        previous = self.apps.get(name)
        app = copy.deepcopy(body)
        app["name"] = name
        # a PUT leaves a parked (stopped) app stopped, as ACA does
        parked = previous is not None and previous["properties"].get("runningStatus") == "Stopped"
        app["properties"].update(provisioningState="InProgress", runningStatus="Stopped" if parked else "Running")
        app["properties"]["configuration"]["ingress"]["fqdn"] = f"{name}.internal.env.example"
        self.apps[name] = app
        kind = "create"
        if self.fail_next is not None:
            self._failing, self.fail_next, kind = self.fail_next, None, "failed"
        accepted = self._operation(name, kind)
        if self.after_create:
            hook, self.after_create = self.after_create, None
            hook()
        return accepted

    def _write(self, what: str, name: str) -> Accepted:
        self._call(what, name)
        if name not in self.apps:
            if what == "start":  # as the real gateway: ARM answers 404, which is terminal
                raise TerminalArmError("ResourceNotFound", f"The Resource 'Microsoft.App/containerApps/{name}' "
                                       "under resource group 'rg' was not found.", 404)
            return Accepted(done=True)  # 204 for a delete; a stop of nothing is done
        if what == "delete":
            self.apps[name]["properties"]["provisioningState"] = "Deleting"
        else:
            self.apps[name]["properties"]["provisioningState"] = "InProgress"
        return self._operation(name, what)

    def send_delete(self, name: str, request_id: str = "") -> Accepted:
        self.request_ids.append(("delete", name, request_id))
        return self._write("delete", name)

    def send_stop(self, name: str, request_id: str = "") -> Accepted:
        self.request_ids.append(("stop", name, request_id))
        return self._write("stop", name)

    def send_start(self, name: str, request_id: str = "") -> Accepted:
        self.request_ids.append(("start", name, request_id))
        return self._write("start", name)

    def environment_is_internal(self, environment_id: str) -> bool:
        self._call("environment", environment_id)
        return True

    def get(self, name: str) -> dict | None:
        self._call("get", name)
        self._read()
        return copy.deepcopy(self.apps.get(name))

    def list(self) -> list[dict]:
        self._call("list", "*")
        self._read()
        return copy.deepcopy(list(self.apps.values()))

    def pages(self) -> Iterator[list[dict]]:
        yield self.list()  # one page (paging is tested against the emulator, tests/functions/test_arm_gateway.py)

    def operation_error(self, url: str) -> TerminalArmError | None:
        self._call("operation", url)
        return self.operation_errors.get(url)

    def close(self) -> None:
        pass


class RecordingQueue:
    """The lifecycle queue as the functions see it: keeps the follow-ups they send, with their delays."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, int]] = []
        self.ttls: list[int | None] = []

    def send_lifecycle_message(self, body: str, delay: int, time_to_live: int | None = None) -> None:
        self.messages.append((body, delay))
        self.ttls.append(time_to_live)

    def take(self) -> list[bytes]:
        """The queued follow-ups (as the host hands them to the function), emptying the queue."""
        taken, self.messages = self.messages, []
        return [wire.decode(body) for body, _ in taken]


def settle(deps: Deps, limit: int = 20) -> list[Outcome]:
    """Deliver the follow-ups the functions sent (and those they send meanwhile); their outcomes in order."""
    outcomes = []
    for _ in range(limit):
        bodies = deps.follow_ups.queue.take()
        if not bodies:
            return outcomes
        outcomes += [handle_message(body, deps) for body in bodies]
    raise AssertionError(f"follow-ups still coming after {limit} rounds: {outcomes[-5:]}")


def deliver(deps: Deps, req: Request | bytes, dequeue_count: int = 1) -> Outcome:
    """Deliver ``req``, then its follow-ups until ARM is done; the request's outcome, or when ARM
    accepted its write, the outcome its follow-ups ended with."""
    sealed = req if isinstance(req, bytes) else deps.sealer.seal(req)
    outcome = handle_message(sealed, deps, dequeue_count)
    after = [o for o in settle(deps) if o is not Outcome.PENDING]
    return after[-1] if outcome is Outcome.ACCEPTED and after else outcome


def status_of(deps: Deps, req: Request):
    return deps.storage.get_status(HUB, req.server_key)


def poison_bodies(deps: Deps) -> list[str]:
    client = QueueClient.from_connection_string(deps.settings.storage.connection_string,
                                                f"{deps.settings.queue_name}-poison")
    try:
        return [m.content for m in client.peek_messages(max_messages=32)]
    except ResourceNotFoundError:  # no poison queue: nothing poisoned
        return []
    finally:
        client.close()
