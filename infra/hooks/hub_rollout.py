"""azd hook: never two hubs on one database. ``stop`` before the hub app changes, ``start`` after.

JupyterHub does not support two hubs sharing a database (zero-to-jupyterhub
rolls its hub with a Recreate strategy). A Container App in single revision
mode starts the new revision and only then deactivates the old one, so a
roll-out would briefly run two. Stopping the app first (``.../stop``), letting
azd change it, and starting it again runs at most one: the old revision is
gone before the new one starts. The price is the roll-out's downtime, as
with Recreate; users' servers keep running meanwhile, only the hub and its
proxy are away.

Usage: ``python infra/hooks/hub_rollout.py stop|start`` (azure.yaml runs it
around provisioning and the hub's deploy). Before the first provision there
is no hub yet, and both do nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from azure_rest import Arm, ArmError, azd_values, signed_in_token  # noqa: E402

API_VERSION = "2024-03-01"
WANTED = {"stop": "Stopped", "start": "Running"}


def hub_path(values: Mapping[str, str]) -> str | None:
    """The hub app's ARM path from the azd environment, or None before the first provision."""
    subscription = values.get("AZURE_SUBSCRIPTION_ID", "")
    group = values.get("AZURE_RESOURCE_GROUP", "")
    name = values.get("HUB_APP_NAME", "")
    if not (subscription and group and name):
        return None
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.App/containerApps/{name}"


def running_status(body: Mapping | None) -> str:
    return ((body or {}).get("properties") or {}).get("runningStatus") or ""


def switch(arm: Arm, path: str, action: str, *, timeout: float = 600, interval: float = 5) -> str:
    """``stop`` or ``start`` the app at ``path`` and wait until it says so; what happened, in words."""
    wanted = WANTED[action]
    status, body = arm.call("GET", path, API_VERSION)
    if status == 404:
        return "no hub app yet; nothing to do"
    if status != 200:
        raise ArmError(f"reading the hub app answered {status}: {body}")
    if running_status(body) == wanted:
        return f"the hub is already {wanted.lower()}"
    status, body = arm.call("POST", f"{path}/{action}", API_VERSION)
    if status not in (200, 202):
        raise ArmError(f"{action} of the hub app answered {status}: {body}")
    arm.wait_for(path, API_VERSION, lambda app: running_status(app) == wanted, timeout=timeout, interval=interval)
    return f"the hub is {wanted.lower()}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in WANTED:
        print("usage: hub_rollout.py stop|start", file=sys.stderr)
        return 2
    path = hub_path(azd_values())
    if path is None:
        print("hub_rollout: no hub app yet (first provision); nothing to do")
        return 0
    try:
        print(f"hub_rollout: {switch(Arm(signed_in_token()), path, argv[0])}")
    except (ArmError, OSError) as error:
        print(f"hub_rollout: could not {argv[0]} the hub ({error})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
