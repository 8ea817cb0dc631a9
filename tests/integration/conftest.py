"""Fixtures for the integration tests: JupyterHub's db, the ACA emulator, and the functions dev host.

Everything runs in this one process: the emulator on its own thread (its app
processes are children), the functions dev host on its own thread, listening
to the queue the way the Functions host does, and the spawners on the test's
event loop. Each test gets its own queue, table, hub id and sealing key.
"""

from __future__ import annotations

import json
import uuid

import pytest
from integration_support import ALLOWED_IMAGES, REPO, IntegrationStack
from jupyterhub.tests.conftest import db  # noqa: F401 - JupyterHub's own fixture: an initialised in-memory hub db

from acaspawner.hub_storage import close_shared
from acaspawner.sealing import generate_key
from acaspawner.watcher import close_watchers
from local.emulator import pytest_fixtures
from local.funchost import FunctionsHost

# the emulator's fixtures (thread-backed; closed after each test, ending every app process)
aca_emulator_factory = pytest_fixtures.aca_emulator_factory
aca_emulator = pytest_fixtures.aca_emulator
aca_credential = pytest_fixtures.aca_credential
aca_client = pytest_fixtures.aca_client

NEVER = "0 0 0 1 1 *"  # NCRONTAB: once a year; the culler and reconciler are disabled here anyway


def host_json() -> dict:
    """The committed host.json, with one change for test speed only.

    maxPollingInterval: the host backs off to this between empty polls of the
    queue, and a spawn waits for the next poll; half a second instead of the
    committed two keeps each test's spawns quick. Everything else (base64
    encoding, batch size, dequeue count, visibility timeout) is as deployed.
    """
    host = json.loads((REPO / "host.json").read_text())
    host["extensions"]["queues"]["maxPollingInterval"] = "00:00:00.5"
    return host


@pytest.fixture
def stack(aca_emulator, storage_connection_string, unique_name):
    """A running functions host (listening, as in Azure) wired to this test's emulator, queue and table."""
    hub_id = f"it{uuid.uuid4().hex[:10]}"
    queue, table, key = unique_name("q"), unique_name("t"), generate_key()
    # what local/stack.py's Stack.function_settings() gives the functions against the emulator
    settings = {
        "AcaStorage": storage_connection_string,
        "AzureWebJobsStorage": storage_connection_string,
        "ACA_HUB_ID": hub_id,
        "ACA_SEALING_KEYS": key,
        "ACA_FOLLOWUP_KEYS": generate_key(),
        "ACA_LIFECYCLE_QUEUE": queue,
        "ACA_STATUS_TABLE": table,
        "ACA_SUBSCRIPTION_ID": aca_emulator.subscription_id,
        "ACA_RESOURCE_GROUP": aca_emulator.resource_group,
        "ACA_ENVIRONMENT_ID": aca_emulator.environment_id,
        "ACA_LOCATION": aca_emulator.location,
        "ACA_ALLOWED_IMAGES": ALLOWED_IMAGES,
        "ACA_ARM_ENDPOINT": aca_emulator.arm_endpoint,
        "ACA_ARM_CA_BUNDLE": str(aca_emulator.ca_bundle),
        "ACA_ARM_TOKEN": "emulator-token",
        # the timers are not under test: they stay out of the way (and would need a hub API)
        "ACA_CULL_SCHEDULE": NEVER,
        "ACA_RECONCILE_SCHEDULE": NEVER,
        "ACA_WARM_POOL_SCHEDULE": NEVER,
        "AzureWebJobs.culler.Disabled": "true",
        "AzureWebJobs.reconciler.Disabled": "true",
        "AzureWebJobs.warm_pool.Disabled": "true",
    }
    host = FunctionsHost(
        REPO / "function_app.py", settings=settings, host_json=host_json(),
        local_settings=REPO / "no-local-settings.json",  # never a developer's local.settings.json
    )
    host.start(listen=True)
    try:
        assert set(host.functions) == {"lifecycle"}, host.functions
        yield IntegrationStack(
            emulator=aca_emulator, host=host, hub_id=hub_id, queue_name=queue, table_name=table,
            connection_string=storage_connection_string, sealing_key=key,
        )
    finally:
        host.stop()


@pytest.fixture(autouse=True)
async def _close_shared_clients():
    """Each test's loop gets its own watchers and storage clients; close them with the loop."""
    yield
    await close_watchers()
    await close_shared()
