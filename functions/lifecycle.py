"""The lifecycle handler: sealed requests from the hub, and the functions' own follow-ups.

Serverless shape: no invocation waits for ARM. A request invocation records
its claim in the status table, sends ARM one write (create/update, stop,
delete) without following the long-running operation, puts a sealed
:class:`~functions.followup.FollowUp` on the lifecycle queue, invisible for
the operation's ``Retry-After``, and returns. A follow-up invocation looks at
the app once, in a listing of the resource group shared by every follow-up
of the instance (:mod:`functions.listing`), and then records the outcome
(running, stopped, or failed with ARM's code and message), sends the next
write (starting an app that was parked stopped), or sends the next
follow-up. A start or stop still unfinished ``ACA_SPAWN_DEADLINE`` seconds
after the hub asked ends ``failed``, naming the step it was waiting for.

Delivery is at-least-once and unordered, so every request carries a
generation (milliseconds, increasing per server; every start, stop and
delete gets a new one) and the table entity records the generation it
belongs to. The rules, applied on every (re)read of the entity:

- an entity with a *newer* generation wins: the request is stale and ignored;
- at the *same* generation a stop/delete wins over a start (a start is
  ignored once its generation is stopping/stopped/failed), and a repeated
  request is a duplicate: once ARM has accepted its write (the entity
  records the ``step``) a duplicate only sends a fresh follow-up;
- a follow-up acts only while the entity is at its generation and still in
  the phase it follows (provisioning, stopping); anything else ends it;
- every write is ETag-conditional; a conflict means "re-read and decide again";
- a start overtaken by a stop deletes the app it created (on the write that
  lost, on its follow-up, or on a redelivery), so a stop racing a start ends
  stopped with no app left.

Where a start goes: it holds its cores and memory in an environment of the
pool with room (:mod:`functions.capacity`, :mod:`functions.placement`) before
it sends the PUT, whose ``environmentId`` follows; an app the server already
has keeps its environment. When no environment has room the start ends
``failed`` (``NoCapacity``) without an ARM call. A start that ends failed
gives back what it held; a stop or delete gives it back once the app is gone
(or parked), and fences out older starts of the server.

Untrusted or unreadable messages go to the poison queue (their original
base64 body, like the host's own poison) and never reach ARM. Policy
violations end as a ``failed`` status without an ARM call. ARM's terminal
errors end ``failed`` with its code and message; transient ones are retried
by azure-core, then by redelivery (:class:`RetryLater`), and the last
delivery writes ``failed`` instead.

Nothing here logs a message body, a secret or a token: requests and
follow-ups log as their ``repr`` (op, key, generation, correlation id).
"""

from __future__ import annotations

import json
import logging

from acaspawner import wire
from acaspawner.contract import ContractError, Op, Request, ServerSpec
from acaspawner.sealing import ExpiredMessage, SealError

from . import telemetry
from .arm import for_users
from .deps import Deps
from .follow_run import FollowUpRun, sweep
from .followup import FollowUp, open_message, sealer_for
from .policy import ForeignHub, PolicyViolation, check_request, key_belongs_to
from .rules import Outcome, RetryLater, Verdict, decide
from .server_run import ServerRun

__all__ = ["Deps", "Outcome", "RetryLater", "Verdict", "decide", "handle_message"]

log = logging.getLogger(__name__)


def _poison(body: bytes, deps: Deps) -> None:
    # the body as it sat on the queue (the host decoded base64), so it looks like the host's own poison
    deps.storage.send_to_poison(wire.encode(body))


