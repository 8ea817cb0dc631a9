"""Follow-up messages: how the functions come back to an ARM operation they started.

The lifecycle never waits for a long-running operation. After ARM accepts a
write, the invocation puts a :class:`FollowUp` on the lifecycle queue,
invisible for the operation's ``Retry-After``, and returns. The invocation
that receives it looks at the app once (in the shared listing,
:mod:`functions.listing`) and either records the outcome or sends the next
follow-up, ``ACA_ARM_POLL_INTERVAL`` seconds later. A follow-up is sealed
with the functions' own keys (``ACA_FOLLOWUP_KEYS``), which the hub's identity
cannot read: the queue is shared with the hub, and a follow-up steers what
the functions do with their ARM rights, so a hub (or whoever holds its
sealing keys) cannot forge one; a follow-up sealed with a hub key is
poisoned. It names the request it follows by key and generation, so it is
ignored as soon as the status table has moved on.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from acaspawner import wire
from acaspawner.contract import (
    QUEUE_TTL_MARGIN,
    SCHEMA_VERSION,
    ContractError,
    Op,
    Request,
    request_id,
    shown_request_id,
)
from acaspawner.sealing import Sealer, SealError

KIND = "follow-up"


class Step(StrEnum):
    """The Azure operation a follow-up waits for, and how the user is told about it."""

    CREATE = "create"
    START = "start"
    STOP = "stop"
    DELETE = "delete"

    @property
    def doing(self) -> str:
        return {"create": "provisioning", "start": "starting", "stop": "stopping", "delete": "deleting"}[self.value]


@dataclass(frozen=True)
class FollowUp:
    """Look at ``server_key`` again: is ARM's ``step`` for ``generation`` done?"""

    op: Op
    step: Step
    hub_id: str
    server_key: str
    user: str
    server_name: str
    generation: int
    requested: float  # when the hub asked (the request's ``created``): the deadline counts from here
    deadline: float  # epoch seconds; still waiting then means failed
    since: float  # only an observation made after this counts (ARM accepted the write then)
    delay: float  # seconds until the next look
    operation_url: str = ""  # where ARM reports the operation's outcome (its error, if it fails)
    remove_home: bool = False  # a delete that also removes its user's home folder once the app is gone
    app: str = ""  # the container app it waits for when that is not named by the server key (a warm server)
    noted: float = 0.0  # when this chain last wrote a progress note to the status row
    correlation_id: str = ""
    attempt: int = 1
    kind: str = field(default=KIND)
    schema: int = SCHEMA_VERSION

    @classmethod
    def first(cls, request: Request, step: Step, *, since: float, delay: float, deadline: float,
              operation_url: str = "", remove_home: bool = False, app: str = "") -> FollowUp:
        return cls(op=request.op, step=step, hub_id=request.hub_id, server_key=request.server_key,
                   user=request.user, server_name=request.server_name, generation=request.generation,
                   requested=request.created, deadline=deadline, since=since, delay=delay, noted=since,
                   operation_url=operation_url, remove_home=remove_home, app=app,
                   correlation_id=request.correlation_id)

    def next(self, *, since: float, step: Step | None = None, operation_url: str | None = None,
             delay: float | None = None, noted: float | None = None) -> FollowUp:
        """The follow-up after this one (a new ``step`` when the functions sent ARM another write)."""
        return replace(self, since=since, step=step or self.step, attempt=self.attempt + 1,
                       operation_url=self.operation_url if operation_url is None else operation_url,
                       delay=self.delay if delay is None else delay, noted=self.noted if noted is None else noted)

    def to_json(self) -> str:
        data = asdict(self)
        data.update(op=self.op.value, step=self.step.value)
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FollowUp:
        if data.get("schema") != SCHEMA_VERSION:
            raise ContractError(f"follow-up schema version {data.get('schema')!r} is not supported")
        data = dict(data)
        if "home_paths" in data:  # written by an earlier release: it named the folders, now only whether
            data["remove_home"] = bool(data.pop("home_paths"))
        try:
            follow_up = cls(**{**data, "op": Op(data["op"]), "step": Step(data["step"]),
                               "remove_home": data.get("remove_home") is True})
        except (TypeError, KeyError, ValueError) as e:
            raise ContractError(f"invalid follow-up: {e}") from None
        if not isinstance(follow_up.generation, int) or not follow_up.server_key:
            raise ContractError("invalid follow-up: no server key or generation")
        return follow_up

    @property
    def request_id(self) -> str:
        """The id of the request this follows up (see :func:`acaspawner.contract.request_id`)."""
        return request_id(self.correlation_id)

    def __repr__(self) -> str:
        return (f"FollowUp(op={self.op.value}, step={self.step.value}, server_key={self.server_key}, "
                f"generation={self.generation}, attempt={self.attempt}, "
                f"request_id={shown_request_id(self.correlation_id)})")


