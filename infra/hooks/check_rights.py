"""azd preprovision hook: fail early, and clearly, without the rights the deployment needs.

The deployment creates resource groups, two custom role definitions and role
assignments at subscription scope. That takes **Owner**, or **Contributor plus
User Access Administrator**; Contributor alone, or Contributor plus Role Based
Access Control Administrator (which cannot create role definitions), fails
after many minutes of provisioning with an authorization error.

The check asks ARM for the signed-in identity's effective permissions on the
subscription (``Microsoft.Authorization/permissions``) and matches them the
way Azure does: an action is allowed when some role grants it and that same
role does not exclude it (``notActions``).
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Iterable, Mapping

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from azure_rest import Arm, ArmError, azd_values, signed_in_token  # noqa: E402

PERMISSIONS_API = "2022-04-01"

#: what infra/main.bicep does, one representative action each
NEEDED = {
    "Microsoft.Authorization/roleDefinitions/write": "create the functions' custom roles",
    "Microsoft.Authorization/roleAssignments/write": "grant each identity its roles",
    "Microsoft.Resources/subscriptions/resourceGroups/write": "create the resource groups",
    "Microsoft.Resources/deployments/write": "run the deployment",
    "Microsoft.App/containerApps/write": "create the hub and the environment's apps",
}

ADVICE = ("The deployment needs Owner on the subscription, or Contributor plus User Access Administrator "
          "(Role Based Access Control Administrator is not enough: it cannot create role definitions).")


def _matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def allowed(action: str, permissions: Iterable[Mapping]) -> bool:
    """Whether some role's ``actions`` grant ``action`` without that role's ``notActions`` taking it back."""
    return any(
        any(_matches(p, action) for p in role.get("actions", ()))
        and not any(_matches(p, action) for p in role.get("notActions", ()))
        for role in permissions
    )


def missing(permissions: Iterable[Mapping]) -> dict[str, str]:
    """The needed actions (and what each is for) that ``permissions`` do not allow."""
    roles = list(permissions)
    return {action: why for action, why in NEEDED.items() if not allowed(action, roles)}


def report(lacking: Mapping[str, str]) -> str:
    lines = [f"  - {action} (to {why})" for action, why in lacking.items()]
    return "The signed-in identity may not:\n" + "\n".join(lines) + "\n" + ADVICE


def main() -> int:
    subscription = azd_values().get("AZURE_SUBSCRIPTION_ID") or os.environ.get("AZURE_SUBSCRIPTION_ID", "")
    if not subscription:
        print("check_rights: no AZURE_SUBSCRIPTION_ID yet; azd asks for it before provisioning", file=sys.stderr)
        return 0
    try:
        arm = Arm(signed_in_token())
        status, body = arm.call("GET", f"/subscriptions/{subscription}/providers/Microsoft.Authorization/permissions",
                                PERMISSIONS_API)
    except (ArmError, OSError) as error:
        print(f"check_rights: could not check the rights ({error}); {ADVICE}", file=sys.stderr)
        return 0  # cannot tell: let the deployment itself decide
    if status != 200:
        print(f"check_rights: ARM answered {status} when asked for the rights; {ADVICE}", file=sys.stderr)
        return 0
    lacking = missing((body or {}).get("value", []))
    if lacking:
        print(report(lacking), file=sys.stderr)
        return 1
    print("check_rights: the signed-in identity may create everything the deployment needs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
