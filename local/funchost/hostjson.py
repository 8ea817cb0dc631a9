"""The parts of ``host.json`` the dev host honours: ``extensions.queues`` and ``functionTimeout``.

Defaults are those of the Functions host (storage extension 5.x); see
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.appsettings import timespan_seconds

log = logging.getLogger("local.funchost")

class HostConfigError(ValueError):
    """host.json holds a value the Functions host would reject."""


def parse_timespan(value: Any, *, numbers_are_ms: bool = False) -> float:
    """Seconds in a .NET TimeSpan string (``[d.]hh:mm[:ss[.fffffff]]``), or in a number of milliseconds."""
    if isinstance(value, bool):
        raise HostConfigError(f"not a timespan: {value!r}")
    if isinstance(value, int | float):
        if not numbers_are_ms:
            raise HostConfigError(f"expected a timespan string like '00:00:30', got {value!r}")
        return value / 1000.0
    try:
        return timespan_seconds(str(value))
    except ValueError as e:
        raise HostConfigError(str(e)) from None


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` of host.json (times in seconds)."""

    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    batch_size: int = 16
    max_dequeue_count: int = 5
    new_batch_threshold: int = 8
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    """What the dev host takes from host.json; ``function_timeout`` None means unbounded."""

    queues: QueueOptions = QueueOptions()
    function_timeout: float | None = None


def load_host_json(source: str | Path | Mapping[str, Any] | None) -> HostConfig:
    """Parse host.json from a path or an already-loaded mapping; None gives the host's defaults."""
    if source is None:
        return HostConfig()
    if isinstance(source, Mapping):
        data: Any = source
    else:
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as exc:
            raise HostConfigError(f"cannot read {source}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise HostConfigError("host.json must be a JSON object")
    if str(data.get("version", "2.0")) != "2.0":
        log.warning("host.json version is %r; the Functions host (v4) expects '2.0'", data.get("version"))
    queues = (data.get("extensions") or {}).get("queues") or {}
    return HostConfig(queues=_queue_options(queues), function_timeout=_function_timeout(data.get("functionTimeout")))


def _queue_options(raw: Mapping[str, Any]) -> QueueOptions:
    opts = QueueOptions()
    max_polling = opts.max_polling_interval
    if "maxPollingInterval" in raw:
        max_polling = parse_timespan(raw["maxPollingInterval"], numbers_are_ms=True)
        if max_polling < 0.1:
            raise HostConfigError("extensions.queues.maxPollingInterval must be at least 100 ms")
    visibility = parse_timespan(raw.get("visibilityTimeout", "00:00:00"))
    if visibility < 0:
        raise HostConfigError("extensions.queues.visibilityTimeout must not be negative")
    batch_size = _int(raw, "batchSize", opts.batch_size, 1, 32)
    encoding = str(raw.get("messageEncoding", opts.message_encoding)).strip().lower()
    if encoding not in ("base64", "none"):
        raise HostConfigError(f"extensions.queues.messageEncoding must be 'base64' or 'none', not {encoding!r}")
    return QueueOptions(
        max_polling_interval=max_polling,
        visibility_timeout=visibility,
        batch_size=batch_size,
        max_dequeue_count=_int(raw, "maxDequeueCount", opts.max_dequeue_count, 1, None),
        # The host's default is half a batch (per core on Azure; one "core" here).
        new_batch_threshold=_int(raw, "newBatchThreshold", batch_size // 2, 0, None),
        message_encoding=encoding,
    )


def _int(raw: Mapping[str, Any], key: str, default: int, low: int, high: int | None) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise HostConfigError(f"extensions.queues.{key} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise HostConfigError(f"extensions.queues.{key} must be {bound}, not {value}")
    return value


def _function_timeout(value: Any) -> float | None:
    if value is None or str(value).strip() == "-1":
        return None
    seconds = parse_timespan(value)
    if seconds <= 0:
        raise HostConfigError(f"functionTimeout must be positive or -1, not {value!r}")
    return seconds
