"""Fault injection, pacing and counters: what makes the emulator behave like a busy Azure.

* ARM throttling is a token bucket per kind of request (reads, writes, deletes), with ARM's
  published defaults: writes and deletes 200 with refill 10/s, reads 250 with refill 25/s.
  An empty bucket answers 429 with ``Retry-After``.
* ``error_rate`` answers that share of ARM requests with a 5xx (seeded, so runs repeat).
* ``fail_images``/``fail_creates`` make a create end ``Failed`` with an ARM error, the way a
  bad image does.
* ``provisioning_delay`` and ``retry_after`` pace long-running operations; ``start_delay`` and
  ``stop_delay`` pace starts and stops of an existing app on their own.
* ``refuse_operation_reads`` answers reads of operations 403, as ARM does for an identity
  without ``Microsoft.App/locations/containerappOperationStatuses/read``.
* ``core_quota`` caps the cores of each managed environment, as ACA's environment quota does.
"""

from __future__ import annotations

import fnmatch
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from typing import Any

ENVOY_HEADER_LIMIT = 60 * 1024


@dataclass
class Faults:
    """Knobs for pacing, throttling, injected failures and limits; change them on a running emulator
    with ``Emulator.set_faults(**changes)``."""

    provisioning_delay: float = 0.0  # seconds before a create/update/start/stop/delete takes effect
    start_delay: float | None = None  # seconds a start of a stopped app takes; None: provisioning_delay
    stop_delay: float | None = None  # seconds a stop takes; None: provisioning_delay
    retry_after: int | None = 1  # Retry-After on LRO responses; None omits it (the SDK then uses polling_interval)
    throttle: bool = True
    write_bucket: int = 200
    write_refill: float = 10.0
    delete_bucket: int = 200
    delete_refill: float = 10.0
    read_bucket: int = 250
    read_refill: float = 25.0
    error_rate: float = 0.0  # share of ARM requests answered with error_status
    error_status: int = 500
    error_seed: int | None = 0
    fail_images: tuple[str, ...] = ()  # globs: a create/update with such an image ends Failed
    fail_creates: bool = False  # every create/update ends Failed
    fail_code: str = "ContainerAppOperationError"
    fail_message: str | None = None  # default: an image-pull style message naming the image
    startup_timeout: float = 60.0  # how long a provisioning waits for the app to listen on its port
    header_limit: int = ENVOY_HEADER_LIMIT  # ingress: request headers above this many bytes → 431
    list_page_size: int = 100  # container apps per page of a list (nextLink beyond)
    reject_concurrent_operations: bool = True  # 409 when an app already has an operation in flight
    core_quota: float | None = None  # cores per managed environment; None: not enforced (ACA's default is 100)
    # 403 AuthorizationFailed on reads of operation statuses/results, as for an identity without that action
    refuse_operation_reads: bool = False

    def delay_of(self, kind: str) -> float:
        """Seconds before an operation of ``kind`` (create, update, start, stop, delete) takes effect."""
        own = {"start": self.start_delay, "stop": self.stop_delay}.get(kind)
        return self.provisioning_delay if own is None else own

    def updated(self, **changes: Any) -> Faults:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown fault settings: {sorted(unknown)}")
        if "fail_images" in changes:
            changes["fail_images"] = tuple(changes["fail_images"] or ())
        return replace(self, **changes)

    def create_fails(self, images: list[str]) -> bool:
        return self.fail_creates or any(fnmatch.fnmatchcase(i, p) for i in images for p in self.fail_images)


class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``refill`` per second."""

    def __init__(self, capacity: int, refill: float) -> None:
        self.capacity = capacity
        self.refill = refill
        self._tokens = float(capacity)
        self._stamp = time.monotonic()

    def _top_up(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.refill)
        self._stamp = now

    def take(self) -> float:
        """Take a token: 0 on success, otherwise the seconds until one is available."""
        self._top_up()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.refill if self.refill > 0 else 60.0

    @property
    def remaining(self) -> int:
        self._top_up()
        return int(self._tokens)


class Throttle:
    """ARM's per-subscription buckets for reads, writes and deletes."""

    def __init__(self, faults: Faults) -> None:
        self.configure(faults)

    def configure(self, faults: Faults) -> None:
        self.enabled = faults.throttle
        self.buckets = {
            "read": TokenBucket(faults.read_bucket, faults.read_refill),
            "write": TokenBucket(faults.write_bucket, faults.write_refill),
            "delete": TokenBucket(faults.delete_bucket, faults.delete_refill),
        }

    @staticmethod
    def kind(method: str) -> str:
        return {"GET": "read", "HEAD": "read", "DELETE": "delete"}.get(method.upper(), "write")

    def take(self, method: str) -> tuple[str, int | None]:
        """(kind, None) when allowed, else (kind, whole seconds for Retry-After)."""
        kind = self.kind(method)
        if not self.enabled:
            return kind, None
        wait = self.buckets[kind].take()
        return kind, (max(1, math.ceil(wait)) if wait else None)

    def remaining(self, kind: str) -> int:
        return self.buckets[kind].remaining


class ErrorInjector:
    """Seeded coin flips for injected 5xx answers."""

    def __init__(self, seed: int | None) -> None:
        self._random = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        self._random = random.Random(seed)

    def hit(self, rate: float) -> bool:
        return rate > 0 and self._random.random() < rate


@dataclass
class Stats:
    """Counters readable in-process (``Emulator.stats``) and at ``GET /_emulator/stats``."""

    requests: int = 0
    requests_by_method: Counter = field(default_factory=Counter)
    throttled: int = 0  # 429s sent
    injected_errors: int = 0  # 5xx sent
    auth_failures: int = 0
    creates: int = 0
    updates: int = 0
    deletes: int = 0
    starts: int = 0
    stops: int = 0
    operations_succeeded: int = 0
    operations_failed: int = 0
    quota_refusals: int = 0  # provisionings refused: the environment's core quota was full
    processes_started: int = 0
    processes_exited: int = 0
    ingress_requests: int = 0
    ingress_431: int = 0
    ingress_404: int = 0
    ingress_503: int = 0

    def snapshot(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["requests_by_method"] = dict(self.requests_by_method)
        return data
