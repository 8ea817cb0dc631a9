"""Pytest fixtures for the ACA emulator; make them available in a conftest::

    from local.emulator import pytest_fixtures

    aca_emulator = pytest_fixtures.aca_emulator  # (assignments keep ruff's F811 quiet in that file)
    aca_emulator_factory = pytest_fixtures.aca_emulator_factory

``aca_emulator`` is thread-backed (an :class:`~local.emulator.EmulatorThread`), so synchronous
code under test (the functions, the ARM SDK) can call it from the test's thread. It sends no
``Retry-After`` on long-running operations, so clients poll at their own ``polling_interval``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .client import StaticTokenCredential, make_client
from .threaded import EmulatorThread, start_in_thread

TEST_DEFAULTS: dict[str, Any] = {"retry_after": None}


@pytest.fixture
def aca_emulator_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., EmulatorThread]]:
    """``make(**emulator_kwargs)`` → a started EmulatorThread; all are closed after the test."""
    started: list[EmulatorThread] = []

    def make(**kwargs: Any) -> EmulatorThread:
        kwargs = {**TEST_DEFAULTS, **kwargs}
        kwargs.setdefault("state_dir", tmp_path_factory.mktemp("aca-emulator"))
        emulator = start_in_thread(**kwargs)
        started.append(emulator)
        return emulator

    yield make
    for emulator in reversed(started):
        emulator.close()


@pytest.fixture
def aca_emulator(aca_emulator_factory: Callable[..., EmulatorThread]) -> EmulatorThread:
    """A running emulator with default settings (real ARM throttling limits, no delays)."""
    return aca_emulator_factory()


@pytest.fixture
def aca_credential() -> StaticTokenCredential:
    return StaticTokenCredential()


@pytest.fixture
def aca_client(aca_emulator: EmulatorThread, aca_credential: StaticTokenCredential) -> Any:
    """``ContainerAppsAPIClient`` aimed at ``aca_emulator``, polling LROs every 50 ms."""
    client = make_client(aca_emulator, aca_credential, polling_interval=0.05)
    yield client
    client.close()