def _unusable_request_target(body: bytes, deps: Deps) -> Request | None:
    """For an authentic message the contract cannot read: enough of it to name its server, if possible.

    The message opened under one of our keys (so it is no forgery), but its
    schema is unknown or invalid; if it still names a server of this hub,
    that server should fail visibly instead of waiting out its timeout.
    """
    try:
        sealer = sealer_for(body, deps.sealer, deps.followup_sealer)
        data = json.loads(sealer.open_bytes_of_any_age(body))
        op = data.get("op") if data.get("op") in ("start", "stop", "delete") else "start"
        target = Request(
            op=Op(op),
            hub_id=data["hub_id"],
            server_key=data["server_key"],
            user=str(data.get("user", "")),
            server_name=str(data.get("server_name", "")),
            generation=data["generation"],
            # only to name the server: the real spec could not be read
            spec=ServerSpec(image="(unreadable)") if op == "start" else None,
        )
    except (SealError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if target.hub_id != deps.settings.hub_id or not key_belongs_to(target):
        return None
    return target


def _open(body: bytes, deps: Deps) -> Request | FollowUp:
    """The request (hub key) or follow-up (the functions' key) inside a sealed message; raises SealError/ContractError."""
    if deps.followup_sealer is None:
        raise RuntimeError("the lifecycle needs the functions' follow-up keys (ACA_FOLLOWUP_KEYS)")
    return open_message(body, deps.sealer, deps.followup_sealer)


def handle_message(body: bytes, deps: Deps, dequeue_count: int = 1) -> Outcome:
    """Process one (base64-decoded) queue message; raises :class:`RetryLater` to be redelivered."""
    try:
        message = _open(body, deps)
    except ExpiredMessage as e:
        # authentic but too old: poison it, and fail its server unless something newer happened since
        log.warning("lifecycle message expired: %s; moved to the poison queue", e)
        _poison(body, deps)
        target = _unusable_request_target(body, deps)
        if target is not None:
            ServerRun(target, deps, dequeue_count).reject(f"the request expired before it was processed: {e}",
                                                     "RequestExpired")
        return Outcome.POISONED
    except SealError as e:
        log.warning("lifecycle message rejected (%s): %s; moved to the poison queue", type(e).__name__, e)
        _poison(body, deps)
        return Outcome.POISONED
    except ContractError as e:
        log.warning("lifecycle message unreadable (%s): %s; moved to the poison queue", type(e).__name__, e)
        _poison(body, deps)
        target = _unusable_request_target(body, deps)
        if target is not None:
            ServerRun(target, deps, dequeue_count).reject(f"the request could not be read: {e}", "InvalidRequest")
        return Outcome.POISONED
    with telemetry.request_context(message.request_id):
        return _handle(message, body, deps, dequeue_count)


def _handle(message: Request | FollowUp, body: bytes, deps: Deps, dequeue_count: int) -> Outcome:
    """Act on an authentic ``message``: check it, then start, stop or follow it up."""
    if isinstance(message, FollowUp):
        if message.hub_id != deps.settings.hub_id or not key_belongs_to(message):
            log.warning("%r names another hub's server; moved to the poison queue", message)
            _poison(body, deps)
            return Outcome.POISONED
    else:
        try:
            check_request(message, deps.settings)
        except ForeignHub as e:
            log.warning("%r rejected: %s; moved to the poison queue", message, e)
            _poison(body, deps)
            return Outcome.POISONED
        except PolicyViolation as e:
            log.warning("%r refused by policy: %s", message, e)
            return ServerRun(message, deps, dequeue_count).reject(str(e), "PolicyViolation")

    run = FollowUpRun(message, deps, dequeue_count) if isinstance(message, FollowUp) else ServerRun(
        message, deps, dequeue_count)
    try:
        if isinstance(run, FollowUpRun):
            outcome = run.follow(message)
        else:
            outcome = run.start() if message.op is Op.START else run.stop()
    except RetryLater as e:
        if not run.last_delivery:
            raise
        log.warning("%r: still failing on its last delivery: %s", message, e)
        outcome = run.reject(f"gave up after {run.dequeue_count} attempts: {for_users(str(e))}", "RetriesExhausted")
        return Outcome.FAILED if outcome is Outcome.REJECTED else outcome
    except Exception:
        if run.last_delivery:  # the host will poison it; let the user see why
            log.exception("%r failed on its last delivery", message)
            try:
                run.reject("the request could not be processed (internal error, see the function logs)",
                           "InternalError")
            except Exception:  # best effort: the original error matters more
                log.exception("could not record the failure of %r", message)
        raise
    (log.debug if outcome is Outcome.PENDING else log.info)("%r: %s", message, outcome.value)
    # the starts this instance waits for that are done: also from a start's invocation, since while ARM's
    # write throttling paces a class's starts, the queue holds their follow-ups back behind them
    sweep(deps)
    return outcome
