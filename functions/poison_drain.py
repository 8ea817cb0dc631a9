"""The reconciler's step 7: the lifecycle's poison queue, looked at and cleared once nothing in it can be replayed.

Every message's id, insertion time, dequeue count and the reason it was
poisoned are logged, never its body (it may hold a JupyterHub API token);
messages older than the sealing maximum age (``ACA_SEAL_MAX_AGE``), which
nothing can replay, are deleted, so no token sits in storage for the queue's
default 7 days. The reason is told by opening the message under the key it
names (the hub's, or the functions' own for follow-ups): forged, expired,
for another hub, unreadable, or authentic and failed every delivery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core.exceptions import AzureError, ResourceNotFoundError

from acaspawner import wire
from acaspawner.contract import ContractError
from acaspawner.sealing import ExpiredMessage, Sealer, TamperedMessage, UnknownKey

from .followup import FollowUp, Keyring, read_payload
from .policy import key_belongs_to
from .reconcile_run import POISON_PAGE, ReconcileOptions, ReconcileSummary, age_text
from .settings import DEFAULT_MAX_DEQUEUE_COUNT

log = logging.getLogger("functions.reconciler")

# seconds a received poison message stays invisible if the run dies before releasing it (see _PoisonDrain)
POISON_VISIBILITY = 60


class PoisonQueue(Protocol):
    """What the reconciler needs of the poison queue's ``QueueClient`` (:attr:`FunctionStorage.poison`)."""

    def receive_messages(self, **kwargs: Any) -> Any: ...

    def delete_message(self, message: Any, pop_receipt: str | None = None, **kwargs: Any) -> None: ...

    def update_message(self, message: Any, pop_receipt: str | None = None, content: Any = None,
                       **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class PoisonVerdict:
    """Why a message was poisoned, told without any part of its body."""

    reason: str
    # authentic (it opened under a configured key) and sealed longer ago than the maximum age
    expired: bool = False


NO_KEYS = "not classified: ACA_SEALING_KEYS not set"


def classify_poison(body: str | bytes, sealer: Sealer | Keyring | None, *, poisoned_at: float, now: float, hub_id: str,
                    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT) -> PoisonVerdict:
    """Why the poison message ``body`` was poisoned, as the lifecycle saw it when it was poisoned.

    The message is opened as of ``poisoned_at`` (its insertion time on the poison
    queue), so a request that was fine then but has aged since still reads as
    "failed every delivery", not "expired". The reason is built from fixed
    texts, exception class names and, for an authentic message, its op, server
    key, generation and hub (none of them secret): never from the body or from
    an exception message, which might quote it.
    """
    try:
        sealed = wire.decode(body)
    except wire.WireError:
        return PoisonVerdict("not valid base64: the Functions host poisons such a body at once, without "
                             "calling the function")
    if sealer is None:
        return PoisonVerdict(NO_KEYS)
    try:
        payload = sealer.open_bytes(sealed, now=poisoned_at)
    except ExpiredMessage:
        return PoisonVerdict(f"expired (ExpiredMessage): sealed more than {int(sealer.max_age)} s before it was "
                             "poisoned; the lifecycle refused it", expired=True)
    except UnknownKey:
        return PoisonVerdict("sealed with a key that is not configured here (UnknownKey): one rotated out of "
                             "ACA_SEALING_KEYS or not added yet, or another deployment's")
    except TamperedMessage:
        return PoisonVerdict("not a sealed message, or altered (TamperedMessage)")
    try:
        sealer.open_bytes(sealed, now=now)
        expired = False
    except ExpiredMessage:
        expired = True
    try:
        message = read_payload(payload)
    except ContractError as e:
        return PoisonVerdict(f"authentic but unreadable ({type(e).__name__}): its schema is unknown or "
                             "invalid (a hub or functions of another version?)", expired=expired)
    by_functions = isinstance(sealer, Keyring) and sealer.sealed_by_functions(sealed)
    if isinstance(sealer, Keyring) and isinstance(message, FollowUp) != by_functions:
        return PoisonVerdict("forged: a follow-up sealed with a hub key, or a request with the functions' own key "
                             "(HubSealedFollowUp, FollowUpSealedRequest): refused by the lifecycle", expired=expired)
    what = (f"follow-up ({message.step.value})" if isinstance(message, FollowUp) else "request")
    what += f" op={message.op.value} server_key={message.server_key} generation={message.generation}"
    if message.hub_id != hub_id:
        return PoisonVerdict(f"authentic {what} for another hub ({message.hub_id}): refused by the lifecycle",
                             expired=expired)
    if not key_belongs_to(message):
        return PoisonVerdict(f"authentic {what} whose server key is not its user's and server's: refused by "
                             "the lifecycle", expired=expired)
    return PoisonVerdict(f"authentic and readable {what}: poisoned by the host after failing "
                         f"{max_dequeue_count} deliveries (maxDequeueCount); the lifecycle's logs have its errors",
                         expired=expired)


def _stamp(when: datetime | None) -> float | None:
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class _PoisonDrain:
    """Look at (and log) the poison queue's messages; delete those older than the sealing maximum age.

    Receive, not peek: peek cannot page past the first 32 messages, nor give
    the pop receipt a delete needs, and a receive cannot pick which messages
    it returns. So each page is received with a visibility timeout
    (:data:`POISON_VISIBILITY`), which keeps a message received once from being
    received again in the same run; the old ones are deleted with their pop
    receipt at once, and those kept are made visible again (visibility 0)
    when the run is done with the queue, so an operator sees them right away and
    the next run looks at them again. If the run dies first, the visibility
    timeout brings them back within a minute. (Each look raises a message's
    dequeue count on the poison queue by one: there it counts the reconciler's
    looks, not the lifecycle's deliveries, which the host does not carry over.)
    """

    def __init__(self, queue: PoisonQueue, sealer: Sealer | Keyring | None, options: ReconcileOptions, now: float,
                 summary: ReconcileSummary):
        self.queue = queue
        self.sealer = sealer
        self.options = options
        self.now = now
        self.summary = summary

    def run(self) -> None:
        kept: list[Any] = []
        try:
            pages = self.queue.receive_messages(
                messages_per_page=min(POISON_PAGE, self.options.poison_max_per_run),
                max_messages=self.options.poison_max_per_run,
                visibility_timeout=POISON_VISIBILITY,
            ).by_page()
            for page in pages:
                for message in page:
                    self.summary.poison_seen += 1
                    if not self.examine(message):
                        kept.append(message)
        except ResourceNotFoundError:
            pass  # no poison queue (yet): nothing was ever poisoned
        finally:
            for message in kept:
                self.release(message)
        if self.summary.poison_seen >= self.options.poison_max_per_run:
            self.summary.notes.append(f"looked at {self.options.poison_max_per_run} poison messages (the most per "
                                      "run); the rest waits for the next run")

    def examine(self, message: Any) -> bool:
        """Log ``message`` and delete it when it is old enough; True when it is gone."""
        inserted = _stamp(message.inserted_on)
        poisoned_at = self.now if inserted is None else inserted
        try:
            verdict = classify_poison(message.content or "", self.sealer, poisoned_at=poisoned_at, now=self.now,
                                      hub_id=self.options.hub_id,
                                      max_dequeue_count=self.options.max_dequeue_count)
        except Exception as e:  # classifying is best effort; deleting must not depend on it
            verdict = PoisonVerdict(f"not classified ({type(e).__name__})")
        # Its age since sealing: verified from the seal when it is authentic and expired, otherwise its time
        # on the poison queue stands in (a lower bound: it was sealed before it was poisoned).
        on_queue = self.now - poisoned_at
        old = verdict.expired or (inserted is not None and on_queue >= self.options.seal_max_age)
        described = (f"Poison message id={message.id} inserted={_iso(message.inserted_on)} "
                     f"dequeue_count={message.dequeue_count}: {verdict.reason}")
        if not old:
            log.warning("%s; kept for now (%s on the poison queue, deleted once older than %d s)", described,
                        _age_s(on_queue), int(self.options.seal_max_age))
            return False
        try:
            self.queue.delete_message(message.id, message.pop_receipt)
        except ResourceNotFoundError:
            log.info("%s; already deleted by someone else", described)
            return True
        except AzureError as e:
            log.error("%s; could not delete it: %s", described, type(e).__name__)
            self.summary.errors.append(f"poison message {message.id}: delete failed ({type(e).__name__})")
            return False
        log.warning("%s; deleted: older than the sealing maximum age of %d s, nothing in it can be replayed",
                    described, int(self.options.seal_max_age))
        self.summary.poison_deleted += 1
        return True

    def release(self, message: Any) -> None:
        """Make a kept message visible again (by id and pop receipt: the content is not sent again)."""
        try:
            self.queue.update_message(message.id, message.pop_receipt, visibility_timeout=0)
        except AzureError as e:  # it comes back when its visibility timeout ends anyway
            log.info("Poison message id=%s stays invisible for up to %d s: %s", message.id, POISON_VISIBILITY,
                     type(e).__name__)


def _iso(when: datetime | None) -> str:
    return when.isoformat() if when is not None else "unknown"


def _age_s(seconds: float) -> str:
    return f"{int(seconds)} s" if seconds < 120 else age_text(seconds)


def drain_poison(queue: PoisonQueue, sealer: Sealer | Keyring | None, options: ReconcileOptions, summary: ReconcileSummary,
                 now: float) -> None:
    """Step 7 on its own: storage errors end up in ``summary`` (errors and a note), never raised."""
    try:
        _PoisonDrain(queue, sealer, options, now, summary).run()
    except AzureError as e:
        summary.errors.append(f"poison queue: {type(e).__name__}: {getattr(e, 'message', e)}")
        summary.notes.append("could not drain the poison queue")
