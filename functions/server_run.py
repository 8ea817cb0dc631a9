"""One delivery of one validated request or follow-up, step by step (see :mod:`functions.lifecycle`)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError

from acaspawner.contract import Op, Phase, Request, Status

from .app_body import TAG_HUB, build_container_app, owner_tags
from .arm import (
    Accepted,
    ArmFailure,
    TerminalArmError,
    TransientArmError,
    app_generation,
    classify,
    for_users,
)
from .capacity import CapacityBusy, NoCapacity, Superseded, UserLimit
from .environments import budget_of
from .followup import FollowUp, Step
from .footprint import app_environment, of_spec
from .placement import NO_CAPACITY
from .rules import MAX_RACES, Outcome, RetryLater, Verdict, decide, settled
from .slot_binding import bind_warm, unbind
from .storage import StatusConflict
from .user_homes import HomeLent, HomeTaken
from .warm_pool import TAG_SLOT

if TYPE_CHECKING:
    from .deps import Deps

log = logging.getLogger("functions.lifecycle")  # one logger for the lifecycle, whichever module speaks

#: the error code of a start refused because its user holds all that one user may (ACA_MAX_*_PER_USER)
USER_LIMIT = "UserLimitReached"

def _staying(app: dict[str, Any] | None) -> str:
    """The environment an existing app keeps (it cannot move); ``""`` for none, or one on its way out."""
    if app is None or (app.get("properties") or {}).get("provisioningState") == "Deleting":
        return ""
    return app_environment(app)


class ServerRun:
    """One delivery of one validated request or follow-up."""

    def __init__(self, request: Request | FollowUp, deps: Deps, dequeue_count: int):
        self.request = request
        self.deps = deps
        self.settings = deps.settings
        self.storage = deps.storage
        self.dequeue_count = max(dequeue_count, 1)
        self.key = request.server_key
        self.overtaken_by: Status | None = None  # set when _finish loses to a newer/terminal request
        # the warm server (functions.warm_pool) this server runs in: its app is named by the slot, not the key
        self.slot = request.app if isinstance(request, FollowUp) else ""
        self.no_warm = ""  # why a start a warm server could have served creates an app instead

    @property
    def app_name(self) -> str:
        """The name of this server's container app."""
        return self.slot or self.key

    @property
    def last_delivery(self) -> bool:
        return self.dequeue_count >= self.deps.max_dequeue_count

    # -- status helpers -------------------------------------------------

    def _read(self) -> Status | None:
        return self.storage.get_status(self.request.hub_id, self.key)

    # -- ownership: a key names one server; what another server owns is never touched --

    def _foreign_row(self, current: Status | None) -> bool:
        r = self.request
        if current is None or (current.user, current.server_name) == (r.user, r.server_name):
            return False
        log.warning("%r: the status of %s records user %r, server %r; leaving it alone",
                    r, self.key, current.user, current.server_name)
        return True

    def _foreign_app(self, app: dict[str, Any] | None) -> bool:
        if app is None:
            return False
        tags = app.get("tags") or {}
        if all(tags.get(k) == v for k, v in owner_tags(self.request).items()):
            return False
        if self.slot and app.get("name") == self.slot and TAG_SLOT in tags \
                and tags.get(TAG_HUB) == owner_tags(self.request)[TAG_HUB]:
            return False  # the warm server this one runs in (its status row names it)
        log.warning("%r: container app %s is tagged for another server; leaving it alone", self.request, self.key)
        return True

    def _next(self, current: Status | None, phase: Phase, message: str, **changes: Any) -> Status:
        """The entity after ``phase``: a fresh event list when the generation changes."""
        r = self.request
        changes.setdefault("request_id", r.request_id)  # admins find the request's log lines by it
        if current is None or current.generation != r.generation:
            # a stop keeps knowing the warm server it has to remove
            slot = current.slot if current is not None and r.op is not Op.START else ""
            fresh = Status(hub_id=r.hub_id, server_key=self.key, phase=phase, generation=r.generation,
                           user=r.user, server_name=r.server_name, slot=slot,
                           etag=current.etag if current else None)
            return fresh.with_event(phase, message, **changes)
        return current.with_event(phase, message, **changes)

    def _claim(self, phase: Phase, message: str) -> Status | Outcome:
        """Record that this request is acting (ETag-conditional); an Outcome when it must not act."""
        for _ in range(MAX_RACES):
            current = self._read()
            if self._foreign_row(current):
                return Outcome.CONFLICT
            verdict = decide(current, self.request)
            if verdict is Verdict.STALE or verdict is Verdict.SUPERSEDED:
                log.info("%r %s: the table holds generation %s (%s)", self.request, verdict.value,
                         current.generation, current.phase.value)
                if self.request.op is Op.START and current.phase in (Phase.STOPPING, Phase.STOPPED):
                    self._remove_own_app()
                return Outcome.IGNORED
            if verdict is Verdict.DONE:
                if self.request.op is Op.STOP:
                    try:
                        self._remove(self.request.generation)  # make sure; cheap when already gone
                    except TransientArmError as e:
                        raise RetryLater(str(e)) from e
                    except TerminalArmError as e:
                        log.warning("%r: could not make sure the app is gone: %s", self.request, e.code)
                    self._release()  # in case the first delivery stopped between recording and releasing
                    return Outcome.DUPLICATE
                if current.phase is Phase.FAILED or current.slot or self._app_exists():
                    return Outcome.DUPLICATE
                log.warning("%r: status says running but the app is missing; creating it again", self.request)
            elif current is not None and current.generation == self.request.generation and current.step \
                    and current.phase is phase:
                # ARM already took this request's write: follow it (again) instead of sending it twice
                self._send_follow_up(Step(current.step), since=time.time())
                return Outcome.DUPLICATE
            if self.dequeue_count > 1:
                message = f"{message} (attempt {self.dequeue_count} of {self.deps.max_dequeue_count})"
            try:
                return self.storage.write_status(self._next(current, phase, message, step=""))
            except StatusConflict:
                continue
        raise RetryLater(f"status of {self.key} kept changing")

    def _finish(self, mine: Status, phase: Phase, message: str, **changes: Any) -> Status | None:
        """Write the outcome over ``mine``; None when a newer or terminal request overtook this one."""
        for _ in range(MAX_RACES):
            try:
                return self.storage.write_status(self._next(mine, phase, message, **changes))
            except StatusConflict:
                current = self._read()
            verdict = decide(current, self.request)
            if verdict is Verdict.STALE or verdict is Verdict.SUPERSEDED:
                self.overtaken_by = current
                return None
            if current is None:  # removed meanwhile: record it afresh
                r = self.request
                mine = Status(hub_id=r.hub_id, server_key=self.key, phase=phase, generation=r.generation,
                              user=r.user, server_name=r.server_name)
                continue
            if current.generation == self.request.generation and settled(current.phase, phase):
                return current  # another delivery of this request got there first
            mine = current
        raise RetryLater(f"status of {self.key} kept changing")

    def reject(self, message: str, code: str) -> Outcome:
        """Record a failed status for a request that must not act, if its generation still counts."""
        for _ in range(MAX_RACES):
            current = self._read()
            if self._foreign_row(current):
                return Outcome.CONFLICT
            if decide(current, self.request) is not Verdict.PROCEED:
                return Outcome.IGNORED
            try:
                self.storage.write_status(self._next(current, Phase.FAILED, message, url="", error_code=code,
                                                     step=""))
            except StatusConflict:
                continue
            self._release_failed_start()
            return Outcome.REJECTED
        raise RetryLater(f"status of {self.key} kept changing")

    def _failed(self, mine: Status, error: ArmFailure, prefix: str = "", *, release: bool = True) -> Outcome:
        """Record ``error`` as the outcome; a start then gives back what it held (``release``: it may hold some)."""
        log.warning("%r failed: %s: %s", self.request, error.code, error.message)
        written = self._finish(mine, Phase.FAILED, prefix + for_users(error.message), url="", error_code=error.code,
                               step="")
        if written is None:
            return Outcome.IGNORED
        if written.phase is not Phase.FAILED:
            return Outcome.DUPLICATE
        if release:
            self._release_failed_start()
        return Outcome.FAILED

    def _transient(self, mine: Status, error: TransientArmError) -> Outcome:
        n, most = self.dequeue_count, self.deps.max_dequeue_count
        if self.last_delivery:
            return self._failed(mine, error, prefix=f"gave up after {n} attempts: ")
        log.warning("%r: transient ARM error %s on attempt %d of %d; will retry", self.request, error.code, n, most)
        written = self._finish(mine, mine.phase, f"temporary Azure error ({error.code}), retrying")
        if written is None:
            return Outcome.IGNORED  # a newer request owns the server now
        if written.phase is not mine.phase:
            return Outcome.DUPLICATE  # another delivery finished the job meanwhile
        raise RetryLater(str(error)) from error

    # -- follow-ups -----------------------------------------------------

    def _send_follow_up(self, step: Step, since: float, accepted: Accepted | None = None,
                        noted: float | None = None) -> None:
        """The next look: after a write, when ARM's Retry-After says; later, every ACA_ARM_POLL_INTERVAL, less
        often while many wait (:mod:`functions.pending_looks`). Later looks read the shared listing, not the
        operation, so they cost ARM nothing extra."""
        r = self.request
        interval = self.settings.arm_poll_interval
        delay = (accepted.retry_after or interval) if accepted else self.deps.looks.delay(interval)
        url = accepted.operation_url if accepted else ""
        if isinstance(r, FollowUp):
            follow_up = r.next(since=since, step=step, operation_url=url if accepted else None, delay=delay,
                               noted=noted)
        else:
            follow_up = FollowUp.first(r, step, since=since, delay=delay, operation_url=url, app=self.slot,
                                       remove_home=self._removes_home(),
                                       deadline=r.created + self.settings.spawn_deadline)
        self.deps.follow_ups.send(follow_up)
        self.deps.looks.sent(follow_up)

    def _accepted(self, mine: Status, step: Step, accepted: Accepted, message: str) -> Outcome:
        """ARM took ``step``'s write: send the follow-up, then record what is being waited for."""
        # the follow-up first: if this invocation dies now, the follow-up still comes back
        self._send_follow_up(step, since=time.time(), accepted=accepted)
        written = self._finish(mine, mine.phase, message, step=step.value)
        if written is None:
            winner = self.overtaken_by
            if self.request.op is Op.START and winner is not None and winner.phase in (Phase.STOPPING, Phase.STOPPED):
                self._remove_own_app()  # the stop may have looked before this create made the app
            return Outcome.IGNORED
        return Outcome.ACCEPTED if written.phase is mine.phase else Outcome.DUPLICATE

    # -- capacity (functions.capacity) -----------------------------------

    def _place(self, existing: dict[str, Any] | None) -> str:
        """Hold this start's footprint in an environment with room and return its id.

        An app the server already has keeps its environment; in stop mode the
        environment it held last is kept too (its parked app lives there).
        Raises NoCapacity or Superseded.
        """
        ledger = self.deps.capacity
        if ledger is None:
            return self.settings.environment_id
        assert self.request.spec is not None
        need, parks = of_spec(self.request.spec), self.settings.stop_mode == "stop"
        try:
            try:
                return ledger.reserve(self.key, self.request.generation, need, pinned=_staying(existing),
                                      pin_previous=parks, user=self.request.user)
            except NoCapacity:
                if not (_staying(existing) or parks):
                    raise
                # the listing may be older than the app's delete: ask the app itself before refusing
                return ledger.reserve(self.key, self.request.generation, need,
                                      pinned=_staying(self.deps.apps.get(self.key)), user=self.request.user)
        except CapacityBusy as e:
            raise RetryLater(str(e)) from e

    def _release(self) -> None:
        """A stop or delete is done: give back what the server holds, and fence out older starts."""
        if self.deps.capacity is None:
            return
        try:
            self.deps.capacity.release(self.key, self.request.generation, fence=True)
        except CapacityBusy as e:
            raise RetryLater(str(e)) from e

    def _release_failed_start(self) -> None:
        """A start ended failed: give back what it took (best effort: the reconciler repairs a miss)."""
        if self.deps.capacity is None or self.request.op is not Op.START:
            return
        try:
            self.deps.capacity.release(self.key, self.request.generation, exact=True)
        except CapacityBusy as e:
            log.warning("%r: could not release its reservation now (%s); the reconciler will", self.request, e)

    # -- ARM helpers ----------------------------------------------------

    def _app_exists(self) -> bool:
        try:
            return self.deps.apps.get(self.key) is not None
        except TransientArmError as e:
            raise RetryLater(str(e)) from e

    def _remove_own_app(self) -> None:
        """After a stop overtook this start: delete the app if this very start created it.

        Runs on every delivery of an overtaken start (and its follow-ups), so a
        clean-up cut short by a transient error is finished by the redelivery.
        """
        try:
            app = self.deps.apps.get(self.key)
            if app is not None and app_generation(app) == self.request.generation and not self._foreign_app(app):
                log.info("%r: removing the app it created before a stop overtook it", self.request)
                self.deps.apps.send_delete(self.key, request_id=self.request.request_id)
        except TransientArmError as e:
            raise RetryLater(str(e)) from e
        except TerminalArmError as e:
            log.warning("%r: could not remove the app after a stop overtook it: %s", self.request, e.code)

    def _remove(self, up_to_generation: int) -> Accepted:
        """Delete (or, in stop mode, stop) the app, unless a newer start has already rebuilt it."""
        apps = self.deps.apps
        app = apps.get(self.app_name)
        if app is None or self._foreign_app(app):
            return Accepted(done=True)  # no app of this server
        owner = app_generation(app)
        if owner is not None and owner > up_to_generation:
            log.info("%r: app belongs to newer generation %s; leaving it", self.request, owner)
            return Accepted(done=True)
        if self._parks():
            return apps.send_stop(self.app_name, request_id=self.request.request_id)
        return apps.send_delete(self.app_name, request_id=self.request.request_id)

    def _parks(self) -> bool:
        """Whether this stop leaves the app in place, stopped (``ACA_STOP_MODE=stop``), instead of deleting it
        (never a warm server: it serves one user once)."""
        return self.request.op is Op.STOP and self.settings.stop_mode == "stop" and not self.slot

    def _check_network_ingress(self, environment_id: str) -> None:
        """Refuse to give servers the network's ingress in an environment ARM does not report internal.

        ``vnet_ingress`` makes an app's ingress external, which is the virtual
        network's only in an internal environment; in an external one it would
        be the internet (security review L1).
        """
        budget = budget_of(self.settings.environments, environment_id)
        known = self.deps.internal_environments
        if budget is None or not budget.vnet_ingress or environment_id.lower() in known:
            return
        if not self.deps.apps.environment_is_internal(environment_id):
            raise TerminalArmError(
                "EnvironmentNotInternal",
                f"environment {budget.name} is not internal, but ACA_ENVIRONMENTS gives its servers vnet_ingress, "
                "which would put them on the internet; an administrator must correct ACA_ENVIRONMENTS")
        known.add(environment_id.lower())

    # -- the user's home (functions.user_homes): never a path from a message ----------

    def _removes_home(self) -> bool:
        """Whether this delete also removes its user's home folder (asked for, and allowed by the settings)."""
        r = self.request
        if r.op is not Op.DELETE or not self.settings.home_delete_on_delete or self.deps.homes is None:
            return False
        return r.remove_home if isinstance(r, FollowUp) else bool(r.spec is not None and r.spec.volumes)

    def _prepare_home(self) -> str:
        """The user's home folder for this start, made and recorded as theirs; ``""`` when it mounts none."""
        spec = self.request.spec
        if spec is None or not spec.volumes:
            return ""
        if self.deps.homes is None:  # the settings require the share with the home storage
            raise TerminalArmError("NoHomeShare", "this deployment has no home share to mount")
        try:
            return self.deps.homes.prepare(self.request.user, self.key)
        except HomeTaken as e:
            raise TerminalArmError("HomeFolderTaken", f"{e}; an administrator must look at the home share") from e
        except HomeLent as e:
            raise TerminalArmError("HomeInUse", f"{e}: stop that server to start this one") from e
        except AzureError as e:
            raise classify(e) from e

    def _remove_home(self) -> None:
        try:
            removed = self.deps.homes.remove(self.request.user)
        except AzureError as e:
            raise classify(e) from e
        log.info("%r: removed home folders %s", self.request, removed or "(none recorded for the user)")

    # -- the operations --------------------------------------------------

    def start(self) -> Outcome:
        claimed = self._claim(Phase.PROVISIONING, f"creating container app {self.key}")
        if isinstance(claimed, Outcome):
            return claimed
        mine = claimed
        try:
            # any listing will do: an app made since it was taken has a status row, checked above
            existing = self.deps.listing.find(self.key, since=0.0)
            if self._foreign_app(existing):
                return self._failed(mine, TerminalArmError(
                    "ServerNameTaken", f"the container app name {self.key} is taken by another server"))
            try:
                warm = bind_warm(self, mine)
                if warm is not None:
                    return warm
                environment = self._place(existing)
            except NoCapacity as e:  # it holds nothing: what a twin delivery of it may hold is not its to give
                code = USER_LIMIT if isinstance(e, UserLimit) else NO_CAPACITY
                return self._failed(mine, TerminalArmError(code, str(e)), release=False)
            except Superseded as e:
                log.info("%r ignored: %s", self.request, e)
                return Outcome.IGNORED
            self._check_network_ingress(environment)
            home = self._prepare_home()
            body = build_container_app(self.request, self.settings, environment_id=environment, home_folder=home)
            accepted = self.deps.apps.send_create_or_update(self.key, body, request_id=self.request.request_id)
        except TerminalArmError as e:
            return self._failed(mine, e)
        except TransientArmError as e:
            return self._transient(mine, e)
        return self._accepted(mine, Step.CREATE, accepted, f"{self.no_warm}Azure is provisioning container app "
                              f"{self.key}" + (" (this takes longer)" if self.no_warm else ""))

    def stop(self) -> Outcome:
        deleting = self.request.op is Op.DELETE
        claimed = self._claim(Phase.STOPPING, "deleting server" if deleting else "stopping server")
        if isinstance(claimed, Outcome):
            return claimed
        mine = claimed
        self.slot = mine.slot
        try:
            accepted = self._remove(self.request.generation)
            if accepted.done:
                return self._stopped(mine)
        except TerminalArmError as e:
            return self._failed(mine, e)
        except TransientArmError as e:
            return self._transient(mine, e)
        step = Step.STOP if self._parks() else Step.DELETE
        return self._accepted(mine, step, accepted, f"Azure is {step.doing} container app {self.key}")

    def _stopped(self, mine: Status) -> Outcome:
        """The app is gone (or parked): remove the home folder if asked to, and record it."""
        deleting = self.request.op is Op.DELETE
        if self.slot:
            unbind(self)  # the user's home back to its folder, the warm server forgotten
        if self._removes_home():
            self._remove_home()
        self._release()  # before the outcome: a redelivery after a crash here finds the stop not yet done
        written = self._finish(mine, Phase.STOPPED, "server deleted" if deleting else "server stopped",
                               url="", error_code="", step="", slot="", claim_key="")
        return Outcome.APPLIED if written is not None else Outcome.IGNORED
