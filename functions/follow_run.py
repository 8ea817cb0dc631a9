"""One delivery of one follow-up: look at the app once, then record the outcome, send the next write, or come back.

A follow-up invocation (see :mod:`functions.lifecycle`) reads the app in the
listing shared by every follow-up of the instance. While ARM still works on
exactly the write it waits for, the invocation only sends the next follow-up
(no table read or write); every ``PROGRESS_NOTE_INTERVAL`` it writes a note
that time passes; then it records ``running`` with the app's URL, ``stopped``,
or ``failed`` with ARM's own code and message, or the step that was still
unfinished at the deadline.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from acaspawner.contract import Op, Phase, Status

from . import telemetry
from .arm import TerminalArmError, TransientArmError, app_fqdn, app_generation
from .followup import FollowUp, Step
from .rules import Outcome, RetryLater
from .server_run import ServerRun

if TYPE_CHECKING:
    from .deps import Deps

log = logging.getLogger("functions.lifecycle")

#: while ARM works, a follow-up writes "still provisioning" this often: the user sees time pass, and the
#: spawner sees the follow-ups are alive (a row silent for much longer means they were lost)
PROGRESS_NOTE_INTERVAL = 30.0


_SETTLED_STATES = ("Succeeded", "Failed", "Canceled")


def _arm_busy(follow_up: FollowUp, app: dict[str, Any] | None) -> bool:
    """True while the listing shows ARM still working on exactly the write ``follow_up`` waits for."""
    if app is None:
        return False
    owner = app_generation(app)
    if follow_up.op is Op.START and owner != follow_up.generation:
        return False  # not yet updated, or a newer start's now: the full look decides
    if follow_up.op is not Op.START and owner is not None and owner > follow_up.generation:
        return False  # rebuilt by a newer start: this stop is done
    props = app.get("properties") or {}
    state = props.get("provisioningState")
    if follow_up.step is Step.DELETE:
        return state == "Deleting"
    if follow_up.step is Step.STOP:
        return state not in _SETTLED_STATES or props.get("runningStatus") != "Stopped"
    return state not in _SETTLED_STATES and state != "Deleting"


class FollowUpRun(ServerRun):
    """One delivery of one follow-up (the helpers it shares with requests are :class:`ServerRun`'s)."""

    def follow(self, follow_up: FollowUp, *, fresh: bool = True) -> Outcome:
        """Look at the app once: record the outcome, send the next write, or come back later.

        ``fresh``: in a fresh listing (:meth:`AppListing.freshness`), even when this follow-up stayed away longer
        (other starts' outcomes are swept from it, :mod:`functions.pending_looks`); else in any listing
        requested after the follow-up's last look.
        """
        outcome = self._look(follow_up, fresh)
        if outcome not in (Outcome.PENDING, Outcome.ACCEPTED):  # else a follow-up was sent, and is remembered
            self.deps.looks.settled(self.key, follow_up.generation)
        return outcome

    def _look(self, follow_up: FollowUp, fresh: bool) -> Outcome:
        since = follow_up.since
        if fresh:
            since = max(since, time.time() - self.deps.listing.freshness(self.settings.arm_poll_interval))
        try:
            app = self.deps.listing.find(self.app_name, since=since)
        except TransientArmError as e:
            raise RetryLater(str(e)) from e
        except TerminalArmError as e:
            app, listing_error = None, e
        else:
            listing_error = None
            now = time.time()
            if _arm_busy(follow_up, app) and now < follow_up.deadline \
                    and now - follow_up.noted < PROGRESS_NOTE_INTERVAL:
                # the common case while ARM works: no table read or write, just the next look
                self._send_follow_up(follow_up.step, since=now)
                return Outcome.PENDING
        current = self._read()
        if self._foreign_row(current):
            return Outcome.CONFLICT
        following = Phase.PROVISIONING if follow_up.op is Op.START else Phase.STOPPING
        if current is None or current.generation != follow_up.generation or current.phase is not following:
            # the table moved on: a newer request, an outcome already recorded, or a stop that overtook a start
            if follow_up.op is Op.START and current is not None and current.phase in (Phase.STOPPING, Phase.STOPPED):
                self._remove_own_app()
            return Outcome.IGNORED
        mine = current
        if listing_error is not None:
            return self._failed(mine, listing_error)
        try:
            if follow_up.op is Op.START:
                return self._follow_start(mine, follow_up, app)
            return self._follow_stop(mine, follow_up, app)
        except TerminalArmError as e:
            return self._failed(mine, e)
        except TransientArmError as e:
            return self._transient(mine, e)

    def _follow_start(self, mine: Status, follow_up: FollowUp, app: dict[str, Any] | None) -> Outcome:
        if app is None:
            app = self.deps.apps.get(self.app_name)  # a listing may lag a fresh create: ask the app itself
        if app is None:
            return self._failed(mine, TerminalArmError(
                "ContainerAppNotFound", f"container app {self.key} disappeared while Azure was provisioning it"))
        if self._foreign_app(app):
            return self._failed(mine, TerminalArmError(
                "ServerNameTaken", f"the container app name {self.key} is taken by another server"))
        owner = app_generation(app)
        if owner is not None and owner > follow_up.generation:
            return Outcome.IGNORED  # a newer start owns the app
        props = app.get("properties") or {}
        state = props.get("provisioningState") or "unknown"
        if owner is not None and owner < follow_up.generation:
            state = "not yet updated"  # the listing shows the app before this write took effect
        elif state in ("Failed", "Canceled"):
            error = self.deps.apps.operation_error(follow_up.operation_url) or TerminalArmError(
                "ContainerAppProvisioningFailed", f"Azure reports provisioning state {state} for container app {self.key}")
            return self._failed(mine, error)
        elif state == "Succeeded" and props.get("runningStatus") == "Stopped":
            if follow_up.step is Step.CREATE:  # parked by ACA_STOP_MODE=stop: start it
                accepted = self.deps.apps.send_start(self.key, request_id=follow_up.request_id)
                self._send_follow_up(Step.START, since=time.time(), accepted=accepted)
                written = self._finish(mine, mine.phase, f"Azure is starting container app {self.key}",
                                       step=Step.START.value)
                return Outcome.ACCEPTED if written is not None else Outcome.IGNORED
        elif state == "Succeeded":
            fqdn = app_fqdn(app)
            if not fqdn:
                return self._failed(mine, TerminalArmError("NoIngressFqdn", "the container app has no ingress address"))
            written = self._finish(mine, Phase.RUNNING, "server is running", url=f"http://{fqdn}", error_code="",
                                   step="")
            if written is not None:
                return Outcome.APPLIED
            winner = self.overtaken_by
            if winner is not None and winner.phase in (Phase.STOPPING, Phase.STOPPED):
                self._remove_own_app()
            return Outcome.IGNORED
        return self._wait(mine, follow_up, f"provisioningState {state}, runningStatus {props.get('runningStatus')}")

    def _follow_stop(self, mine: Status, follow_up: FollowUp, app: dict[str, Any] | None) -> Outcome:
        owner = app_generation(app) if app is not None else None
        if app is None or self._foreign_app(app) or (owner is not None and owner > follow_up.generation):
            return self._stopped(mine)
        props = app.get("properties") or {}
        state = props.get("provisioningState") or "unknown"
        if follow_up.step is Step.STOP and props.get("runningStatus") == "Stopped" and state != "InProgress":
            return self._stopped(mine)
        return self._wait(mine, follow_up, f"provisioningState {state}, runningStatus {props.get('runningStatus')}")

    def _wait(self, mine: Status, follow_up: FollowUp, seen: str) -> Outcome:
        """ARM is still at it: come back after the follow-up's delay, or fail once the deadline has passed."""
        now = time.time()
        if now >= follow_up.deadline:
            waited = int(now - follow_up.requested)
            return self._failed(mine, TerminalArmError(
                "DeadlineExceeded",
                f"Azure was still {follow_up.step.doing} container app {self.app_name} {waited} s after the request "
                f"({seen}); giving up. Try again; if it keeps happening, an admin can look at the app in Azure."))
        if now - follow_up.noted >= PROGRESS_NOTE_INTERVAL:
            note = f"Azure is still {follow_up.step.doing} container app {self.app_name} ({int(now - follow_up.requested)} s)"
            written = self._finish(mine, mine.phase, note)
            if written is None or written.phase is not mine.phase:
                return Outcome.IGNORED  # overtaken, or finished by another delivery
            self._send_follow_up(follow_up.step, since=now, noted=now)
            return Outcome.PENDING
        self._send_follow_up(follow_up.step, since=now)
        return Outcome.PENDING


def sweep(deps: Deps) -> None:
    """Record the outcome of every start this instance remembers whose app a fresh listing
    (:meth:`AppListing.freshness`) shows running (:mod:`functions.pending_looks`). Never raises: each start's own
    looks remain."""
    if not len(deps.looks):
        return
    try:
        fresh = time.time() - deps.listing.freshness(deps.settings.arm_poll_interval)
        taken, apps = deps.listing.latest(since=fresh)
    except Exception as e:  # ARM's listing failed: the starts' own looks will tell
        log.warning("could not list the apps to record other starts' outcomes: %s", e)
        return
    for follow_up in deps.looks.take_running(taken, apps):
        with telemetry.request_context(follow_up.request_id):
            try:
                outcome = FollowUpRun(follow_up, deps, 1).follow(follow_up, fresh=False)
            except Exception as e:  # its own next look will try again
                log.warning("%r: could not record its outcome from another look: %s", follow_up, e)
                continue
        log.info("%r: %s (seen by another start's look)", follow_up, outcome.value)
