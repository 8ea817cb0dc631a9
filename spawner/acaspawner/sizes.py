"""Server sizes: JupyterHub's cpu/memory limits and guarantees mapped onto what Container Apps offers.

JupyterHub's ``Spawner`` defines ``cpu_limit``, ``cpu_guarantee``,
``mem_limit`` and ``mem_guarantee`` (KubeSpawner and zero-to-jupyterhub
configs set them). A container app has one value per resource, which is both
what is reserved for it and what it may use, so:

* the **limit** is the value (met exactly: the server must not get more than
  the admin allowed, and an admin who wrote ``mem_limit = "2G"`` expects 2 GiB,
  not something near it);
* without a limit, the **guarantee** is a minimum: the smallest size that
  gives at least that much (nothing is promised beyond it, so rounding up is
  safe and rounding down would break the promise);
* a guarantee above its limit is a mistake, as Kubernetes says too.

On the Consumption workload profile the total must be one of ACA's pairs:
0.25 to 4 cores in steps of 0.25 with twice as many GiB of memory (0.25/0.5Gi,
…, 4/8Gi), so a resource without any value follows from the other. On a
dedicated workload profile any values with at most two decimals are allowed,
up to the profile's node size, which the hub does not know (Azure and the
functions' ``ACA_MAX_CPU``/``ACA_MAX_MEMORY`` check that).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GIB = 1024**3
CPU_STEP = 0.25
CONSUMPTION_MAX_CPU = 4.0
#: names of the built-in Consumption workload profile ("" is the environment's default, Consumption)
CONSUMPTION_PROFILES = frozenset({"", "consumption"})
#: the traits of JupyterHub's Spawner (and keys of KubeSpawner's overrides) that describe a size
SIZE_KEYS = ("cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee")
#: what JupyterHub's get_env calls them inside the server
ENV_NAMES = {"cpu_limit": "CPU_LIMIT", "cpu_guarantee": "CPU_GUARANTEE",
             "mem_limit": "MEM_LIMIT", "mem_guarantee": "MEM_GUARANTEE"}

# JupyterHub's ByteSpecification units (K/M/G/T, powers of 1024), and Kubernetes' Ki/Mi/Gi/Ti
_BYTES = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]i?)?\s*$")
_UNIT = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_EPSILON = 1e-6


class SizeError(ValueError):
    """A size Container Apps cannot give; the message names the nearest ones it can."""


@dataclass(frozen=True)
class Size:
    """What the container app gets: cores and memory in ACA's form (``"2Gi"``)."""

    cpu: float
    memory: str

    @property
    def memory_gi(self) -> float:
        return parse_memory_gi(self.memory, "memory")

    def env(self) -> dict[str, str]:
        """``CPU_LIMIT``, ``MEM_LIMIT`` and the guarantees as JupyterHub writes them (cores, bytes).

        All four are the allocation: ACA reserves what it allows, so the
        server's limit and its guarantee are the same numbers.
        """
        cpu, memory = str(float(self.cpu)), str(round(self.memory_gi * GIB))
        return {"CPU_LIMIT": cpu, "CPU_GUARANTEE": cpu, "MEM_LIMIT": memory, "MEM_GUARANTEE": memory}


