"""What the functions tell admins beside each server's status: how full each environment is, the warm pool, the timers' runs.

Shared by the functions (writers) and the hub (readers: the gauges of
:mod:`acaspawner.metrics` and the status page of :mod:`acaspawner.status_page`).
Everything lives in the status table, in two partitions per hub besides the
hub's own (``<hub id>``, one row per server):

- ``<hub id>~capacity``: the capacity ledger. Its ``environment-<digest>``
  rows (with their shards ``environment-<digest>-<n>``, which add up) sum
  what each environment's servers hold (``cores``, ``memory_gib``,
  ``servers``) and, since they are written with it, the budget the functions
  may fill there (``cores_budget``, ``memory_gib_budget``). They change with
  every start and stop, so a read is current.
- ``<hub id>~report``: one ``warm-<profile>`` row per warm pool profile (its
  ready and bound servers and the size it should have now), written by the
  pool's timer, and one ``run-<timer>`` row per timer (``aca-idle-culler``,
  ``aca-reconciler``, ``aca-warm-pool``) with its last run's summary line and
  figures, written when a run ends, with one ``budget-<digest>`` row per
  environment of the pool (so that one no server has used yet shows too); and one ``failed-<server key>`` row per
  server whose last start failed (who, the code, the reason, the request
  id), written with the failure: the server's own row moves on (the hub
  stops a failed server at once), this one stays for admins.

Rows hold counts, names and reasons, never a token or key. ``~`` never occurs
in a hub id, so neither partition can be taken for a hub's.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

ENVIRONMENT_PREFIX = "environment-"
WARM_PREFIX = "warm-"
RUN_PREFIX = "run-"
FAILED_PREFIX = "failed-"
BUDGET_PREFIX = "budget-"
#: a run's summary line is cut to this many characters (a table property holds 64 KiB)
MAX_SUMMARY = 4000
#: figures kept of a run: the first ones, by name
MAX_FIGURES = 40


def capacity_partition(hub_id: str) -> str:
    """The capacity ledger's partition of hub ``hub_id``."""
    return f"{hub_id}~capacity"


def report_partition(hub_id: str) -> str:
    """The partition of hub ``hub_id``'s warm pool and timer reports."""
    return f"{hub_id}~report"


def env_key(environment_id: str) -> str:
    """One environment's id however it is written (case, a trailing ``/``)."""
    return environment_id.rstrip("/").lower()


def environment_key(environment_id: str) -> str:
    """The row key of an environment's count (the same environment whatever the case or a trailing ``/``)."""
    return ENVIRONMENT_PREFIX + hashlib.sha256(env_key(environment_id).encode()).hexdigest()[:24]


def prefix_query(partition: str, prefix: str, condition: str = "") -> tuple[str, dict[str, Any]]:
    """The query (and its parameters) of the rows of ``partition`` whose key starts with ``prefix``, and that
    meet ``condition`` (a filter over parameters the caller adds) if given."""
    # every prefix here ends in "-", and "-" + 1 is ".": every key with the prefix sorts between the two
    query = "PartitionKey eq @p and RowKey ge @lo and RowKey lt @hi" + (f" and {condition}" if condition else "")
    return query, {"p": partition, "lo": prefix, "hi": prefix[:-1] + "."}


def _value(entity: dict[str, Any], name: str, default: Any = 0) -> Any:
    value = entity.get(name, default)
    return getattr(value, "value", value)


def _number(entity: dict[str, Any], name: str) -> float:
    try:
        value = float(_value(entity, name, 0.0))
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0


@dataclass(frozen=True)
class EnvironmentUse:
    """What an environment's servers hold, and the budget the functions may fill there (0: not recorded)."""

    environment_id: str
    cores: float = 0.0
    memory_gib: float = 0.0
    servers: int = 0
    cores_budget: float = 0.0
    memory_gib_budget: float = 0.0

    @property
    def name(self) -> str:
        return self.environment_id.rstrip("/").rsplit("/", 1)[-1]

    @property
    def cores_left(self) -> float | None:
        """Cores a start may still take here; ``None`` when the row predates budgets."""
        return max(self.cores_budget - self.cores, 0.0) if self.cores_budget > 0 else None

    def budget_entity(self, hub_id: str) -> dict[str, Any]:
        """The ``budget-`` row of this environment (its budget only)."""
        return {"PartitionKey": report_partition(hub_id), "RowKey": BUDGET_PREFIX + environment_key(
            self.environment_id)[len(ENVIRONMENT_PREFIX):], "environment_id": self.environment_id,
            "cores_budget": self.cores_budget, "memory_gib_budget": self.memory_gib_budget}

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> EnvironmentUse:
        return cls(str(_value(entity, "environment_id", "")), _number(entity, "cores"), _number(entity, "memory_gib"),
                   int(_number(entity, "servers")), _number(entity, "cores_budget"),
                   _number(entity, "memory_gib_budget"))


@dataclass(frozen=True)
class WarmProfileUse:
    """One warm pool profile after the pool timer's last run."""

    profile: str
    ready: int = 0
    bound: int = 0
    wanted: int = 0
    updated: float = 0.0

    def to_entity(self, hub_id: str) -> dict[str, Any]:
        return {"PartitionKey": report_partition(hub_id), "RowKey": WARM_PREFIX + _digest(self.profile),
                "profile": self.profile, "ready": self.ready, "bound": self.bound, "wanted": self.wanted,
                "updated": self.updated or time.time()}

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> WarmProfileUse:
        return cls(str(_value(entity, "profile", "")), int(_number(entity, "ready")), int(_number(entity, "bound")),
                   int(_number(entity, "wanted")), _number(entity, "updated"))


