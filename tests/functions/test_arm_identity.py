"""The functions' ARM client as in Azure: no ``ACA_ARM_TOKEN``, so ``DefaultAzureCredential`` and the managed identity.

The ARM emulator stands in for Azure Resource Manager (it accepts any bearer
token); :class:`identity_support.FakeManagedIdentity` for the Functions
host's managed identity endpoint. ``ACA_ARM_ENDPOINT`` and
``ACA_ARM_CA_BUNDLE`` only move the client to the emulator; the credential is
production's.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fn_support import emulator_env
from identity_support import ARM_RESOURCE, FakeManagedIdentity, UserAssignedIdentity, set_azure_environment

from functions.arm import ArmApps, StaticTokenCredential, make_client, make_credential
from functions.settings import Settings
from local.emulator import pytest_fixtures

aca_emulator_factory = pytest_fixtures.aca_emulator_factory
aca_emulator = pytest_fixtures.aca_emulator

CLIENT_ID = str(uuid.uuid4())


@pytest.fixture
def identity() -> FakeManagedIdentity:
    """The managed identity endpoint of the Function App, with its user-assigned identity (no system one)."""
    with FakeManagedIdentity((UserAssignedIdentity(CLIENT_ID, str(uuid.uuid4()), "id-functions"),)) as fake:
        yield fake


@pytest.fixture(params=[True, False], ids=["AZURE_CLIENT_ID-in-environment", "AZURE_CLIENT_ID-in-settings-only"])
def settings(request, aca_emulator, identity, monkeypatch) -> Settings:
    """The functions' settings for the emulator, with ``AZURE_CLIENT_ID`` and without ``ACA_ARM_TOKEN``.

    In Azure the app settings are the process environment; the second case
    (settings read from a mapping, the environment without ``AZURE_CLIENT_ID``)
    shows that the client id reaches the credential from the settings.
    """
    set_azure_environment(monkeypatch, identity, CLIENT_ID if request.param else None)
    env = emulator_env(aca_emulator, AZURE_CLIENT_ID=CLIENT_ID)
    assert "ACA_ARM_TOKEN" not in env
    return Settings.from_environ(env)


def test_without_an_arm_token_the_credential_is_the_managed_identity(settings):
    assert settings.arm_token == "" and settings.client_id == CLIENT_ID
    assert not isinstance(make_credential(settings), StaticTokenCredential)


def test_arm_calls_carry_a_token_of_the_functions_identity(settings, identity, aca_emulator):
    client = make_client(settings, retry_total=0)
    apps = ArmApps.for_settings(client, settings)
    try:
        assert apps.get("nobody-has-this-app") is None
        assert apps.list() == []
        sent: list[str] = []

        def record(request: Any) -> None:
            sent.append(request.http_request.headers.get("Authorization", ""))

        # one more read, to see the header itself (the hook runs after the bearer token policy)
        assert list(client.container_apps.list_by_resource_group(settings.resource_group,
                                                                 raw_request_hook=record)) == []
    finally:
        apps.close()

    assert identity.requests and all(r.header_ok and r.api_version == "2019-08-01" for r in identity.requests)
    assert identity.asked_for() == {(ARM_RESOURCE, CLIENT_ID)}
    assert sent and all(header.removeprefix("Bearer ") in identity.issued for header in sent)
    claims = identity.claims(identity.issued[-1])
    assert claims["aud"] == ARM_RESOURCE and claims["oid"] == identity.identities[CLIENT_ID].object_id
    assert aca_emulator.stats["auth_failures"] == 0
