"""The app's managed identities: what a PUT may assign, what the answer shows, who may be used.

ARM's ``ManagedServiceIdentity`` (common-types v5): ``type`` is ``None``, ``SystemAssigned``,
``UserAssigned`` or ``SystemAssigned,UserAssigned``; ``userAssignedIdentities`` maps resource ids
to ``{}`` in requests and to ``{principalId, clientId}`` in answers, where the system identity
also shows ``principalId`` and ``tenantId``. A registry (``configuration.registries[].identity``)
or an ``identitySettings`` entry may only name an identity assigned to the app, or ``system``
when the system identity is on.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from .errors import bad_request

IDENTITY_TYPES = ("None", "SystemAssigned", "UserAssigned", "SystemAssigned,UserAssigned")
SYSTEM = "system"
TENANT_ID = "00000000-0000-0000-0000-00000000e0e0"  # the emulator's tenant
_IDS = uuid.UUID("6f1f0c9e-4c44-4d9e-9a53-5b1f6a0c2d11")  # namespace for stable principal/client ids


def normalise(identity: Any) -> dict[str, Any] | None:
    """The identity block as it will be stored (read-only ids dropped), or None for no identity."""
    if identity is None:
        return None
    if not isinstance(identity, dict) or identity.get("type") not in IDENTITY_TYPES:
        raise bad_request(
            "InvalidIdentityType",
            f"The identity type '{(identity or {}).get('type') if isinstance(identity, dict) else identity}' is "
            f"invalid. Allowed values are: {', '.join(IDENTITY_TYPES)}.",
        )
    kind = identity["type"]
    users = identity.get("userAssignedIdentities") or {}
    if ("UserAssigned" in kind) != bool(users):
        raise bad_request(
            "InvalidIdentityType",
            "'userAssignedIdentities' must name at least one identity exactly when the identity type includes "
            "'UserAssigned'.",
        )
    if kind == "None":
        return None
    return {"type": kind, **({"userAssignedIdentities": {k: {} for k in users}} if users else {})}


def _assigned(identity: dict[str, Any] | None, name: str) -> bool:
    if identity is None:
        return False
    if name.lower() == SYSTEM:
        return "SystemAssigned" in identity["type"]
    return name.lower() in {k.lower() for k in identity.get("userAssignedIdentities", {})}


def check_assigned(identity: dict[str, Any] | None, configuration: dict[str, Any]) -> None:
    """Every identity a registry or an identitySettings entry names must be one the app has."""
    for registry in configuration.get("registries") or []:
        name = registry.get("identity")
        if name and not _assigned(identity, name):
            raise bad_request(
                "InvalidParameterValueInContainerTemplate",
                f"The following field(s) are either invalid or missing. Field 'configuration.registries' is invalid "
                f"with details: 'Invalid value: \"{registry.get('server')}\": the identity '{name}' does not exist "
                "or is not assigned to the container app';.",
            )
    for setting in configuration.get("identitySettings") or []:
        name = setting.get("identity", "")
        if not _assigned(identity, name):
            raise bad_request(
                "InvalidParameterValue",
                f"The identity '{name}' in 'configuration.identitySettings' is not assigned to the container app.",
            )


def _stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_IDS, "/".join(p.lower() for p in parts)))


def as_answered(identity: dict[str, Any] | None, app_id: str) -> dict[str, Any] | None:
    """The identity block as ARM answers it: ids filled in, stable for the same app and identity."""
    if identity is None:
        return None
    answer = copy.deepcopy(identity)
    if "SystemAssigned" in identity["type"]:
        answer["principalId"] = _stable_id(app_id, "system")
        answer["tenantId"] = TENANT_ID
    for name in answer.get("userAssignedIdentities", {}):
        answer["userAssignedIdentities"][name] = {"principalId": _stable_id(name, "principal"),
                                                  "clientId": _stable_id(name, "client")}
    return answer
