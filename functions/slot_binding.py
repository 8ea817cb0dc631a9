"""Binding a start to a warm server, and letting go of it when the server stops (see :mod:`functions.warm_pool`).

A start whose image and size match a pool profile, and that mounts a home,
takes a ready slot of that profile (one conditional write), holds
the server's cores and memory in the slot's environment (the per-user limits
apply as to any start), moves the user's home folder into the slot's folder
(one rename: the home is in exactly one place at any time), and records the
server ``running`` at the slot's address with the slot's key sealed for the
hub. The hub then sends the launcher the user's claim. When that server
stops, its app (the slot's) is deleted like any server's, the home moves
back to its folder, and the slot is forgotten; the pool's timer makes a new
one. With no slot free, the start goes the usual way (a new app).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from acaspawner.contract import Phase, Request, Status

from .capacity import NoCapacity
from .deps import Deps
from .footprint import of_spec
from .pool_profiles import matching_profile
from .rules import Outcome
from .settings import Settings
from .warm_pool import SLOT_DONE, Lost, SlotRows, slot_folder

log = logging.getLogger("functions.lifecycle")


class Run(Protocol):
    """What binding needs of one delivery (:class:`functions.server_run.ServerRun`)."""

    request: Request
    deps: Deps
    settings: Settings
    key: str
    slot: str
    no_warm: str

    def _prepare_home(self) -> str: ...

    def _finish(self, mine: Status, phase: Phase, message: str, **changes: Any) -> Status | None: ...


def bind_warm(run: Run, mine: Status) -> Outcome | None:
    """Serve this start with a warm server, if one of its kind is free; None: start it the usual way.

    Raises :class:`~functions.capacity.NoCapacity` (a per-user limit) and the home's errors as a start would.
    A redelivery finds the slot it leased before and goes on from there.
    """
    settings, deps, request = run.settings, run.deps, run.request
    spec = request.spec
    if not settings.warm_pool or deps.homes is None or spec is None or not spec.volumes:
        return None
    if spec.workload_profile and spec.workload_profile.lower() != "consumption":
        return None
    profile = matching_profile(settings.warm_pool, spec.image, spec.cpu, spec.memory)
    if profile is None:
        return None
    home = run._prepare_home()
    rows = SlotRows(deps.storage.table, settings.hub_id)
    slot = rows.lease(profile.name, run.key, request.user, request.generation, time.time())
    if slot is None:
        log.info("%r: no %s warm server is free; creating a server", request, profile.name)
        run.no_warm = "Every warm server is in use: "
        return None
    deps.homes.owners.mark_lent(home, request.user, slot.name, run.key)
    # after the mark, so a start of another server either sees it or has its status seen here
    if slot.state == "leased" and _other_servers(run):
        log.info("%r: another server of the user has the home; creating a server", request)
        run.no_warm = "Another of your servers uses your home, so no warm server: "
        deps.homes.owners.clear_lent(home, slot.name)
        rows.update(slot, time.time(), state="ready", server_key="", user="", generation=0)
        return None
    handed_over = False
    try:
        if deps.capacity is not None:
            # the server holds the slot's cores from now on: one transaction, which leaves the environment's
            # count (the row every start and every bind would race for) alone
            need = of_spec(spec)
            handed_over = deps.capacity.take_over(run.key, request.generation, need, slot.name, SLOT_DONE,
                                                  request.user)
            if not handed_over:
                deps.capacity.reserve(run.key, request.generation, need, pinned=slot.environment_id,
                                      user=request.user)
    except NoCapacity:
        deps.homes.owners.clear_lent(home, slot.name)
        rows.update(slot, time.time(), state="ready", server_key="", user="", generation=0)
        raise
    deps.homes.lend(request.user, home, f"{slot_folder(slot.name)}/home")
    if slot.state != "bound":
        slot = rows.update(slot, time.time(), state="bound")
    if deps.capacity is not None and not handed_over:  # the server holds the cores now, not the slot
        deps.capacity.release(slot.name, SLOT_DONE, fence=True)
    run.slot = slot.name
    written = run._finish(mine, Phase.RUNNING, f"a warm server ({profile.name}) is ready: handing it over",
                          url=slot.url, slot=slot.name, claim_key=slot.key_sealed, error_code="", step="")
    if written is None:  # a stop overtook the start before it could name the slot: let go of it here
        log.info("%r: a stop came first; giving the warm server %s up", request, slot.name)
        deps.apps.send_delete(slot.name, request_id=request.request_id)
        unbind(run)
        return Outcome.IGNORED
    log.info("%r: bound to warm server %s (%s)", request, slot.name, profile.name)
    return Outcome.APPLIED


def _other_servers(run: Run) -> bool:
    """Whether another server of the user is starting, running or stopping (it may have the home mounted)."""
    busy = (Phase.QUEUED, Phase.PROVISIONING, Phase.RUNNING, Phase.STOPPING)
    return any(s.server_key != run.key and s.phase in busy
               for s in run.deps.storage.statuses_of_user(run.settings.hub_id, run.request.user))


def unbind(run: Run) -> None:
    """The warm server ``run.slot`` is gone (or going): move the user's home back and forget the slot."""
    deps, slot_name = run.deps, run.slot
    if deps.homes is not None:
        if deps.homes.return_home(run.request.user, f"{slot_folder(slot_name)}/home", slot_name):
            deps.homes.folders.delete(slot_folder(slot_name))
    rows = SlotRows(deps.storage.table, run.settings.hub_id)
    slot = rows.get(slot_name)
    if slot is not None and slot.server_key == run.key:
        try:
            rows.delete(slot)
        except Lost:
            log.info("%r: the row of warm server %s changed meanwhile; the pool's timer will see to it",
                     run.request, slot_name)
