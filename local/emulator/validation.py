"""The checks ARM/ACA makes synchronously on a container app PUT or PATCH, with ACA's error codes."""

from __future__ import annotations

import re
from typing import Any

from .errors import ArmError, bad_request

_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Gi|G|Mi|M)?\s*$")

# Consumption profile: cpu 0.25..4 in steps of 0.25, memory exactly 2 GiB per core
CONSUMPTION_PAIRS = [(q / 4, q / 2) for q in range(1, 17)]
DEFAULT_CPU, DEFAULT_MEMORY = 0.5, "1Gi"


def validate_name(name: str) -> None:
    """ACA names: 2-32 chars, ``[a-z0-9-]``, start with a letter, end alphanumeric, no ``--``."""
    if 2 <= len(name) <= 32 and _NAME.match(name) and "--" not in name:
        return
    raise bad_request(
        "ContainerAppInvalidName",
        f"Invalid ContainerApp name '{name}'. A name must consist of lower case alphanumeric characters or '-', "
        "start with an alphabetic character, and end with an alphanumeric character and cannot have '--'. "
        "The length must not be more than 32 characters.",
    )


def parse_memory_gi(value: str | float | int) -> float | None:
    """``"1Gi"``/``"1.5Gi"``/``"512Mi"`` → GiB, None when unparseable."""
    match = _MEMORY.match(str(value))
    if not match:
        return None
    amount = float(match.group(1))
    return amount / 1024 if match.group(2) in ("Mi", "M") else amount


def validate_resources(containers: list[dict[str, Any]], workload_profile_type: str | None) -> None:
    """On a Consumption profile (None: the default one), the summed cpu/memory of all containers must be one of its pairs."""
    if (workload_profile_type or "Consumption") != "Consumption":
        return  # dedicated profiles have their own limits, which the emulator does not model
    cpu = memory = 0.0
    for container in containers:
        resources = container.get("resources") or {}
        try:
            cpu += float(resources.get("cpu", DEFAULT_CPU))
        except (TypeError, ValueError):
            cpu = float("nan")
        gi = parse_memory_gi(resources.get("memory", DEFAULT_MEMORY))
        memory += gi if gi is not None else float("nan")
    if any(abs(cpu - c) < 1e-9 and abs(memory - m) < 1e-9 for c, m in CONSUMPTION_PAIRS):
        return
    pairs = "; ".join(f"[cpu: {c}, memory: {m}Gi]" for c, m in CONSUMPTION_PAIRS)
    raise bad_request(
        "ContainerAppInvalidResourceTotal",
        f"The total requested CPU and memory resources for this application (CPU: {cpu}, memory: {memory}Gi) is "
        "invalid. Total CPU and memory for all containers defined in a Container App must add up to one of the "
        f"following CPU - Memory combinations: {pairs}",
    )


def _template_error(field: str, details: str) -> ArmError:
    return bad_request(
        "InvalidParameterValueInContainerTemplate",
        f"The following field(s) are either invalid or missing. Field '{field}' is invalid with details: "
        f"'{details}';.",
    )


def validate_template(template: dict[str, Any], secret_names: set[str]) -> None:
    """Containers present, each with an image, and every ``secretRef`` naming a defined secret."""
    containers = template.get("containers") or []
    if not containers:
        raise _template_error("template.containers", "Invalid value: at least one container is required")
    for index, container in enumerate(containers):
        label = container.get("name") or str(index)
        if not str(container.get("image") or "").strip():
            raise _template_error(f"template.containers.{label}.image", 'Invalid value: "": image is required')
        for env in container.get("env") or []:
            ref = env.get("secretRef")
            if ref and ref not in secret_names:
                raise bad_request(
                    "ContainerAppSecretRefNotFound",
                    f"SecretRef '{ref}' defined for container '{label}' not found.",
                )


def normalise_location(location: str) -> str:
    """ARM compares regions by their short name: ``West Europe`` and ``westeurope`` are one region."""
    return location.lower().replace(" ", "")


def validate_location(body: dict[str, Any], environment_location: str) -> None:
    """``location`` is required and must be the environment's region (an app lives in its environment)."""
    location = body.get("location")
    if not location:
        raise bad_request("LocationRequired", "The location property is required for this definition.")
    if normalise_location(str(location)) != normalise_location(environment_location):
        raise bad_request(
            "InvalidParameterValue",
            f"The container app's location '{location}' does not match the location of its managed environment "
            f"'{environment_location}'. A container app must be created in the region of its environment.",
        )


def validate_workload_profile(name: str | None, profiles: list[dict[str, Any]]) -> None:
    """A ``workloadProfileName`` must name one of the environment's workload profiles."""
    if not name:
        return
    names = [str(p.get("name", "")) for p in profiles]
    if name.lower() not in {n.lower() for n in names}:
        raise bad_request(
            "InvalidParameterValue",
            f"The workload profile '{name}' does not exist in the managed environment. "
            f"Available workload profiles: {', '.join(names) or 'none'}.",
        )


def profile_type(name: str | None, profiles: list[dict[str, Any]]) -> str:
    """The ``workloadProfileType`` of the named profile; an app without one runs on Consumption."""
    for profile in profiles:
        if str(profile.get("name", "")).lower() == (name or "Consumption").lower():
            return str(profile.get("workloadProfileType", ""))
    return "Consumption"