class HubSealedFollowUp(SealError):
    """A follow-up sealed with a hub key: only the functions seal follow-ups, with keys of their own."""


class FollowUpSealedRequest(SealError):
    """A request sealed with the functions' own key: the hub cannot hold it, so no request can carry it."""


def sealer_for(sealed: bytes | str, *sealers: Sealer | None) -> Sealer | None:
    """Of ``sealers``, the one whose key ``sealed`` names (the hub's or the functions' own), else the first."""
    present = [s for s in sealers if s is not None]
    return next((s for s in present if s.holds_key_of(sealed)), present[0] if present else None)


class Keyring:
    """The hub's sealer and the functions' own as one opener: a message opens under the key it names.

    For the poison drain, which only tells why a message was poisoned.
    """

    def __init__(self, hub_sealer: Sealer, followup_sealer: Sealer | None = None):
        self.hub_sealer, self.followup_sealer = hub_sealer, followup_sealer
        self.max_age = hub_sealer.max_age

    def sealed_by_functions(self, sealed: bytes | str) -> bool:
        return self.followup_sealer is not None and self.followup_sealer.holds_key_of(sealed)

    def open_bytes(self, sealed: bytes | str, now: float | None = None) -> bytes:
        opener = self.followup_sealer if self.sealed_by_functions(sealed) else self.hub_sealer
        assert opener is not None
        return opener.open_bytes(sealed, now)


def open_message(sealed: bytes, hub_sealer: Sealer, followup_sealer: Sealer) -> Request | FollowUp:
    """The request (hub key) or follow-up (functions' key) inside ``sealed``; raises SealError/ContractError.

    A follow-up under a hub key, or a request under the functions' key, is refused as forged.
    """
    if followup_sealer.holds_key_of(sealed):
        message = read_payload(followup_sealer.open_bytes(sealed))
        if not isinstance(message, FollowUp):
            raise FollowUpSealedRequest("a request sealed with the functions' own key")
        return message
    message = read_payload(hub_sealer.open_bytes(sealed))
    if isinstance(message, FollowUp):
        raise HubSealedFollowUp("a follow-up sealed with a hub key (only the functions seal follow-ups)")
    return message


def is_follow_up(payload: dict[str, Any]) -> bool:
    return payload.get("kind") == KIND


def read_payload(plaintext: bytes) -> Request | FollowUp:
    """What an opened lifecycle message holds: a follow-up, or else a hub request; raises ContractError."""
    try:
        payload = json.loads(plaintext)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict) and is_follow_up(payload):
        return FollowUp.from_dict(payload)
    return Request.from_json(plaintext)


class MessageSender(Protocol):
    def send_lifecycle_message(self, body: str, delay: int, time_to_live: int | None = None) -> None: ...


@dataclass
class FollowUps:
    """Seals follow-ups and puts them on the lifecycle queue, invisible for their delay."""

    sealer: Sealer
    queue: MessageSender

    def send(self, follow_up: FollowUp) -> None:
        body = wire.encode(self.sealer.seal_bytes(follow_up.to_json().encode("utf-8")))
        # queue visibility has whole seconds; never 0, so a follow-up cannot spin on an unchanged app
        delay = max(1, math.ceil(follow_up.delay))
        # past the sealing maximum age it is refused anyway: the queue need not keep it longer
        ttl = delay + math.ceil(self.sealer.max_age) + QUEUE_TTL_MARGIN
        self.queue.send_lifecycle_message(body, delay, time_to_live=ttl)
