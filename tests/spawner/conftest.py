"""Fixtures for the spawner's tests: JupyterHub's in-memory database, storage on Azurite, a fake worker."""

from __future__ import annotations

import pytest
from jupyterhub.tests.conftest import db  # noqa: F401 - JupyterHub's own fixture: an initialised in-memory hub db
from spawner_support import FakeWorker

from acaspawner.hub_storage import close_shared
from acaspawner.sealing import Sealer, generate_key
from acaspawner.storage_config import StorageConfig
from acaspawner.watcher import close_watchers


@pytest.fixture
def sealing_key() -> str:
    return generate_key()


@pytest.fixture
def storage_config(storage_connection_string, unique_name) -> StorageConfig:
    return StorageConfig(
        queue_name=unique_name("q"), table_name=unique_name("t"), connection_string=storage_connection_string
    )


@pytest.fixture
def spawner_kwargs(storage_config, sealing_key) -> dict:
    """Traits pointing a spawner at this test's queue and table, with test-sized intervals."""
    return {
        "storage_connection_string": storage_config.connection_string,
        "queue_name": storage_config.queue_name,
        "table_name": storage_config.table_name,
        "sealing_keys": sealing_key,
        "hub_id": "testhub",
        "status_poll_interval": 1.0,
        "status_poll_interval_fast": 0.2,
        "start_timeout": 30,
        "stop_timeout": 15,
    }


@pytest.fixture
async def worker(storage_config, sealing_key):
    async with FakeWorker(storage_config, Sealer(sealing_key)) as fake:
        yield fake


@pytest.fixture(autouse=True)
async def _close_shared_clients():
    """Each test's loop gets its own watchers and clients; close them with the loop."""
    yield
    await close_watchers()
    await close_shared()
