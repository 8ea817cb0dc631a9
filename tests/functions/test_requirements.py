"""The ARM SDK the functions run with is the one whose models they were written against."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"


def pinned(name: str) -> Requirement:
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and Requirement(line).name == name:
            return Requirement(line)
    raise AssertionError(f"{name} is not in requirements.txt")


def test_the_arm_sdk_is_pinned_to_one_major_version():
    bounds = {s.operator: Version(s.version) for s in pinned("azure-mgmt-appcontainers").specifier}
    assert set(bounds) == {">=", "<"}, bounds  # e.g. >=5.1,<6: the next major stays out until tested
    assert bounds["<"] == Version(str(bounds[">="].major + 1)), bounds


def test_the_installed_arm_sdk_satisfies_the_pin():
    requirement = pinned("azure-mgmt-appcontainers")
    installed = version("azure-mgmt-appcontainers")
    assert requirement.specifier.contains(installed), f"installed {installed}, requirements.txt says {requirement}"
