"""Fixtures for the contract tests: the emulator, and plain HTTPS to it for replaying published examples."""

from __future__ import annotations

import pytest
import requests

from local.emulator import pytest_fixtures

aca_emulator_factory = pytest_fixtures.aca_emulator_factory
aca_emulator = pytest_fixtures.aca_emulator
aca_credential = pytest_fixtures.aca_credential
aca_client = pytest_fixtures.aca_client


@pytest.fixture
def arm(aca_emulator_factory):
    """``make(**emulator_kwargs)`` → (emulator, requests session with a bearer token and the test CA)."""
    sessions: list[requests.Session] = []

    def make(**kwargs):
        emu = aca_emulator_factory(**kwargs)
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override session.verify
        session.verify = str(emu.ca_bundle)
        session.headers["Authorization"] = "Bearer contract-test"
        sessions.append(session)
        return emu, session

    yield make
    for session in sessions:
        session.close()
