"""What a server occupies in its environment: cores and memory, from a start request or from an app as ARM shows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from acaspawner.contract import ServerSpec

from .appsettings import parse_memory_gi

#: what ACA assumes for a container that names no resources
DEFAULT_CPU, DEFAULT_MEMORY = 0.5, "1Gi"
# sums are kept to this many decimals, so quarter cores and halves of GiB add up exactly
_DECIMALS = 6


@dataclass(frozen=True)
class Footprint:
    """Cores and GiB of memory of one server (one replica: user apps run exactly one)."""

    cpu: float
    memory_gib: float

    def __str__(self) -> str:
        return f"{self.cpu:g} vCPU / {self.memory_gib:g} GiB"


def rounded(value: float) -> float:
    return round(value, _DECIMALS)


def of_spec(spec: ServerSpec) -> Footprint:
    """The footprint a start request asks for (its spec passed the policy, so its memory parses)."""
    return Footprint(rounded(float(spec.cpu)), rounded(parse_memory_gi(spec.memory)))


def of_app(app: dict[str, Any]) -> Footprint:
    """The footprint of an app as ARM lists it: its containers' resources summed, times one replica."""
    cpu = memory = 0.0
    template = (app.get("properties") or {}).get("template") or {}
    for container in template.get("containers") or []:
        resources = container.get("resources") or {}
        try:
            cpu += float(resources.get("cpu", DEFAULT_CPU))
        except (TypeError, ValueError):
            cpu += DEFAULT_CPU
        try:
            memory += parse_memory_gi(str(resources.get("memory", DEFAULT_MEMORY)))
        except ValueError:
            memory += parse_memory_gi(DEFAULT_MEMORY)
    return Footprint(rounded(cpu), rounded(memory))


def app_environment(app: dict[str, Any]) -> str:
    """The resource id of the environment an app lives in (``""`` when ARM does not say)."""
    props = app.get("properties") or {}
    return str(props.get("environmentId") or props.get("managedEnvironmentId") or "")


def holds_cores(app: dict[str, Any]) -> bool:
    """Whether an app's replica counts against its environment's quota: not failed, not stopped (parked)."""
    props = app.get("properties") or {}
    return props.get("provisioningState") != "Failed" and props.get("runningStatus") != "Stopped"
