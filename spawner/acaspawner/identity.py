"""The Azure credential of the hub's or the functions' managed identity.

Both sides authenticate the same way: ``DefaultAzureCredential``, pinned to a
user-assigned managed identity when its client id is configured (empty: the
credential's own choice, e.g. the system-assigned identity or a developer's
``az login``). The hub's storage clients are async, the functions' sync.
"""

from __future__ import annotations

from azure.core.credentials import TokenCredential
from azure.core.credentials_async import AsyncTokenCredential


def _pinned(client_id: str) -> dict[str, str]:
    # an explicit None would pin the system-assigned identity; left out, AZURE_CLIENT_ID still counts
    return {"managed_identity_client_id": client_id} if client_id else {}


def azure_credential(client_id: str = "") -> TokenCredential:
    """The sync credential (the functions' ARM, storage and Files clients)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(**_pinned(client_id))


def async_azure_credential(client_id: str = "") -> AsyncTokenCredential:
    """The async credential (the hub's storage clients)."""
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(**_pinned(client_id))
