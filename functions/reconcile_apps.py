"""The reconciler's steps on the apps: list this hub's apps, delete those no live server owns, report missing ones.

Steps 1, 4 and 5 of :mod:`functions.reconciler`. An app goes when it has no
status entity (an orphan), when its server is ``stopped`` or ``failed``
(not a parked app in ``ACA_STOP_MODE=stop``), or when the hub no longer counts
its still-active server, always past the grace period, never when its
``aca-generation`` tag is newer than the entity, and only after the entity is
read again just before the delete. A hub answer that would have most of a
class's servers removed is not believed (:func:`implausible_hub_answer`).
Warm servers (:mod:`functions.warm_pool`) are the pool's timer's to delete;
here they only count as the app of the server bound to them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from acaspawner.contract import Phase, Status
from acaspawner.naming import server_key

from .app_body import TAG_HUB
from .arm import ArmApps, TerminalArmError, TransientArmError, app_generation
from .hubapi import HubApi
from .reconcile_run import ReconcileOptions, ReconcileSummary, StatusStore
from .storage import StatusConflict
from .warm_pool import TAG_SLOT

log = logging.getLogger("functions.reconciler")

NOT_IN_HUB = "the hub no longer counts its server as active"
#: a hub answer that would have the reconciler remove more active servers than this (and more than half of
#: them) is not believed: a restored database or a wrong ACA_HUB_API_URL must not delete a class's servers
FORGOTTEN_AT_MOST = 5


class Throttled(Exception):
    """ARM kept throttling (or could not be reached) beyond azure-core's retries: end the run early."""


def implausible_hub_answer(hub_active: set[tuple[str, str]], statuses: dict[str, Status], now: float,
                           grace: float) -> str:
    """Why the hub's list of active servers is not believed (``""``: it is)."""
    active = [s for s in statuses.values() if s.phase.is_active and now - s.updated >= grace]
    forgotten = [s for s in active if (s.user, s.server_name) not in hub_active]
    if not forgotten:
        return ""
    if not hub_active:
        return (f"the hub lists no active server while {len(active)} are active in the status table "
                "(a new or restored hub database, or ACA_HUB_API_URL naming another hub?)")
    if len(forgotten) > max(FORGOTTEN_AT_MOST, len(active) / 2):
        return f"the hub does not list {len(forgotten)} of the {len(active)} servers active in the status table"
    return ""


def app_created(app: dict[str, Any]) -> float | None:
    stamp = (app.get("systemData") or {}).get("createdAt")
    if not stamp:
        return None
    try:
        parsed = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo else None


