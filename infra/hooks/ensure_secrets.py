"""azd preprovision hook: create this deployment's secrets once and keep them.

Each value is stored in the azd environment (.azure/<env>/.env) the first time
and reused by every later `azd provision`, so that re-provisioning never
rotates a key under running servers or in-flight queue messages. The
deployment writes them to Key Vault; hub and functions read them from there.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys


def fernet_key() -> str:
    """A key for cryptography's Fernet: 32 random bytes, url-safe base64."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def hex32() -> str:
    return secrets.token_hex(32)


GENERATED = {
    "ACA_SEALING_KEYS": fernet_key,
    "ACA_FOLLOWUP_KEYS": fernet_key,  # the functions' own: Key Vault lets only their identity read it
    "JUPYTERHUB_CRYPT_KEY": hex32,
    "JUPYTERHUB_COOKIE_SECRET": hex32,
    "ACA_CULLER_API_TOKEN": hex32,
}


def azd(*args: str) -> str:
    return subprocess.run(["azd", *args], check=True, capture_output=True, text=True).stdout


def main() -> int:
    values = json.loads(azd("env", "get-values", "--output", "json") or "{}")
    for name, make in GENERATED.items():
        if values.get(name):
            continue
        value = make()
        while value.startswith("-"):  # would read as a command-line flag
            value = make()
        azd("env", "set", name, value)
        print(f"generated {name} (kept in the azd environment)")
    if not values.get("OAUTH_CLIENT_ID"):
        print(
            "OAUTH_CLIENT_ID is not set: the hub will start, but nobody can log in until you register an "
            "OAuth app for the OAUTH_CALLBACK_URL output and run `azd env set OAUTH_CLIENT_ID ...`, "
            "`azd env set OAUTH_CLIENT_SECRET ...` and `azd provision` (see docs/deploy.md).",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