def parse_cpu(value: Any, name: str) -> float:
    """``value`` as a positive number of cores (a number, or a numeric string from a form value)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SizeError(f"{name} must be a positive number of cores, not {value!r}")
    return round(float(value), 6)


def parse_memory_gi(value: Any, name: str) -> float:
    """``value`` in GiB: bytes as a number, or a string such as ``"2G"``, ``"512M"`` (JupyterHub) or ``"2Gi"``."""
    if isinstance(value, bool):
        raise SizeError(f"{name} must be a size such as '2G', not {value!r}")
    if isinstance(value, (int, float)):
        amount = float(value)
    else:
        match = _BYTES.match(value) if isinstance(value, str) else None
        if not match:
            raise SizeError(f"{name} must be a size such as '2G', '512M' or '2Gi', not {value!r}")
        number, unit = match.groups()
        amount = float(number) * (_UNIT[unit[0]] if unit else 1)
    if not math.isfinite(amount) or amount <= 0:
        raise SizeError(f"{name} must be a positive size, not {value!r}")
    return round(amount / GIB, 6)


def _cores(cpu: float) -> str:
    return f"{cpu:g}"


def _gi(memory_gi: float) -> str:
    return f"{memory_gi:g}Gi"


def is_consumption(workload_profile: str) -> bool:
    """True when ``workload_profile`` names the Consumption profile (or none, which means it)."""
    return (workload_profile or "").strip().lower() in CONSUMPTION_PROFILES


def consumption_sizes() -> list[Size]:
    """Every size of the Consumption profile, smallest first."""
    steps = int(CONSUMPTION_MAX_CPU / CPU_STEP)
    return [Size(k * CPU_STEP, _gi(2 * k * CPU_STEP)) for k in range(1, steps + 1)]


@dataclass(frozen=True)
class Bounds:
    """Limits and guarantees in effect (cores, GiB); ``None`` where nothing was set."""

    cpu_limit: float | None = None
    cpu_guarantee: float | None = None
    mem_limit: float | None = None
    mem_guarantee: float | None = None

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> Bounds:
        """Bounds from ``values`` (keys of :data:`SIZE_KEYS`; ``None``, 0 and missing mean unset)."""
        parsed: dict[str, float | None] = {}
        for key in SIZE_KEYS:
            value = values.get(key)
            if value is None or (not isinstance(value, bool) and value == 0):
                parsed[key] = None
            elif key.startswith("cpu"):
                parsed[key] = parse_cpu(value, key)
            else:
                parsed[key] = parse_memory_gi(value, key)
        bounds = cls(**parsed)
        for resource, show in (("cpu", _cores), ("mem", _gi)):
            limit, guarantee = getattr(bounds, f"{resource}_limit"), getattr(bounds, f"{resource}_guarantee")
            if limit is not None and guarantee is not None and guarantee > limit + _EPSILON:
                raise SizeError(
                    f"{resource}_guarantee {show(guarantee)} is more than {resource}_limit {show(limit)}"
                )
        return bounds

    @property
    def empty(self) -> bool:
        return all(getattr(self, key) is None for key in SIZE_KEYS)

    def wanted(self, resource: str) -> float | None:
        """The limit of ``resource`` ("cpu" or "mem"), else its guarantee, else ``None``."""
        limit = getattr(self, f"{resource}_limit")
        return limit if limit is not None else getattr(self, f"{resource}_guarantee")

    def describe(self) -> str:
        """The values in effect, e.g. ``cpu_limit 1 with mem_limit 1Gi``."""
        parts = []
        for resource, show in (("cpu", _cores), ("mem", _gi)):
            for kind in ("limit", "guarantee"):
                value = getattr(self, f"{resource}_{kind}")
                if value is not None:
                    parts.append(f"{resource}_{kind} {show(value)}")
                    break
        return " with ".join(parts)

    def admits(self, size: Size) -> bool:
        """True when ``size`` meets every limit exactly and every guarantee at least."""
        for actual, resource in ((size.cpu, "cpu"), (size.memory_gi, "mem")):
            limit, guarantee = getattr(self, f"{resource}_limit"), getattr(self, f"{resource}_guarantee")
            if limit is not None and abs(actual - limit) > _EPSILON:
                return False
            if guarantee is not None and actual < guarantee - _EPSILON:
                return False
        return True


def nearest_consumption_sizes(bounds: Bounds) -> list[Size]:
    """The Consumption sizes closest to what ``bounds`` want (the two nearest, and any tied with them)."""
    want_cpu, want_mem = bounds.wanted("cpu"), bounds.wanted("mem")

    def distance(size: Size) -> float:  # in steps of the table, so cores and GiB weigh alike
        steps = 0.0
        if want_cpu is not None:
            steps += abs(size.cpu - want_cpu) / CPU_STEP
        if want_mem is not None:
            steps += abs(size.memory_gi - want_mem) / (2 * CPU_STEP)
        return steps

    ranked = sorted(consumption_sizes(), key=lambda s: (distance(s), s.cpu))
    cutoff = distance(ranked[1]) + _EPSILON
    return sorted((s for s in ranked[:4] if distance(s) <= cutoff), key=lambda s: s.cpu)


def _consumption_size(bounds: Bounds) -> Size:
    for size in consumption_sizes():  # smallest first: a guarantee gets the least that meets it
        if bounds.admits(size):
            return size
    nearest = ", ".join(f"{_cores(s.cpu)} cpu / {s.memory}" for s in nearest_consumption_sizes(bounds))
    raise SizeError(
        f"{bounds.describe()} is not a size of the Consumption workload profile "
        f"(0.25 to 4 cores in steps of 0.25, with twice as many GiB of memory); nearest sizes: {nearest}"
    )


def _two_decimals(value: float, name: str, show, limit: bool) -> float:
    """``value`` with at most two decimals (ACA's rule): a limit must already be, a guarantee is rounded up."""
    hundredths = value * 100
    if abs(hundredths - round(hundredths)) <= _EPSILON * 100:
        return round(value, 2)
    if not limit:
        return math.ceil(hundredths) / 100
    below, above = math.floor(hundredths) / 100, math.ceil(hundredths) / 100
    raise SizeError(
        f"{name} {show(value)} has more than two decimals, which Container Apps does not accept; "
        f"nearest: {show(below)} or {show(above)}"
    )


def _dedicated_size(bounds: Bounds, cpu: float, memory: str) -> Size:
    chosen: dict[str, float] = {}
    for resource, show, fallback in (("cpu", _cores, cpu), ("mem", _gi, None)):
        limit, guarantee = getattr(bounds, f"{resource}_limit"), getattr(bounds, f"{resource}_guarantee")
        if limit is not None:
            chosen[resource] = _two_decimals(limit, f"{resource}_limit", show, limit=True)
        elif guarantee is not None:
            chosen[resource] = _two_decimals(guarantee, f"{resource}_guarantee", show, limit=False)
        elif fallback is not None:
            chosen[resource] = fallback
    return Size(chosen["cpu"], _gi(chosen["mem"]) if "mem" in chosen else memory)


def choose_size(bounds: Bounds, *, workload_profile: str, cpu: float, memory: str) -> Size:
    """The size a server gets.

    ``cpu`` and ``memory`` (``c.AcaSpawner.cpu``/``memory``) are used as
    written when no limit or guarantee is in effect (Azure judges the pair, as
    it always did); otherwise the bounds decide, as the module explains, and
    on a dedicated profile ``cpu``/``memory`` fill in a resource without bounds.
    """
    if bounds.empty:
        return Size(cpu, memory)
    if is_consumption(workload_profile):
        return _consumption_size(bounds)
    return _dedicated_size(bounds, cpu, memory)
