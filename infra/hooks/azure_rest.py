"""Azure Resource Manager calls for the azd hooks: a token from azd (or az), JSON over HTTPS.

Standard library only: the hooks run before anything is installed. Tokens
stay in memory; nothing here prints one.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

ARM_ENDPOINT = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com//.default"


class ArmError(RuntimeError):
    """An ARM answer that the hook cannot go on from."""


def azd_values() -> dict[str, str]:
    """The azd environment's values (``azd env get-values``)."""
    out = subprocess.run(["azd", "env", "get-values", "--output", "json"], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out or "{}")


def signed_in_token() -> str:
    """An ARM access token of whoever is signed in to azd (else to the Azure CLI)."""
    attempts = [["azd", "auth", "token", "--output", "json", "--scope", ARM_SCOPE],
                ["az", "account", "get-access-token", "--output", "json", "--resource", ARM_ENDPOINT]]
    for command in attempts:
        if shutil.which(command[0]) is None:
            continue
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode == 0:
            answer = json.loads(done.stdout)
            return answer.get("token") or answer["accessToken"]
    raise ArmError("no Azure sign-in found: run `azd auth login` (or `az login`) first")


class Arm:
    """JSON calls to ARM with one bearer token."""

    def __init__(self, token: str, endpoint: str = ARM_ENDPOINT, context: ssl.SSLContext | None = None):
        self.token = token
        self.endpoint = endpoint.rstrip("/")
        self.context = context

    def call(self, method: str, path: str, api_version: str, body: Any = None) -> tuple[int, Any]:
        """``(status, decoded JSON or None)``; HTTP errors are answers too."""
        url = f"{self.endpoint}{path}?api-version={api_version}"
        request = urllib.request.Request(
            url, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60, context=self.context) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def wait_for(self, path: str, api_version: str, done: Any, *, timeout: float = 600,
                 interval: float = 5) -> Any:
        """GET ``path`` until ``done(body)`` is true; the body then."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.call("GET", path, api_version)
            if status == 200 and done(body):
                return body
            if time.monotonic() > deadline:
                raise ArmError(f"{path} did not reach the expected state within {timeout:g} s (last: {status})")
            time.sleep(interval)
