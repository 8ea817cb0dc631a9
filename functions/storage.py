"""The functions' (sync) clients: status table writes with ETag conditions, the lifecycle queue (follow-ups), the poison queue.

Functions are the only writer of status. Every write is conditional: a new
entity must not exist yet, an update must match the ETag that was read, so
two workers racing on one server never silently overwrite each other.
"""

from __future__ import annotations

import logging

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode
from azure.storage.queue import QueueClient

from acaspawner.contract import Status
from acaspawner.http_env import transport_options
from acaspawner.identity import azure_credential
from acaspawner.report import FailedStart
from acaspawner.storage_config import StorageConfig, poison_queue_name

from . import telemetry

log = logging.getLogger(__name__)


class StatusConflict(Exception):
    """Someone else wrote this server's status since it was read."""


class FunctionStorage:
    """Status table (read/write), the lifecycle queue and its poison queue (send) of one hub."""

    def __init__(self, config: StorageConfig):
        self.config = config
        poison = poison_queue_name(config.queue_name)
        options = transport_options()
        if config.connection_string:
            self.table = TableClient.from_connection_string(config.connection_string, config.table_name, **options)
            # raw bodies: a poisoned message keeps exactly the bytes it arrived with
            self.poison = QueueClient.from_connection_string(config.connection_string, poison, **options)
            self.lifecycle = QueueClient.from_connection_string(config.connection_string, config.queue_name,
                                                                **options)
        else:
            credential = azure_credential(config.client_id)
            self.table = TableClient(config.table_account_url, config.table_name, credential=credential, **options)
            self.poison = QueueClient(config.queue_account_url, poison, credential=credential, **options)
            self.lifecycle = QueueClient(config.queue_account_url, config.queue_name, credential=credential,
                                         **options)
        self._table_ready = False

    def ensure_table(self) -> None:
        if self._table_ready:
            return
        try:
            self.table.create_table()
        except ResourceExistsError:
            pass
        except HttpResponseError as e:
            log.debug("not creating table %s: %s", self.config.table_name, e.reason)
        self._table_ready = True

    def get_status(self, hub_id: str, server_key: str) -> Status | None:
        self.ensure_table()
        try:
            entity = self.table.get_entity(hub_id, server_key)
        except ResourceNotFoundError:
            return None
        status = Status.from_entity(entity)
        status.etag = entity.metadata["etag"]
        return status

    def write_status(self, status: Status) -> Status:
        """Create (``status.etag is None``) or replace (matching ``status.etag``); returns it with the new ETag.

        Raises :class:`StatusConflict` when the entity changed or appeared since it was read.
        """
        self.ensure_table()
        entity = status.to_entity()
        try:
            if status.etag is None:
                meta = self.table.create_entity(entity)
            else:
                meta = self.table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=status.etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError) as e:
            raise StatusConflict(f"status of {status.server_key} changed concurrently") from e
        except ResourceNotFoundError as e:  # deleted since it was read
            raise StatusConflict(f"status of {status.server_key} was removed concurrently") from e
        status.etag = meta["etag"]
        if telemetry.status_written(status) == "failed":
            self._keep_failure(status)
        return status

    def _keep_failure(self, status: Status) -> None:
        """Keep a failed start for admins (:class:`acaspawner.report.FailedStart`); best effort."""
        failed = FailedStart(status.server_key, status.user, status.server_name, status.error_code, status.message,
                             status.request_id, status.updated)
        try:
            self.table.upsert_entity(failed.to_entity(status.hub_id), mode=UpdateMode.REPLACE)
        except AzureError as e:
            log.warning("could not keep the failed start of %s for admins: %s", status.server_key, type(e).__name__)

    def list_statuses(self, hub_id: str) -> list[Status]:
        self.ensure_table()
        found = []
        for entity in self.table.query_entities("PartitionKey eq @hub", parameters={"hub": hub_id}):
            status = Status.from_entity(entity)
            status.etag = entity.metadata["etag"]
            found.append(status)
        return found

    def statuses_of_user(self, hub_id: str, user: str) -> list[Status]:
        """The status rows of ``user``'s servers."""
        self.ensure_table()
        query = "PartitionKey eq @hub and user eq @user"
        return [Status.from_entity(e) for e in self.table.query_entities(query, parameters={"hub": hub_id,
                                                                                             "user": user})]

    def send_to_poison(self, body: str) -> None:
        """Park an unprocessable message body as the host would (``<queue>-poison``)."""
        try:
            self.poison.create_queue()
        except ResourceExistsError:
            pass
        except HttpResponseError as e:
            log.debug("not creating poison queue: %s", e.reason)
        self.poison.send_message(body)

    def send_lifecycle_message(self, body: str, delay: int, time_to_live: int | None = None) -> None:
        """Put an (already encoded) message on the lifecycle queue, invisible for ``delay`` seconds."""
        self.lifecycle.send_message(body, visibility_timeout=delay, time_to_live=time_to_live)
