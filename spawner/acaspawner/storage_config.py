"""Where the lifecycle queue and the status table live, and how to authenticate.

Shared by the hub (async clients) and the functions (sync clients). Either a
connection string (Azurite, or an account key) or account URLs with
``DefaultAzureCredential`` (managed identity in production).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_QUEUE = "aca-lifecycle"
DEFAULT_TABLE = "acaservers"


def poison_queue_name(queue: str) -> str:
    """The Functions host's poison queue for ``queue``."""
    return f"{queue}-poison"


@dataclass(frozen=True)
class StorageConfig:
    queue_name: str = DEFAULT_QUEUE
    table_name: str = DEFAULT_TABLE
    connection_string: str = ""
    queue_account_url: str = ""
    table_account_url: str = ""
    # user-assigned managed identity; empty = DefaultAzureCredential's own choice
    client_id: str = ""

    def __post_init__(self) -> None:
        if not self.connection_string and not (self.queue_account_url and self.table_account_url):
            raise ValueError(
                "storage needs either a connection string or both a queue and a table account URL"
            )

    def __repr__(self) -> str:  # a connection string may hold an account key
        where = "connection string" if self.connection_string else f"{self.queue_account_url}, {self.table_account_url}"
        return f"StorageConfig(queue={self.queue_name!r}, table={self.table_name!r}, {where})"

    @classmethod
    def from_app_settings(
        cls, settings: Mapping[str, str], connection: str, queue_name: str, table_name: str
    ) -> StorageConfig:
        """Read the Functions convention for connection ``connection``.

        ``<connection>`` holds a connection string; otherwise identity-based
        ``<connection>__queueServiceUri`` and ``<connection>__tableServiceUri``
        (and optionally ``<connection>__clientId``) are used, as the
        Functions host itself reads them for the queue trigger.
        """
        conn_str = settings.get(connection, "")
        queue_url = settings.get(f"{connection}__queueServiceUri", "")
        table_url = settings.get(f"{connection}__tableServiceUri", "")
        if not conn_str and not (queue_url and table_url):
            raise ValueError(
                f"storage connection {connection!r} is not configured: set {connection} to a connection string, "
                f"or {connection}__queueServiceUri and {connection}__tableServiceUri for identity-based access"
            )
        return cls(
            queue_name=queue_name,
            table_name=table_name,
            connection_string=conn_str,
            queue_account_url=queue_url,
            table_account_url=table_url,
            client_id=settings.get(f"{connection}__clientId", ""),
        )
