"""Shared fixtures: a real Azurite for every test session that needs storage."""

from __future__ import annotations

import uuid

import pytest

from local.azurite import start_azurite


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """A running Azurite (installed from npm if missing)."""
    instance = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def storage_connection_string(azurite) -> str:
    return azurite.connection_string


@pytest.fixture
def unique_name():
    """Names for queues and tables that no other test uses (letters and digits only)."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}{uuid.uuid4().hex[:12]}"

    return make
