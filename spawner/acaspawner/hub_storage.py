"""The hub's async clients for the lifecycle queue and the status table.

One :class:`HubStorage` per event loop and configuration, shared by every
spawner (as KubeSpawner shares one API client), so a thousand users do not
mean a thousand connection pools. The hub only sends to the queue and reads
the table: that is all its identity may do.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from dataclasses import dataclass
from datetime import datetime

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables.aio import TableClient
from azure.storage.queue import BinaryBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from . import wire
from .contract import ContractError, Status
from .http_env import transport_options
from .identity import async_azure_credential
from .logs import describe
from .report import ENVIRONMENT_PREFIX, Report, capacity_partition, prefix_query, report_partition
from .storage_config import StorageConfig

log = logging.getLogger(__name__)

_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[StorageConfig, HubStorage]] = (
    weakref.WeakKeyDictionary()
)


@dataclass
class StatusRead:
    """What one read of the status table found."""

    statuses: dict[str, Status]
    #: the newest ``Timestamp`` among the rows read: the time the table's server wrote it (its clock, not ours)
    latest: datetime | None = None


class HubStorage:
    """Send sealed requests; read statuses."""

    def __init__(self, config: StorageConfig):
        if wire.MESSAGE_ENCODING != "base64":
            raise RuntimeError("the hub writes base64 bodies; host.json must agree")
        self.config = config
        self._credential = None
        options = transport_options(aio=True)
        if config.connection_string:
            self.queue = QueueClient.from_connection_string(
                config.connection_string, config.queue_name, message_encode_policy=BinaryBase64EncodePolicy(), **options
            )
            self.table = TableClient.from_connection_string(config.connection_string, config.table_name, **options)
        else:
            self._credential = async_azure_credential(config.client_id)
            self.queue = QueueClient(
                config.queue_account_url,
                config.queue_name,
                credential=self._credential,
                message_encode_policy=BinaryBase64EncodePolicy(),
                **options,
            )
            self.table = TableClient(config.table_account_url, config.table_name, credential=self._credential,
                                     **options)
        self._ensured = False
        self.requests_sent = 0
        self.table_queries = 0
        self.entities_read = 0
        # the functions' report (read_report), counted apart: the figures above are the status rows' cost
        self.report_queries = 0

    @classmethod
    def shared(cls, config: StorageConfig) -> HubStorage:
        """The instance for ``config`` on the running event loop."""
        loop = asyncio.get_running_loop()
        per_loop = _shared.setdefault(loop, {})
        if config not in per_loop:
            per_loop[config] = cls(config)
        return per_loop[config]

    async def ensure(self) -> None:
        """Create the queue and the table if this identity may (Azurite, dev); ignore otherwise."""
        if self._ensured:
            return
        for create in (self.queue.create_queue, self.table.create_table):
            try:
                await create()
            except ResourceExistsError:
                pass
            except HttpResponseError as e:
                # production identities may not create; the infrastructure already did
                log.debug("not creating %s: %s", self.config, e.reason or describe(e))
        self._ensured = True

    async def send(self, sealed: bytes, time_to_live: float | None = None) -> None:
        """Put one sealed request on the lifecycle queue."""
        await self.ensure()
        # a sealed message is refused once past its maximum age: the queue need not keep its token longer
        ttl = None if time_to_live is None else max(1, math.ceil(time_to_live))
        await self.queue.send_message(sealed, time_to_live=ttl)
        self.requests_sent += 1

    async def get_status(self, hub_id: str, server_key: str) -> Status | None:
        try:
            entity = await self.table.get_entity(hub_id, server_key)
        except ResourceNotFoundError:
            return None
        finally:
            self.table_queries += 1
        return Status.from_entity(entity)

    async def list_statuses(self, hub_id: str) -> dict[str, Status]:
        """Every status of hub ``hub_id``: one (paged) query for all servers."""
        return (await self.read_statuses(hub_id)).statuses

    async def read_statuses(self, hub_id: str, changed_since: datetime | None = None) -> StatusRead:
        """The statuses of hub ``hub_id`` (those written at or after ``changed_since``, by the table's clock, if
        given): one (paged) query."""
        self.table_queries += 1
        query, parameters = "PartitionKey eq @hub", {"hub": hub_id}
        if changed_since is not None:
            query, parameters["since"] = query + " and Timestamp ge @since", changed_since
        read = StatusRead({})
        try:
            async for entity in self.table.query_entities(query, parameters=parameters):
                self.entities_read += 1
                written = entity.metadata.get("timestamp")
                if written is not None and (read.latest is None or written > read.latest):
                    read.latest = written
                try:
                    status = Status.from_entity(entity)
                except ContractError as e:
                    log.warning("ignoring unreadable status %s: %s", entity.get("RowKey"), describe(e))
                    continue
                read.statuses[status.server_key] = status
        except ResourceNotFoundError:
            return StatusRead({})
        return read

    async def read_report(self, hub_id: str) -> Report:
        """What the functions report to admins (:mod:`acaspawner.report`): two small queries, the environments'
        count rows of the capacity ledger and the report partition."""
        report = Report(read_at=time.time())
        queries = (prefix_query(capacity_partition(hub_id), ENVIRONMENT_PREFIX),
                   ("PartitionKey eq @p", {"p": report_partition(hub_id)}))
        for query, parameters in queries:
            self.report_queries += 1
            try:
                async for entity in self.table.query_entities(query, parameters=parameters):
                    report.add(entity)
            except ResourceNotFoundError:  # no table yet: nothing to report
                pass
        return report

    async def close(self) -> None:
        await self.queue.close()
        await self.table.close()
        if self._credential is not None:
            await self._credential.close()


async def close_shared() -> None:
    """Close the clients of the running loop (hub shutdown, tests)."""
    loop = asyncio.get_running_loop()
    for storage in _shared.pop(loop, {}).values():
        await storage.close()
