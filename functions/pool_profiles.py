"""The warm pool's profiles (app setting ``ACA_WARM_POOL``): which servers to keep ready, how many, and when.

Each profile names an image and a size (cpu, memory) and how many slots to
keep ready, optionally only within hours of some days in a time zone (a
class's hours), with another number outside them::

    [{"name": "class", "image": "quay.io/jupyter/scipy-notebook:2025-01-01", "cpu": 1, "memory": "2Gi",
      "size": 40, "hours": {"days": "mon-fri", "from": "07:45", "to": "17:00", "timezone": "Europe/Berlin",
                            "size_outside": 0}}]

A start is served by a profile's slot when its image and size are the profile's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import time as clock
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .appsettings import parse_memory_gi
from .footprint import Footprint

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class PoolProfile:
    """One kind of warm server and how many to keep ready: ``size`` within ``hours`` (all day when unset)."""

    name: str
    image: str
    cpu: float
    memory: str
    size: int
    days: tuple[str, ...] = DAYS
    start: clock | None = None  # local time the size applies from (with ``end``)
    end: clock | None = None
    timezone: str = "UTC"
    size_outside: int = 0  # slots kept outside the hours

    @property
    def footprint(self) -> Footprint:
        return Footprint(self.cpu, parse_memory_gi(self.memory))

    def wanted(self, when: datetime) -> int:
        """How many slots this profile should have ready at ``when`` (an aware datetime)."""
        if self.start is None or self.end is None:
            return self.size
        local = when.astimezone(ZoneInfo(self.timezone))
        inside = DAYS[local.weekday()] in self.days and self.start <= local.time() < self.end
        return self.size if inside else self.size_outside

    def serves(self, image: str, cpu: float, memory: str) -> bool:
        """Whether a server of this image and size can be this profile's slot."""
        return image == self.image and abs(cpu - self.cpu) < 1e-9 and \
            abs(parse_memory_gi(memory) - parse_memory_gi(self.memory)) < 1e-9


def _clock(text: object, what: str) -> clock:
    try:
        hours, minutes = str(text).split(":")
        return clock(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{what} must look like 07:45, not {text!r}") from None


def parse_pool(raw: str) -> tuple[PoolProfile, ...]:
    """``ACA_WARM_POOL``: a JSON list of ``{"name", "image", "cpu", "memory", "size"}`` with optional
    ``"hours": {"days": "mon-fri" | [..], "from": "07:45", "to": "17:00", "timezone": "Europe/Berlin",
    "size_outside": 0}``. Raises ValueError naming what is wrong."""
    if not raw.strip():
        return ()
    try:
        entries = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"is not JSON ({e})") from None
    if not isinstance(entries, list):
        raise ValueError("must be a JSON list of pool profiles")
    profiles = []
    for index, entry in enumerate(entries):
        where = f"entry {index + 1}"
        if not isinstance(entry, dict) or not {"name", "image", "cpu", "memory", "size"} <= set(entry):
            raise ValueError(f"{where} needs name, image, cpu, memory and size")
        name = str(entry["name"])
        if not name or not name.replace("-", "").isalnum() or not name.islower() or len(name) > 20:
            raise ValueError(f"{where}: the name must be 1-20 lower case letters, digits or '-'")
        size = entry["size"]
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 1000:
            raise ValueError(f"{where}: size must be a whole number from 0 to 1000")
        hours = entry.get("hours") or {}
        days = hours.get("days", "mon-sun")
        if isinstance(days, str):
            first, _, last = days.lower().partition("-")
            if first not in DAYS or (last and last not in DAYS):
                raise ValueError(f"{where}: days must be like mon-fri or a list of mon..sun")
            days = DAYS[DAYS.index(first): DAYS.index(last or first) + 1]
        if not isinstance(days, list | tuple) or not days or not all(str(d).lower() in DAYS for d in days):
            raise ValueError(f"{where}: days must be like mon-fri or a list of mon..sun")
        timezone = str(hours.get("timezone", "UTC"))
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{where}: unknown timezone {timezone!r}") from None
        cpu, outside = entry["cpu"], hours.get("size_outside", 0)
        if isinstance(cpu, bool) or not isinstance(cpu, int | float) or not 0 < cpu <= 4:
            raise ValueError(f"{where}: cpu must be a number of cores above 0, at most 4")
        if isinstance(outside, bool) or not isinstance(outside, int) or not 0 <= outside <= 1000:
            raise ValueError(f"{where}: hours.size_outside must be a whole number from 0 to 1000")
        if ("from" in hours) != ("to" in hours):
            raise ValueError(f"{where}: hours needs both from and to")
        if not str(entry["image"]).strip():
            raise ValueError(f"{where}: the image must not be empty")
        profile = PoolProfile(
            name=name, image=str(entry["image"]), cpu=float(cpu), memory=str(entry["memory"]), size=size,
            days=tuple(str(d).lower() for d in days), timezone=timezone, size_outside=outside,
            start=_clock(hours["from"], f"{where}: hours.from") if "from" in hours else None,
            end=_clock(hours["to"], f"{where}: hours.to") if "to" in hours else None)
        profile.footprint  # noqa: B018 - the memory must parse
        profiles.append(profile)
    if len({p.name for p in profiles}) != len(profiles):
        raise ValueError("names a profile twice")
    return tuple(profiles)


def matching_profile(pool: Sequence[PoolProfile], image: str, cpu: float, memory: str) -> PoolProfile | None:
    return next((p for p in pool if p.serves(image, cpu, memory)), None)
