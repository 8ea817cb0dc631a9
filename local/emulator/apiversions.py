"""Which ``api-version`` values the emulator's ``Microsoft.App`` types accept, and ARM's answer to others.

ARM routes a request to a resource provider only for an api-version the provider registered
for that type; any other is refused before the provider sees it, with 400
``NoRegisteredProviderFound`` naming the supported versions (see local/emulator/README.md for
the sources). The list holds published ``Microsoft.App`` versions, the pinned SDK's own
(``2026-07-01``) included; ``Emulator(api_versions=...)`` replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import ArmError

SDK_API_VERSION = "2026-07-01"  # azure-mgmt-appcontainers 5.1's default (its _configuration.py)

SUPPORTED_API_VERSIONS: tuple[str, ...] = (
    "2022-03-01",
    "2022-06-01-preview",
    "2022-10-01",
    "2022-11-01-preview",
    "2023-04-01-preview",
    "2023-05-01",
    "2023-05-02-preview",
    "2023-08-01-preview",
    "2023-11-02-preview",
    "2024-02-02-preview",
    "2024-03-01",
    "2024-08-02-preview",
    "2025-01-01",
    "2025-10-02-preview",
    "2026-01-01",
    SDK_API_VERSION,
)


def resource_type(path: str) -> str:
    """The ``Microsoft.App`` type a path addresses, as ARM names it in errors (e.g. ``containerApps``)."""
    parts = [p for p in path.split("/") if p]
    lowered = [p.lower() for p in parts]
    if "microsoft.app" not in lowered:
        return "containerApps"
    tail = parts[lowered.index("microsoft.app") + 1 :]
    # type segments alternate with names: containerApps/{name}/start → containerApps
    return "/".join(tail[0::2][:1]) or "containerApps"


def check_api_version(version: str, supported: Iterable[str], location: str, path: str) -> None:
    """Raise ARM's 400 unless ``version`` is one the provider registered."""
    versions = tuple(supported)
    if version in versions:
        return
    raise ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for location '{location}' and API version '{version}' for type "
        f"'{resource_type(path)}'. The supported api-versions are '{', '.join(reversed(versions))}'. "
        f"The supported locations are '{location}'.",
    )
