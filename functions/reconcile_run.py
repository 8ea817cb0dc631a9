"""What one reconciler run is given and what it reports: its options (app settings) and its summary line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from acaspawner.contract import Status
from acaspawner.sealing import DEFAULT_MAX_AGE

from .appsettings import SettingsReader, count, number
from .capacity_repair import CapacityReport
from .culler import read_page_size
from .settings import (
    DEFAULT_MAX_DEQUEUE_COUNT,
    read_host_limits,
    read_hub_id,
    read_resource_group,
    read_seal_max_age,
    read_stop_mode,
)

NAME = "aca-reconciler"
# poison queue: one receive returns at most 32 messages; a run looks at a bounded number
POISON_PAGE = 32
POISON_MAX_PER_RUN = 256


def age_text(seconds: float) -> str:
    """``42 min`` or ``3 h 7 min``."""
    minutes = int(seconds // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


class StatusStore(Protocol):
    """What the reconciler needs of :class:`functions.storage.FunctionStorage`."""

    def list_statuses(self, hub_id: str) -> list[Status]: ...

    def get_status(self, hub_id: str, server_key: str) -> Status | None: ...

    def write_status(self, status: Status) -> Status: ...


@dataclass(frozen=True)
class ReconcileOptions:
    """What one run may do (``ACA_HUB_ID``, ``ACA_RESOURCE_GROUP``, ``ACA_STUCK_AFTER``, ``ACA_RECONCILE_*``)."""

    hub_id: str
    resource_group: str
    stuck_after: float = 1200
    max_arm_calls: int = 100
    grace: float = 300  # leave apps and entries younger than this to the lifecycle
    stop_mode: str = "delete"
    hub_page_size: int = 200
    # poison messages older than this (since sealing) can no longer be replayed and are deleted
    seal_max_age: float = DEFAULT_MAX_AGE
    poison_max_per_run: int = POISON_MAX_PER_RUN
    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT  # host.json: deliveries before the host poisons

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> ReconcileOptions:
        """Read the settings; raises ValueError naming the missing ones, or the first bad one."""
        reader = SettingsReader(settings)
        hub_id, group = reader.read(read_hub_id, ""), reader.read(read_resource_group, "")
        if reader.missing:
            raise ValueError(f"missing app settings {', '.join(reader.missing)}")
        return cls(
            hub_id=hub_id,
            resource_group=group,
            stuck_after=number(settings, "ACA_STUCK_AFTER", 1200, minimum=1),
            max_arm_calls=count(settings, "ACA_RECONCILE_MAX_ARM_CALLS", 100),
            grace=number(settings, "ACA_RECONCILE_GRACE", 300),
            stop_mode=read_stop_mode(settings),
            hub_page_size=read_page_size(settings),
            seal_max_age=read_seal_max_age(settings),
            max_dequeue_count=read_host_limits().max_dequeue_count,
        )


@dataclass
class ReconcileSummary:
    """What one reconciler run did; :meth:`line` is the one summary line it logs."""

    apps_seen: int = 0  # this hub's apps
    foreign_apps: int = 0  # other hubs' or untagged apps: never touched
    listing_complete: bool = False
    deleted: list[str] = field(default_factory=list)  # server keys (= app names) whose delete was accepted
    kept: int = 0
    marked_failed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # believed running, app gone: reported only
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    arm_calls: int = 0
    max_arm_calls: int = 0
    poison_seen: int = 0  # poison messages looked at (and logged) this run
    poison_deleted: int = 0  # of those, deleted (older than the sealing maximum age)
    seconds: float = 0.0
    capacity: CapacityReport | None = None  # per environment: servers, cores in use, cores left

    def line(self) -> str:
        text = (
            f"{NAME}: deleted={len(self.deleted)} kept={self.kept} marked_failed={len(self.marked_failed)} "
            f"missing_apps={len(self.missing)} errors={len(self.errors)} apps_seen={self.apps_seen} "
            f"foreign_apps={self.foreign_apps} arm_calls={self.arm_calls}/{self.max_arm_calls} "
            f"poison_seen={self.poison_seen} poison_deleted={self.poison_deleted} "
            f"seconds={self.seconds:.1f}"
        )
        if self.capacity is not None:
            text += " " + self.capacity.text()
        if self.notes:
            text += " notes: " + "; ".join(self.notes)
        return text
