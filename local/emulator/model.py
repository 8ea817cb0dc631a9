"""The emulator's record of container apps and long-running operations, and their ARM JSON."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import secrets as _secrets
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import identity as identities
from .apps import AppProcess
from .errors import ArmError

# what ARM computes: never stored from a request body
READ_ONLY_PROPERTIES = {
    "provisioningState",
    "runningStatus",
    "latestRevisionName",
    "latestReadyRevisionName",
    "latestRevisionFqdn",
    "customDomainVerificationId",
    "outboundIpAddresses",
    "eventStreamEndpoint",
}


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def revision_suffix() -> str:
    return "".join(_secrets.choice(string.ascii_lowercase + string.digits) for _ in range(7))


@dataclass(frozen=True)
class AppInfo:
    """A read-only snapshot of one app, safe to hand to another thread."""

    name: str
    provisioning_state: str
    running_status: str | None
    fqdn: str | None
    ingress_port: int | None
    target_port: int | None
    container_port: int | None
    revision: str | None
    pid: int | None
    exit_code: int | None
    argv: tuple[str, ...]
    log_path: Path
    environment_id: str = ""

    @property
    def environment(self) -> str:
        """The name of the managed environment the app lives in."""
        return self.environment_id.rsplit("/", 1)[-1]


@dataclass
class Operation:
    """A long-running operation as ARM tracks it (status resource and result resource)."""

    kind: str  # create, update, delete, start, stop
    app_name: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "InProgress"
    error: ArmError | None = None
    started: str = field(default_factory=utc_now)
    ended: str | None = None
    task: asyncio.Task | None = None
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.status != "InProgress"

    @property
    def canceled(self) -> bool:
        return self.cancel_requested.is_set()

    async def pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless canceled first; True when canceled."""
        if seconds > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.cancel_requested.wait(), seconds)
        return self.canceled

    def finish(self, error: ArmError | None = None, status: str | None = None) -> None:
        self.error = error
        self.status = status or ("Failed" if error else "Succeeded")
        self.ended = utc_now()

    def status_body(self, resource_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {"id": resource_id, "name": self.id, "status": self.status, "startTime": self.started}
        if self.ended:
            body["endTime"] = self.ended
        if self.error is not None:
            body["error"] = self.error.body()["error"]
        return body


@dataclass
class AppState:
    """One container app: what was written (``spec``, ``secrets``) and what ARM reports."""

    name: str
    resource_group: str
    location: str
    replica_dir: Path  # the running replica's own files (its containers' homes, EmptyDir volumes)
    log_path: Path
    environment_id: str = ""  # the managed environment it was created in (it cannot move)
    tags: dict[str, str] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)  # properties as written, without secret values
    secrets: dict[str, str | None] = field(default_factory=dict)
    identity: dict[str, Any] | None = None  # as written, without the ids ARM fills in
    provisioning_state: str = "InProgress"
    # a published ContainerAppRunningStatus, or None: ARM shows none for an app that failed to provision
    running_status: str | None = "Progressing"
    stopped: bool = False
    revision: str | None = None
    ready_revision: str | None = None
    ingress_port: int | None = None
    container_port: int | None = None
    processes: list[AppProcess] = field(default_factory=list)  # one per container
    operation: Operation | None = None
    created_at: str = field(default_factory=utc_now)
    modified_at: str = field(default_factory=utc_now)

    @property
    def ingress(self) -> dict[str, Any] | None:
        return (self.spec.get("configuration") or {}).get("ingress") or None

    @property
    def target_port(self) -> int | None:
        port = (self.ingress or {}).get("targetPort")
        return int(port) if port else None

    @property
    def fqdn(self) -> str | None:
        return f"127.0.0.1:{self.ingress_port}" if self.ingress and self.ingress_port else None

    @property
    def images(self) -> list[str]:
        return [str(c.get("image", "")) for c in (self.spec.get("template") or {}).get("containers") or []]

    def info(self) -> AppInfo:
        proc = self.processes[0] if self.processes else None
        return AppInfo(
            name=self.name,
            provisioning_state=self.provisioning_state,
            running_status=self.running_status,
            fqdn=self.fqdn,
            ingress_port=self.ingress_port,
            target_port=self.target_port,
            container_port=self.container_port,
            revision=self.revision,
            pid=proc.pid if proc else None,
            exit_code=proc.exit_code if proc else None,
            argv=tuple(proc.launch.argv) if proc else (),
            log_path=self.log_path,
            environment_id=self.environment_id,
        )

    def resource(self, subscription_id: str) -> dict[str, Any]:
        """The app as ARM returns it: read-only fields computed, secret values never included."""
        environment_id = self.environment_id
        props = copy.deepcopy(self.spec)
        config = props.setdefault("configuration", {})
        config.setdefault("activeRevisionsMode", "Single")
        config["secrets"] = [{k: v for k, v in s.items() if k != "value"} for s in config.get("secrets") or []]
        if config.get("ingress") and self.fqdn:
            config["ingress"]["fqdn"] = self.fqdn
        props.update(
            provisioningState=self.provisioning_state,
            managedEnvironmentId=environment_id,
            environmentId=environment_id,
            workloadProfileName=props.get("workloadProfileName") or "Consumption",
            latestRevisionName=self.revision,
            latestReadyRevisionName=self.ready_revision,
            latestRevisionFqdn=self.fqdn or "",
            customDomainVerificationId="0" * 64,
            outboundIpAddresses=["127.0.0.1"],
            eventStreamEndpoint=f"https://127.0.0.1/subscriptions/{subscription_id}/resourceGroups/"
            f"{self.resource_group}/containerApps/{self.name}/eventstream",
        )
        if self.running_status is not None:
            props["runningStatus"] = self.running_status
        # the contract has no nulls: a name ARM does not know yet is left out
        for key in ("latestRevisionName", "latestReadyRevisionName"):
            if props.get(key) is None:
                props.pop(key, None)
        resource_id = app_id(subscription_id, self.resource_group, self.name)
        answer: dict[str, Any] = {
            "id": resource_id,
            "name": self.name,
            "type": "Microsoft.App/containerApps",
            "location": self.location,
            "tags": dict(self.tags),
            "systemData": {
                "createdBy": "emulator",
                "createdByType": "Application",
                "createdAt": self.created_at,
                "lastModifiedBy": "emulator",
                "lastModifiedByType": "Application",
                "lastModifiedAt": self.modified_at,
            },
            "properties": props,
        }
        shown = identities.as_answered(self.identity, resource_id)
        if shown is not None:
            answer["identity"] = shown
        return answer


def app_id(subscription_id: str, resource_group: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.App/containerApps/{name}"


def environment_id(subscription_id: str, resource_group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.App/managedEnvironments/{name}"
    )
