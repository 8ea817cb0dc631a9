"""Client-side helpers: a static bearer token and a ``ContainerAppsAPIClient`` aimed at an emulator.

The emulator only checks that a bearer token is present, so any credential works; this one
needs no Azure login. Production code keeps its own credential and changes only ``base_url``
and ``connection_verify``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken, AccessTokenInfo

if TYPE_CHECKING:
    from azure.mgmt.appcontainers import ContainerAppsAPIClient


class StaticTokenCredential:
    """A ``TokenCredential`` that always returns the same far-future token."""

    def __init__(self, token: str = "emulator") -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 365 * 24 * 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self.token, int(time.time()) + 365 * 24 * 3600)

    def close(self) -> None:
        pass


def make_client(emulator: Any, credential: Any = None, **kwargs: Any) -> ContainerAppsAPIClient:
    """A ``ContainerAppsAPIClient`` for ``emulator`` (an Emulator or EmulatorThread); kwargs go to the client."""
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    return ContainerAppsAPIClient(
        credential or StaticTokenCredential(),
        emulator.subscription_id,
        base_url=emulator.arm_endpoint,
        connection_verify=str(emulator.ca_bundle),
        **kwargs,
    )
