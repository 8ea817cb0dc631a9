"""Fixtures for the ACA emulator tests: the emulator itself, ARM clients, a small app to run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.mgmt.appcontainers import models
from emulator_helpers import echo_container_app

from local.emulator import pytest_fixtures

# the emulator's fixtures, made available to every test in this folder
aca_emulator_factory = pytest_fixtures.aca_emulator_factory
aca_emulator = pytest_fixtures.aca_emulator
aca_credential = pytest_fixtures.aca_credential
aca_client = pytest_fixtures.aca_client


@pytest.fixture
def echo_app(aca_client, aca_emulator) -> Callable[..., models.ContainerApp]:
    """``create(name)`` → the created echo app (its LRO completed)."""

    def create(name: str = "user-x", **overrides: Any) -> models.ContainerApp:
        body = echo_container_app(aca_emulator.environment_id, **overrides)
        poller = aca_client.container_apps.begin_create_or_update(aca_emulator.resource_group, name, body)
        return poller.result(timeout=60)

    return create
