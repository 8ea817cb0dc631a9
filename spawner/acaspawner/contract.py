"""The contract between the hub and the functions: requests and statuses.

Plain dataclasses with JSON (de)serialisation and a schema version. This
module imports neither JupyterHub nor the ARM SDK, so both sides share it.

A *request* is what the spawner puts on the lifecycle queue (sealed, see
:mod:`acaspawner.sealing`). A *status* is what the functions write to the
status table, one entity per server, and what the spawner reads back.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from .naming import is_valid_app_name

SCHEMA_VERSION = 1
MAX_EVENTS = 10
#: seconds a lifecycle message stays on the queue beyond its sealing maximum age (then it could only be refused)
QUEUE_TTL_MARGIN = 60

#: where a user's home is mounted, and the SMB options that fit the Jupyter images' jovyan user
#: (uid 1000, gid 100): without them the share is root-owned 0777, chmod fails (git breaks) and
#: SQLite locks up without nobrl. The functions' ACA_HOME_MOUNT_PATH/OPTIONS default to these.
HOME_MOUNT_PATH = "/home/jovyan"
HOME_MOUNT_OPTIONS = "uid=1000,gid=100,dir_mode=0755,file_mode=0644,mfsymlinks,nobrl"


class ContractError(ValueError):
    """A request or status that does not satisfy the contract."""


class UnknownSchemaVersion(ContractError):
    """A payload written by a newer (or unknown) version of the contract."""


class Op(StrEnum):
    START = "start"
    STOP = "stop"
    DELETE = "delete"


class Phase(StrEnum):
    QUEUED = "queued"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def is_active(self) -> bool:
        """Starting or running: ``poll()`` answers ``None``."""
        return self in (Phase.QUEUED, Phase.PROVISIONING, Phase.RUNNING)


@dataclass
class Volume:
    """A volume mount: an environment storage, optionally a sub path of it."""

    name: str
    storage_name: str
    mount_path: str
    sub_path: str = ""
    storage_type: str = "AzureFile"
    mount_options: str = ""


@dataclass
class ServerSpec:
    """What the container app should run (only for ``start``)."""

    image: str
    cpu: float = 0.5
    memory: str = "1Gi"
    target_port: int = 8888
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # values become ACA secrets, referenced from env with ``secretRef``
    secret_env: dict[str, str] = field(default_factory=dict)
    volumes: list[Volume] = field(default_factory=list)
    workload_profile: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerSpec:
        data = dict(data)
        data["volumes"] = [Volume(**v) for v in data.get("volumes", [])]
        try:
            spec = cls(**data)
        except TypeError as e:
            raise ContractError(f"invalid server spec: {e}") from None
        spec.validate()
        return spec

    def validate(self) -> None:
        if not isinstance(self.image, str) or not self.image.strip():
            raise ContractError("server spec needs an image")
        if not isinstance(self.cpu, (int, float)) or self.cpu <= 0:
            raise ContractError(f"cpu must be a positive number, not {self.cpu!r}")
        if not isinstance(self.target_port, int) or not 1 <= self.target_port <= 65535:
            raise ContractError(f"invalid target port {self.target_port!r}")
        for name in (*self.env, *self.secret_env):
            if not isinstance(name, str) or not name:
                raise ContractError(f"invalid environment variable name {name!r}")
        for mapping in (self.env, self.secret_env):
            if not all(isinstance(v, str) for v in mapping.values()):
                raise ContractError("environment values must be strings")

    def __repr__(self) -> str:  # never show secret values
        return f"ServerSpec(image={self.image!r}, cpu={self.cpu}, memory={self.memory!r}, secrets={sorted(self.secret_env)})"


def request_id(correlation_id: str) -> str:
    """The id a request is known by: in the hub's and the functions' logs, on the spawn page, and to ARM (its
    ``x-ms-client-request-id``, which the Azure activity log records). ARM wants a GUID: the correlation id as
    one, or "" when it is none (ARM then gets an id of the SDK's own)."""
    try:
        return str(uuid.UUID(correlation_id))
    except (ValueError, TypeError, AttributeError):
        return ""


def shown_request_id(correlation_id: str) -> str:
    """:func:`request_id` for a log line; a correlation id that is no GUID in quotes, escaped, cut short."""
    return request_id(correlation_id) or repr(str(correlation_id)[:64])


@dataclass
class Request:
    """One lifecycle request from the hub to the functions."""

    op: Op
    hub_id: str
    server_key: str
    user: str
    server_name: str
    generation: int
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    spec: ServerSpec | None = None
    created: float = field(default_factory=time.time)
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.op = Op(self.op)
        if not self.hub_id:
            raise ContractError("request needs a hub id")
        if not is_valid_app_name(self.server_key):
            raise ContractError(f"server key is not a valid container app name: {self.server_key!r}")
        if not isinstance(self.generation, int) or self.generation < 0:
            raise ContractError(f"invalid generation {self.generation!r}")
        if self.op is Op.START and self.spec is None:
            raise ContractError("a start request needs a server spec")

    def to_json(self) -> str:
        data = asdict(self)
        data["op"] = self.op.value
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Request:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ContractError(f"request is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise ContractError("request is not a JSON object")
        version = data.get("schema")
        if version != SCHEMA_VERSION:
            raise UnknownSchemaVersion(
                f"request schema version {version!r} is not supported (this side speaks {SCHEMA_VERSION})"
            )
        spec = data.pop("spec", None)
        try:
            return cls(**data, spec=ServerSpec.from_dict(spec) if spec is not None else None)
        except TypeError as e:
            raise ContractError(f"invalid request: {e}") from None
        except ValueError as e:  # unknown op
            if isinstance(e, ContractError):
                raise
            raise ContractError(f"invalid request: {e}") from None

    @property
    def request_id(self) -> str:
        return request_id(self.correlation_id)

    def __repr__(self) -> str:
        return (
            f"Request(op={self.op.value}, server_key={self.server_key}, generation={self.generation}, "
            f"request_id={shown_request_id(self.correlation_id)})"
        )


@dataclass
class Status:
    """The status of one server, as the functions write it to the table."""

    hub_id: str
    server_key: str
    phase: Phase
    generation: int
    user: str = ""
    server_name: str = ""
    url: str = ""
    message: str = ""
    error_code: str = ""
    # the Azure operation the functions are following (create, start, stop, delete); "" when none
    step: str = ""
    # a warm server bound to this one: the container app's name ("" when the app is named by the server key)
    slot: str = ""
    # the warm server's claim key, sealed with the hub's sealing key: the hub sends the user's claim with it
    claim_key: str = field(default="", repr=False)
    # the id of the request that wrote this row (see :func:`request_id`): what the status page and logs show
    request_id: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    updated: float = field(default_factory=time.time)
    schema: int = SCHEMA_VERSION
    etag: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.phase = Phase(self.phase)

    def with_event(self, phase: Phase, message: str, **changes: Any) -> Status:
        """A copy in ``phase`` with ``message`` appended to the recent events."""
        now = time.time()
        events = [*self.events, {"phase": Phase(phase).value, "message": message, "time": now}]
        values = {**asdict(self), **changes}
        values.update(phase=Phase(phase), message=message, events=events[-MAX_EVENTS:], updated=now)
        values["etag"] = self.etag
        return Status(**values)

    def to_entity(self) -> dict[str, Any]:
        """The table entity: partition = hub id, row = server key."""
        return {
            "PartitionKey": self.hub_id,
            "RowKey": self.server_key,
            "phase": self.phase.value,
            # generations are milliseconds: Int64, which the tables SDK only infers for tuples
            "generation": (self.generation, "Edm.Int64"),
            "user": self.user,
            "server_name": self.server_name,
            "url": self.url,
            "message": self.message,
            "error_code": self.error_code,
            "step": self.step,
            "slot": self.slot,
            "claim_key": self.claim_key,
            "request_id": self.request_id,
            "events": json.dumps(self.events, separators=(",", ":")),
            "updated": self.updated,
            "schema": self.schema,
        }

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> Status:
        version = entity.get("schema")
        if version != SCHEMA_VERSION:
            raise UnknownSchemaVersion(f"status schema version {version!r} is not supported")
        metadata = getattr(entity, "metadata", None) or {}
        generation = entity.get("generation")
        generation = getattr(generation, "value", generation)  # an EntityProperty for Int64
        if isinstance(generation, tuple):
            generation = generation[0]
        try:
            return cls(
                hub_id=entity["PartitionKey"],
                server_key=entity["RowKey"],
                phase=Phase(entity["phase"]),
                generation=int(generation),
                user=entity.get("user", ""),
                server_name=entity.get("server_name", ""),
                url=entity.get("url", ""),
                message=entity.get("message", ""),
                error_code=entity.get("error_code", ""),
                step=entity.get("step", ""),  # absent in entities written before it existed
                slot=entity.get("slot", ""),
                claim_key=entity.get("claim_key", ""),
                request_id=str(entity.get("request_id", ""))[:64],
                events=json.loads(entity.get("events") or "[]"),
                updated=float(entity.get("updated", 0)),
                etag=metadata.get("etag"),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ContractError(f"invalid status entity: {e}") from None
