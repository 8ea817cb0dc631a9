"""The warm pool's timer (``ACA_WARM_POOL_SCHEDULE``): keeps each profile's slots at its size, at ARM's pace.

Each run, off every click's path:

1. lists this hub's slot apps (one listing) and reads the slot rows;
2. marks a ``creating`` slot ``ready`` once ARM shows its app running (its
   launcher listens only after its imports, so running means claimable), and
   retires one whose app failed or never appeared, and a ready one whose app
   is gone, failed or stopped;
3. finishes what a dead invocation left: a slot ``leased`` for long without
   being bound, or ``bound`` to a server that no longer runs on it (stopped,
   failed, or recorded stopped by the reconciler), has the user's home moved
   back (if it got there) and is retired; an app without a row is deleted;
4. creates the slots a profile lacks (its size now, ``hours`` taken into
   account), each held in the capacity ledger first, its folder made, its key
   sealed for the hub, its app sent to ARM without waiting; retires ready
   slots beyond the size.

Nothing here waits for ARM: a run sends writes and returns; the next run
sees what became of them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from azure.core.exceptions import AzureError
from cryptography.fernet import Fernet

from acaspawner.contract import Phase

from .app_body import TAG_HUB
from .arm import ArmFailure, app_fqdn
from .capacity import CapacityBusy, NoCapacity
from .deps import Deps
from .pool_profiles import PoolProfile
from .runtime import get_deps
from .warm_pool import SLOT_DONE, TAG_SLOT, Lost, Slot, SlotRows, build_slot_app, new_slot_name, slot_folder

log = logging.getLogger(__name__)

NAME = "aca-warm-pool"
CREATE_DEADLINE = 900.0  # a slot not running this long after its create is retired
LEASE_DEADLINE = 120.0  # a lease not turned into a binding this long is taken back
MAX_CREATES_PER_RUN = 50  # ARM's write bucket refills 10/s: a run stays well inside it


@dataclass
class PoolSummary:
    """What one run did; :meth:`line` is the line it logs."""

    ready: dict[str, int] = field(default_factory=dict)  # per profile, after the run
    bound: dict[str, int] = field(default_factory=dict)  # per profile: serving a user
    wanted: dict[str, int] = field(default_factory=dict)  # per profile: the size it should have now
    created: list[str] = field(default_factory=list)
    became_ready: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        ready = " ".join(f"{name}={count}" for name, count in sorted(self.ready.items())) or "-"
        return (f"{NAME}: ready {ready} created={len(self.created)} became_ready={len(self.became_ready)} "
                f"retired={len(self.retired)} errors={len(self.errors)}")


class WarmPool:
    """One run of the pool against the lifecycle's dependencies."""

    def __init__(self, deps: Deps, now: float):
        self.deps = deps
        self.settings = deps.settings
        self.rows = SlotRows(deps.storage.table, deps.settings.hub_id)
        self.now = now
        self.summary = PoolSummary()

    def run(self) -> PoolSummary:
        self.deps.storage.ensure_table()
        apps = {a["name"]: a for a in self.deps.apps.list()
                if (a.get("tags") or {}).get(TAG_HUB) == self.settings.hub_id and TAG_SLOT in (a.get("tags") or {})}
        slots = self.rows.all()
        for slot in slots:
            try:
                self._look(slot, apps.get(slot.name))
            except (Lost, ArmFailure, AzureError) as e:
                self.summary.errors.append(f"{slot.name}: {e}")
        known = {s.name for s in slots}
        for name, app in apps.items():
            if name not in known and (app.get("properties") or {}).get("provisioningState") != "Deleting":
                log.warning("Deleting slot app %s: it has no slot row", name)
                self.deps.apps.send_delete(name)
        slots = self.rows.all()
        for profile in self.settings.warm_pool:
            self._size(profile, [s for s in slots if s.pool == profile.name])
        return self.summary

    # -- what became of each slot ---------------------------------------------------------------------------

    def _look(self, slot: Slot, app: dict | None) -> None:
        props = (app or {}).get("properties") or {}
        state = props.get("provisioningState")
        if slot.state == "creating":
            if app is not None and state == "Succeeded" and props.get("runningStatus") == "Running" and app_fqdn(app):
                self.rows.update(slot, self.now, state="ready", url=f"http://{app_fqdn(app)}")
                self.summary.became_ready.append(slot.name)
            elif state == "Failed" or (app is None and self.now - slot.created > CREATE_DEADLINE):
                self.retire(slot, "its app failed" if state == "Failed" else "its app never appeared")
        elif slot.state == "ready" and (app is None or state == "Failed" or props.get("runningStatus") == "Stopped"):
            # a start bound to it would hand the user an address nothing answers at
            self.retire(slot, "its app is gone" if app is None else "its app failed or stopped")
        elif slot.state == "leased" and self.now - slot.updated > LEASE_DEADLINE:
            self.retire(slot, "its lease was never turned into a server")
        elif slot.state == "bound" and (app is None or self.now - slot.updated > LEASE_DEADLINE):
            # a stop forgets the slot before it records the server stopped; a slot still bound to a server
            # that is not running on it was left by a dead invocation or by the reconciler (NotInHub)
            status = self.deps.storage.get_status(self.settings.hub_id, slot.server_key)
            if status is None or status.slot != slot.name or status.phase in (Phase.STOPPED, Phase.FAILED):
                self.retire(slot, "its server no longer runs on it")

    def retire(self, slot: Slot, why: str) -> None:
        """Delete the slot's app, give back what it held, move a home back out of it, forget it."""
        homes = self.deps.homes
        emptied = True  # nothing of a user's left in the slot's folder
        if homes is not None and slot.user:
            emptied = homes.return_home(slot.user, f"{slot_folder(slot.name)}/home", slot.name)
        self.deps.apps.send_delete(slot.name)
        if self.deps.capacity is not None:
            self.deps.capacity.release(slot.name, SLOT_DONE, fence=True)
        if homes is not None and emptied:
            homes.folders.delete(slot_folder(slot.name))
        self.rows.delete(slot)
        log.warning("Retired warm server %s (%s): %s", slot.name, slot.pool, why)
        self.summary.retired.append(slot.name)

    # -- the size of each profile ----------------------------------------------------------------------------

    def _size(self, profile: PoolProfile, slots: list[Slot]) -> None:
        wanted = profile.wanted(datetime.fromtimestamp(self.now, UTC))
        waiting = [s for s in slots if s.state in ("creating", "ready")]
        self.summary.ready[profile.name] = sum(s.state == "ready" for s in slots)
        self.summary.bound[profile.name] = sum(s.state == "bound" for s in slots)
        self.summary.wanted[profile.name] = wanted
        for extra in sorted((s for s in waiting if s.state == "ready"), key=lambda s: s.created)[
                :max(len(waiting) - wanted, 0)]:
            try:
                self.retire(extra, f"more than the {wanted} wanted now")
            except (Lost, ArmFailure, AzureError) as e:
                self.summary.errors.append(f"{extra.name}: {e}")
        for _ in range(min(max(wanted - len(waiting), 0), MAX_CREATES_PER_RUN)):
            try:
                if not self._create(profile):
                    break
            except (ArmFailure, AzureError, CapacityBusy) as e:
                self.summary.errors.append(f"creating a {profile.name} slot: {e}")
                break

    def _create(self, profile: PoolProfile) -> bool:
        name, key = new_slot_name(), Fernet.generate_key().decode("ascii")
        # the hub's own environment: there the hub reaches a slot, and its server the hub API, by internal names
        environment = self.settings.environment_id
        if self.deps.capacity is not None:
            try:
                environment = self.deps.capacity.reserve(name, int(self.now * 1000), profile.footprint,
                                                         pinned=environment)
            except NoCapacity as e:
                log.info("No room for another %s slot: %s", profile.name, e)
                return False
        assert self.deps.homes is not None  # the settings require the home share with a pool
        self.deps.homes.folders.ensure(slot_folder(name))
        sealed = self.deps.sealer.seal_bytes(key.encode("ascii")).decode("ascii")
        slot = self.rows.create(Slot(name=name, pool=profile.name, environment_id=environment, state="creating",
                                     key_sealed=sealed, created=self.now), self.now)
        self.deps.apps.send_create_or_update(name, build_slot_app(name, profile, self.settings, environment, key,
                                                                  self.settings.hub_id))
        log.info("Creating warm server %s (%s) in %s", slot.name, profile.name, environment.rsplit("/", 1)[-1])
        self.summary.created.append(name)
        return True


def run_pool(environ: Mapping[str, str] | None = None, *, now: float | None = None) -> PoolSummary:
    """The timer's entry point: one run for the current app settings (nothing without ``ACA_WARM_POOL``)."""
    deps = get_deps(os.environ if environ is None else environ)
    summary = WarmPool(deps, time.time() if now is None else now).run() if deps.settings.warm_pool else PoolSummary()
    (log.error if summary.errors else log.info)("%s", summary.line())
    return summary
