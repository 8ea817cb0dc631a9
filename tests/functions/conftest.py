"""Fixtures for the functions' tests (helpers live in fn_support.py)."""

from __future__ import annotations

import pytest
from azure.data.tables import TableClient
from fn_support import FakeApps, RecordingHomes, RecordingQueue, base_env

from acaspawner.sealing import Sealer
from functions.capacity import CapacityLedger
from functions.deps import Deps
from functions.followup import FollowUps
from functions.listing import AppListing
from functions.settings import Settings
from functions.storage import FunctionStorage
from functions.user_homes import HomeOwners, UserHomes


@pytest.fixture
def env() -> dict[str, str]:
    return base_env()


@pytest.fixture
def settings(env) -> Settings:
    return Settings.from_environ(env)


@pytest.fixture
def sealer(settings) -> Sealer:
    return Sealer(settings.sealing_keys, max_age=settings.seal_max_age)


@pytest.fixture
def make_deps(storage_connection_string, unique_name):
    """``make(**setting_overrides)`` → Deps on a fresh table/poison queue, FakeApps and RecordingHomes."""

    def make(**overrides: str) -> Deps:
        env = base_env(AcaStorage=storage_connection_string, ACA_LIFECYCLE_QUEUE=unique_name("q"),
                       ACA_STATUS_TABLE=unique_name("t"), **overrides)
        settings = Settings.from_environ(env)
        apps, sealer = FakeApps(), Sealer(settings.sealing_keys, settings.seal_max_age)
        followup_sealer = settings.followup_sealer()
        storage = FunctionStorage(settings.storage)
        return Deps(settings=settings, storage=storage, apps=apps, sealer=sealer, followup_sealer=followup_sealer,
                    follow_ups=FollowUps(followup_sealer, RecordingQueue()), listing=AppListing(apps),
                    homes=UserHomes(RecordingHomes(), HomeOwners(storage.table, settings.hub_id)),
                    max_dequeue_count=5,
                    capacity=CapacityLedger.for_settings(storage.table, settings))

    return make


@pytest.fixture
def deps(make_deps) -> Deps:
    return make_deps()


@pytest.fixture
def table(storage_connection_string, unique_name):
    """A fresh, empty table in Azurite (the capacity ledger's and the home owners' rows live in the status table)."""
    client = TableClient.from_connection_string(storage_connection_string, unique_name("t"))
    client.create_table()
    yield client
    client.close()
