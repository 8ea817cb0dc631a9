"""azd predown hook: delete the users' resource group before the rest.

Users' container apps live in their own resource group but inside the hub's
Container Apps environment; the environment cannot be deleted while they
exist. Deleting their group first lets `azd down` remove everything else.
Needs the Azure CLI (`az login`); without it, prints what to run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys


def main() -> int:
    values = json.loads(
        subprocess.run(
            ["azd", "env", "get-values", "--output", "json"], check=True, capture_output=True, text=True
        ).stdout
        or "{}"
    )
    group = values.get("ACA_USERS_RESOURCE_GROUP", "")
    if not group:
        print("no ACA_USERS_RESOURCE_GROUP in the azd environment; nothing to remove first")
        return 0
    az = shutil.which("az")
    if az is None:
        print(f"Azure CLI not found: run `az group delete --name {group} --yes` if `azd down` fails", file=sys.stderr)
        return 0
    exists = subprocess.run([az, "group", "exists", "--name", group], capture_output=True, text=True)
    if exists.returncode != 0 or exists.stdout.strip() != "true":
        return 0
    print(f"deleting {group} (users' container apps) first")
    subprocess.run([az, "group", "delete", "--name", group, "--yes"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
