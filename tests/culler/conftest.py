"""Fixtures for the culler and reconciler tests: a real JupyterHub per module (``hub``) or per test (``make_hub``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubprocess import RunningHub, start_hub  # noqa: E402


@pytest.fixture
def make_hub(tmp_path):
    """Start hubs (``make_hub(**options)``); every one is stopped, with its proxy, after the test."""
    hubs: list[RunningHub] = []

    def make(**options) -> RunningHub:
        hub = start_hub(tmp_path / f"hub{len(hubs)}", **options)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.stop()


@pytest.fixture(scope="module")
def module_hub(tmp_path_factory):
    """One hub with the culler service's documented scopes, started once for a test module."""
    hub = start_hub(tmp_path_factory.mktemp("hub"))
    yield hub
    hub.stop()


@pytest.fixture
def hub(module_hub) -> RunningHub:
    """A hub with the culler service's documented scopes, and no users: the module's hub, emptied after each
    test (every server stopped, every user deleted), so tests that cull the whole hub stay independent."""
    assert module_hub.all_users() == [], "the previous test left users behind"
    yield module_hub
    module_hub.remove_all_users()


from local.emulator.pytest_fixtures import aca_client, aca_credential, aca_emulator, aca_emulator_factory  # noqa: E402,F401