@dataclass(frozen=True)
class RunReport:
    """A timer's last run: when it ended, how long it took, whether it met errors, its summary line and figures."""

    timer: str
    ended: float
    seconds: float
    errors: int
    summary: str
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def to_entity(self, hub_id: str) -> dict[str, Any]:
        figures = dict(sorted(self.figures.items())[:MAX_FIGURES])
        return {"PartitionKey": report_partition(hub_id), "RowKey": RUN_PREFIX + _digest(self.timer),
                "timer": self.timer, "ended": self.ended, "seconds": self.seconds, "errors": self.errors,
                "summary": self.summary[:MAX_SUMMARY], "figures": json.dumps(figures)}

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> RunReport:
        try:
            figures = json.loads(str(_value(entity, "figures", "{}")))
        except ValueError:
            figures = {}
        if not isinstance(figures, dict):
            figures = {}
        return cls(str(_value(entity, "timer", "")), _number(entity, "ended"), _number(entity, "seconds"),
                   int(_number(entity, "errors")), str(_value(entity, "summary", "")),
                   {str(k): float(v) for k, v in figures.items() if isinstance(v, int | float)})


def _digest(name: str) -> str:
    """A row key part for any name (profile and timer names are the admins' and the code's; keys allow few characters)."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def figures_of(summary: Any) -> dict[str, float]:
    """The figures of a timer's summary (a dataclass): numbers as they are, lists by their length, dicts summed;
    names starting with ``_`` and anything else are left out."""
    figures: dict[str, float] = {}
    for name, value in vars(summary).items():
        if name.startswith("_") or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            figures[name] = float(value)
        elif isinstance(value, list | tuple):
            figures[name] = float(len(value))
        elif isinstance(value, dict) and all(isinstance(v, int | float) for v in value.values()):
            figures[name] = float(sum(value.values()))
    return figures


@dataclass(frozen=True)
class FailedStart:
    """A server's last failed start."""

    server_key: str
    user: str
    server_name: str
    code: str
    message: str
    request_id: str
    failed_at: float

    def to_entity(self, hub_id: str) -> dict[str, Any]:
        return {"PartitionKey": report_partition(hub_id), "RowKey": FAILED_PREFIX + self.server_key,
                "user": self.user, "server_name": self.server_name, "code": self.code,
                "message": self.message[:MAX_SUMMARY], "request_id": self.request_id, "failed_at": self.failed_at}

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> FailedStart:
        return cls(str(entity.get("RowKey", ""))[len(FAILED_PREFIX):], str(_value(entity, "user", "")),
                   str(_value(entity, "server_name", "")), str(_value(entity, "code", "")),
                   str(_value(entity, "message", "")), str(_value(entity, "request_id", ""))[:64],
                   _number(entity, "failed_at"))


@dataclass
class Report:
    """One read of a hub's report: environments (by id), warm profiles (by name), timers' runs (by timer)."""

    environments: dict[str, EnvironmentUse] = field(default_factory=dict)  # by lower-case id
    warm: dict[str, WarmProfileUse] = field(default_factory=dict)
    runs: dict[str, RunReport] = field(default_factory=dict)
    failed: dict[str, FailedStart] = field(default_factory=dict)  # by server key
    read_at: float = 0.0
    pool: set[str] = field(default_factory=set)  # lower-case ids of the environments with a budget row

    def shown_environments(self) -> list[EnvironmentUse]:
        """The environments of the pool, and any other still holding servers (one taken out of the pool whose
        servers run on); all of them before a timer has written the pool's budgets. By name."""
        shown = [use for key, use in self.environments.items()
                 if not self.pool or key in self.pool or use.servers > 0]
        return sorted(shown, key=lambda use: use.name)

    def add(self, entity: dict[str, Any]) -> None:
        """Take one row of either partition (rows of other kinds are left out)."""
        key = str(entity.get("RowKey", ""))
        if key.startswith(ENVIRONMENT_PREFIX) or key.startswith(BUDGET_PREFIX):
            use = EnvironmentUse.from_entity(entity)
            known = self.environments.get(env_key(use.environment_id))
            if key.startswith(BUDGET_PREFIX):  # a budget only: the count row, when there is one, says the rest
                self.pool.add(env_key(use.environment_id))
                use = replace(known, cores_budget=known.cores_budget or use.cores_budget,
                              memory_gib_budget=known.memory_gib_budget or use.memory_gib_budget) if known else use
            elif known is not None:  # another shard of the count, or its budget: what they hold adds up
                use = replace(use, cores=known.cores + use.cores, memory_gib=known.memory_gib + use.memory_gib,
                              servers=known.servers + use.servers, cores_budget=use.cores_budget or known.cores_budget,
                              memory_gib_budget=use.memory_gib_budget or known.memory_gib_budget)
            self.environments[env_key(use.environment_id)] = use
        elif key.startswith(WARM_PREFIX):
            warm = WarmProfileUse.from_entity(entity)
            self.warm[warm.profile] = warm
        elif key.startswith(RUN_PREFIX):
            run = RunReport.from_entity(entity)
            self.runs[run.timer] = run
        elif key.startswith(FAILED_PREFIX):
            failed = FailedStart.from_entity(entity)
            self.failed[failed.server_key] = failed