class AppsStep:
    """Steps 1, 4 and 5 of one run: this hub's apps, through the ARM gateway (which counts the run's calls)."""

    def __init__(self, options: ReconcileOptions, storage: StatusStore, arm: ArmApps, now: float,
                 summary: ReconcileSummary):
        self.options = options
        self.storage = storage
        self.arm = arm
        self.now = now
        self.summary = summary
        self.apps: dict[str, dict[str, Any]] = {}  # this hub's apps, by name (warm servers apart)
        self.slot_apps: dict[str, dict[str, Any]] = {}  # this hub's warm servers: the pool's timer keeps them

    # -- 1. apps ---------------------------------------------------------------------------------

    def list_apps(self) -> None:
        """Fill :attr:`apps` page by page (what was listed stays usable when the budget runs out)."""
        for page in self.arm.pages():
            for app in page:
                tags = app.get("tags") or {}
                if tags.get(TAG_HUB) == self.options.hub_id:
                    (self.slot_apps if TAG_SLOT in tags else self.apps)[app["name"]] = app
                else:
                    self.summary.foreign_apps += 1
        self.summary.listing_complete = True

    def by_holder(self, bound: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """Every app of this hub by who holds its cores: a warm server bound to a server (``bound``: slot →
        server key) under that server's key, any other under its own name."""
        return {**self.apps, **{bound.get(name, name): app for name, app in self.slot_apps.items()}}

    # -- 4. apps without a live server -----------------------------------------------------------

    def reason_to_delete(self, app: dict[str, Any], status: Status | None,
                         hub_active: set[tuple[str, str]] | None = None) -> str | None:
        """Why ``app`` should go, or None to keep it.

        ``hub_active``: the (user, server) pairs the hub counts active, when it could be asked.
        """
        properties = app.get("properties") or {}
        if status is None:
            created = app_created(app)
            if created is not None and self.now - created < self.options.grace:
                return None
            return "it has no status entity (orphan)"
        generation = app_generation(app)
        if generation is not None and generation > status.generation:
            return None  # a newer request made it; its status has not caught up yet
        if status.phase.is_active:
            # the hub is the source of truth: it gave up on this start, or its stop was lost
            forgotten = hub_active is not None and (status.user, status.server_name) not in hub_active
            if forgotten and self.now - status.updated >= self.options.grace:
                return NOT_IN_HUB
            return None
        if status.phase not in (Phase.STOPPED, Phase.FAILED):
            return None
        if self.now - status.updated < self.options.grace:
            return None
        if (
            status.phase is Phase.STOPPED
            and self.options.stop_mode == "stop"
            and properties.get("runningStatus") == "Stopped"
        ):
            return None  # parked on purpose: a later start restarts it
        return f"its server is {status.phase.value}"

    def delete_leftovers(self, apps: dict[str, dict[str, Any]], statuses: dict[str, Status],
                         hub_active: set[tuple[str, str]] | None = None) -> None:
        for name, app in sorted(apps.items()):
            if (app.get("properties") or {}).get("provisioningState") == "Deleting":
                continue  # a delete is already under way
            reason = self.reason_to_delete(app, statuses.get(name), hub_active)
            if reason is None:
                self.summary.kept += 1
                continue
            # the entity may have moved on since it was read (a new start): decide again on a fresh read
            fresh = self.storage.get_status(self.options.hub_id, name)
            reason = self.reason_to_delete(app, fresh, hub_active)
            if reason is None:
                self.summary.kept += 1
                continue
            try:
                gone_already = self.arm.send_delete(name).done
            except TransientArmError as e:
                if e.throttled:
                    raise Throttled(f"deleting {name}: {e}") from e
                log.error("Could not delete container app %s: %s", name, e)
                self.summary.errors.append(f"delete {name}: {e.message}")
                continue
            except TerminalArmError as e:
                log.error("Could not delete container app %s: %s", name, e)
                self.summary.errors.append(f"delete {name}: {e.message}")
                continue
            log.warning("Deleted container app %s: %s%s", name, reason, " (it was already gone)" if gone_already
                        else "")
            self.summary.deleted.append(name)
            if reason == NOT_IN_HUB and fresh is not None:
                self._record_forgotten(fresh)

    def forget_warm(self, statuses: dict[str, Status], hub_active: set[tuple[str, str]] | None) -> None:
        """Record stopped the warm servers the hub no longer counts: the pool's timer then deletes each and
        moves its user's home back (the home's moves stay in one place)."""
        if hub_active is None:
            return
        for status in statuses.values():
            if status.slot and status.phase.is_active and (status.user, status.server_name) not in hub_active \
                    and self.now - status.updated >= self.options.grace:
                log.warning("Warm server %s of %s goes: %s", status.slot, status.server_key, NOT_IN_HUB)
                self._record_forgotten(status)

    def _record_forgotten(self, status: Status) -> None:
        """Say in the server's status why its app went (ETag-conditional: a newer request wins)."""
        message = "the hub no longer counts this server as running, so the reconciler removed its container app"
        try:
            self.storage.write_status(status.with_event(Phase.STOPPED, message, url="", error_code="NotInHub",
                                                        step=""))
        except StatusConflict:
            log.info("Not recording why the app of %s went: its status changed meanwhile", status.server_key)

    # -- 5. servers whose app is gone ------------------------------------------------------------

    def report_missing(self, apps: dict[str, dict[str, Any]], statuses: dict[str, Status],
                       hub_servers: Iterable[tuple[str, str]] | None) -> None:
        believed: dict[str, str] = {}
        for key, status in statuses.items():
            if status.phase is Phase.RUNNING:
                believed[key] = "the status table"
        if hub_servers is not None:
            by_server = {(s.user, s.server_name): key for key, s in statuses.items()}
            for user, name in hub_servers:
                key = by_server.get((user, name)) or server_key(self.options.hub_id, user, name)
                believed[key] = f"the hub ({user}/{name})" if name else f"the hub ({user})"
        for key, source in sorted(believed.items()):
            if key not in apps:
                log.warning("Server %s is running according to %s, but its container app is gone", key, source)
                self.summary.missing.append(f"{key} ({source})")


def hub_active_servers(api: HubApi, page_size: int = 200) -> list[tuple[str, str, bool]]:
    """(user, server name, ready) of every server the hub counts as active: ready, or pending a start or stop."""
    servers = []
    for user in api.list_users("active", page_size=page_size):
        for name, server in (user.get("servers") or {}).items():
            servers.append((user["name"], name, bool(server.get("ready"))))
    return servers
