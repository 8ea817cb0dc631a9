"""The production storage clients, authenticated as in Azure: managed identity tokens, no account key.

Azurite runs over HTTPS with ``--oauth basic``, so it accepts bearer tokens
and checks their issuer, audience and lifetime; the managed identity endpoint
is :class:`identity_support.FakeManagedIdentity`, announced through
``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` as the Functions and Container Apps
hosts announce theirs. The clients under test are built exactly as
production builds them: the functions' ``FunctionStorage`` from the
``AcaStorage__*`` identity-based app settings, the hub's ``HubStorage`` from
the spawner's traits, each with ``DefaultAzureCredential`` for the
user-assigned identity.
"""

from __future__ import annotations

import time
import uuid
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient
from identity_support import (
    STORAGE_RESOURCE,
    FakeManagedIdentity,
    UserAssignedIdentity,
    set_azure_environment,
    trust_ca,
)

from acaspawner import wire
from acaspawner.contract import Op, Phase, Request, ServerSpec, Status
from acaspawner.hub_storage import HubStorage
from acaspawner.identity import async_azure_credential, azure_credential
from acaspawner.naming import server_key
from acaspawner.sealing import Sealer, generate_key
from acaspawner.spawner import AcaSpawner
from acaspawner.storage_config import StorageConfig
from functions.settings import CONNECTION
from functions.storage import FunctionStorage
from local.azurite import Azurite, start_azurite

FUNCTIONS_CLIENT_ID = str(uuid.uuid4())
HUB_CLIENT_ID = str(uuid.uuid4())
HUB = "hub-identity"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA (``ca``) and a certificate for 127.0.0.1 it issued (``cert``, ``key``), as PEM files."""
    folder = tmp_path_factory.mktemp("azurite-tls")
    ca = trustme.CA(organization_name="acaspawner identity test CA")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    leaf.cert_chain_pems[0].write_to_path(str(files["cert"]))
    leaf.private_key_pem.write_to_path(str(files["key"]))
    return files


@pytest.fixture(scope="module")
def oauth_azurite(tls_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Azurite:
    """Azurite over HTTPS that accepts Microsoft Entra bearer tokens (and the account key)."""
    instance = start_azurite(tmp_path_factory.mktemp("azurite-oauth"), tls=(tls_files["cert"], tls_files["key"]),
                             oauth=True)
    yield instance
    instance.stop()


@pytest.fixture
def identity() -> FakeManagedIdentity:
    """The managed identity endpoint, with the functions' and the hub's user-assigned identities (no system one)."""
    fake = FakeManagedIdentity((UserAssignedIdentity(FUNCTIONS_CLIENT_ID, str(uuid.uuid4()), "id-functions"),
                                UserAssignedIdentity(HUB_CLIENT_ID, str(uuid.uuid4()), "id-hub")))
    with fake:
        yield fake


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch, tls_files: dict[str, Path]) -> None:
    """The storage clients trust Azurite's certificate (Azure's is publicly trusted)."""
    trust_ca(monkeypatch, tls_files["ca"])


@pytest.fixture
def names(unique_name) -> tuple[str, str]:
    """A fresh (queue, table) pair."""
    return unique_name("q"), unique_name("t")


@pytest.fixture
def account_key(oauth_azurite: Azurite, names: tuple[str, str], trusted: None) -> tuple[QueueClient, TableClient]:
    """An observer with the account key (not the identity): the test's own view of the queue and the table."""
    queue_name, table_name = names
    queue = QueueClient.from_connection_string(oauth_azurite.connection_string, queue_name)
    table = TableClient.from_connection_string(oauth_azurite.connection_string, table_name)
    yield queue, table
    queue.close()
    table.close()


def functions_app_settings(azurite: Azurite, queue: str, table: str) -> dict[str, str]:
    """The ``AcaStorage`` connection as infra/modules/functions.bicep sets it: identity-based, no connection string."""
    return {
        f"{CONNECTION}__queueServiceUri": azurite.queue_url,
        f"{CONNECTION}__tableServiceUri": azurite.table_url,
        f"{CONNECTION}__credential": "managedidentity",
        f"{CONNECTION}__clientId": FUNCTIONS_CLIENT_ID,
    }


# AZURE_CLIENT_ID as infra sets it (the same identity), or absent: then only the configured client id names it
WITH_AND_WITHOUT_AZURE_CLIENT_ID = pytest.mark.parametrize("azure_client_id", [True, False],
                                                           ids=["AZURE_CLIENT_ID", "no-AZURE_CLIENT_ID"])


def start_request(user: str = "ines") -> Request:
    return Request(op=Op.START, hub_id=HUB, server_key=server_key(HUB, user), user=user, server_name="",
                   generation=1_764_000_000_000, spec=ServerSpec(image="quay.io/jupyter/base-notebook:latest"))


class BearerToken:
    """A credential with one fixed token, to show what Azurite does with it.

    It tells the SDK the token is good for another hour whatever its ``exp``,
    so that an expired token is sent rather than refused by the client.
    """

    def __init__(self, token: str, expires_on: int) -> None:
        self.token, self.expires_on = token, expires_on

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, max(self.expires_on, int(time.time()) + 3600))

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self.token, max(self.expires_on, int(time.time()) + 3600))


# --- the functions (sync clients) ------------------------------------------------------------------


@WITH_AND_WITHOUT_AZURE_CLIENT_ID
def test_functions_storage_writes_status_and_sends_with_the_functions_identity(
    oauth_azurite, identity, trusted, names, account_key, monkeypatch, azure_client_id
):
    """FunctionStorage from the identity-based ``AcaStorage__*`` settings: status rows, follow-ups, poison."""
    queue_name, table_name = names
    set_azure_environment(monkeypatch, identity, FUNCTIONS_CLIENT_ID if azure_client_id else None)
    settings = functions_app_settings(oauth_azurite, queue_name, table_name)
    for name, value in settings.items():  # app settings are the Function App's environment
        monkeypatch.setenv(name, value)
    config = StorageConfig.from_app_settings(settings, CONNECTION, queue_name, table_name)
    assert config.connection_string == "" and config.client_id == FUNCTIONS_CLIENT_ID

    observer_queue, observer_table = account_key
    observer_queue.create_queue()  # the lifecycle queue exists in Azure (infra creates it)
    storage = FunctionStorage(config)
    try:
        key = server_key(HUB, "ines")
        written = storage.write_status(Status(hub_id=HUB, server_key=key, phase=Phase.PROVISIONING,
                                              generation=1_764_000_000_000, user="ines", message="creating"))
        written = storage.write_status(written.with_event(Phase.RUNNING, "up", url="http://user-ines.internal"))
        read = storage.get_status(HUB, key)
        assert read is not None and read.etag == written.etag
        assert (read.phase, read.url, read.user) == (Phase.RUNNING, "http://user-ines.internal", "ines")
        assert [s.server_key for s in storage.list_statuses(HUB)] == [key]
        storage.send_lifecycle_message("follow-up-body", delay=0)
        storage.send_to_poison("unreadable-body")
    finally:
        for client in (storage.table, storage.lifecycle, storage.poison):
            client.close()

    # what landed, seen with the account key
    assert observer_table.get_entity(HUB, key)["url"] == "http://user-ines.internal"
    assert [m.content for m in observer_queue.receive_messages()] == ["follow-up-body"]
    poison = QueueClient.from_connection_string(oauth_azurite.connection_string, f"{queue_name}-poison")
    assert [m.content for m in poison.receive_messages()] == ["unreadable-body"]
    poison.close()

    # every token came from the endpoint, for storage, for the functions' user-assigned identity
    assert identity.requests and all(r.header_ok and r.api_version == "2019-08-01" for r in identity.requests)
    assert identity.asked_for() == {(STORAGE_RESOURCE, FUNCTIONS_CLIENT_ID)}
    claims = identity.claims(identity.issued[0])
    assert claims["aud"] == STORAGE_RESOURCE
    assert claims["oid"] == identity.identities[FUNCTIONS_CLIENT_ID].object_id


# --- the hub (async clients) -----------------------------------------------------------------------


@WITH_AND_WITHOUT_AZURE_CLIENT_ID
async def test_hub_storage_sends_requests_and_reads_status_with_the_hubs_identity(
    oauth_azurite, identity, trusted, names, account_key, monkeypatch, azure_client_id
):
    """HubStorage from the spawner's identity traits: a sealed request out, statuses in."""
    queue_name, table_name = names
    set_azure_environment(monkeypatch, identity, HUB_CLIENT_ID if azure_client_id else None)
    # the traits hub/jupyterhub_config.py sets without ACA_STORAGE_CONNECTION_STRING
    spawner = AcaSpawner(queue_name=queue_name, table_name=table_name, queue_account_url=oauth_azurite.queue_url,
                         table_account_url=oauth_azurite.table_url, storage_client_id=HUB_CLIENT_ID)
    config = spawner.storage_config
    assert config.connection_string == "" and config.client_id == HUB_CLIENT_ID

    observer_queue, observer_table = account_key
    sealer = Sealer(generate_key())
    request = start_request()
    storage = HubStorage(config)
    try:
        await storage.send(sealer.seal(request))  # creates the queue and the table first, as on Azurite
        assert await storage.get_status(HUB, request.server_key) is None
        observer_table.create_entity(Status(hub_id=HUB, server_key=request.server_key, phase=Phase.RUNNING,
                                            generation=request.generation, user="ines", url="http://u").to_entity())
        status = await storage.get_status(HUB, request.server_key)
        assert status is not None and (status.phase, status.url) == (Phase.RUNNING, "http://u")
        assert list(await storage.list_statuses(HUB)) == [request.server_key]
    finally:
        await storage.close()

    message = observer_queue.receive_message()
    assert message is not None
    assert sealer.open(wire.decode(message.content)) == request

    assert identity.requests and all(r.header_ok for r in identity.requests)
    assert identity.asked_for() == {(STORAGE_RESOURCE, HUB_CLIENT_ID)}
    assert identity.claims(identity.issued[0])["oid"] == identity.identities[HUB_CLIENT_ID].object_id


# --- Azurite really checks --------------------------------------------------------------------------


def test_without_a_credential_the_same_requests_are_refused(oauth_azurite, identity, tls_files, names, account_key):
    """The storage SDKs will not even build a client without a credential: the REST calls, with and without a token."""
    queue_name, table_name = names
    account_key[0].create_queue()
    account_key[1].create_table()
    token, _ = identity.mint(STORAGE_RESOURCE, client_id=FUNCTIONS_CLIENT_ID)

    def send_message(headers: dict[str, str]) -> requests.Response:
        return requests.post(f"{oauth_azurite.queue_url}/{queue_name}/messages", verify=tls_files["ca"],
                             headers={"x-ms-version": "2021-02-12", "x-ms-date": formatdate(usegmt=True), **headers},
                             data="<QueueMessage><MessageText>aGVsbG8=</MessageText></QueueMessage>", timeout=30)

    def get_entity(headers: dict[str, str]) -> requests.Response:
        return requests.get(f"{oauth_azurite.table_url}/{table_name}(PartitionKey='{HUB}',RowKey='nobody')",
                            verify=tls_files["ca"], timeout=30,
                            headers={"x-ms-version": "2019-02-02", "x-ms-date": formatdate(usegmt=True),
                                     "Accept": "application/json;odata=minimalmetadata", **headers})

    bearer = {"Authorization": f"Bearer {token}"}
    assert send_message(bearer).status_code == 201
    assert get_entity(bearer).status_code == 404  # authenticated; there is no such entity
    for refused in (send_message({}), get_entity({})):
        assert refused.status_code == 403
        # Azurite's queue and table services name it differently: AuthenticationFailed, AuthorizationFailure
        assert refused.headers["x-ms-error-code"] in ("AuthenticationFailed", "AuthorizationFailure")
        assert "Server failed to authenticate the request" in refused.text
    assert account_key[0].get_queue_properties().approximate_message_count == 1


@pytest.mark.parametrize(
    "token, accepted",
    [
        (dict(audience=STORAGE_RESOURCE), True),
        (dict(audience="https://devstoreaccount1.queue.core.windows.net"), True),  # the account's own audience
        (dict(audience="https://management.azure.com"), False),
        (dict(audience="https://otheraccount.queue.core.windows.net"), False),
        (dict(audience=STORAGE_RESOURCE, lifetime=-60), False),  # expired
        (dict(audience=STORAGE_RESOURCE, issuer="https://login.example.org/tenant/"), False),
    ],
    ids=["storage", "account-audience", "arm-audience", "other-account", "expired", "foreign-issuer"],
)
def test_azurite_checks_audience_lifetime_and_issuer(oauth_azurite, identity, trusted, names, token, accepted):
    """What ``--oauth basic`` checks, so that the identity tests above prove the tokens right."""
    minted, expires = identity.mint(**token, client_id=FUNCTIONS_CLIENT_ID)
    queue = QueueClient(oauth_azurite.queue_url, names[0], credential=BearerToken(minted, expires))
    try:
        if accepted:
            queue.create_queue()
            queue.send_message("hello")
        else:
            with pytest.raises(HttpResponseError) as refused:
                queue.create_queue()
            assert refused.value.status_code == 403 and refused.value.error_code == "AuthenticationFailed"
    finally:
        queue.close()


def test_the_functions_fail_with_tokens_for_another_audience(oauth_azurite, identity, trusted, names, monkeypatch):
    """The functions' requests carry the endpoint's tokens: if it hands out ARM tokens, storage refuses them."""
    queue_name, table_name = names
    set_azure_environment(monkeypatch, identity, FUNCTIONS_CLIENT_ID)
    identity.audience = "https://management.azure.com"
    config = StorageConfig.from_app_settings(functions_app_settings(oauth_azurite, queue_name, table_name),
                                             CONNECTION, queue_name, table_name)
    storage = FunctionStorage(config)
    try:
        with pytest.raises(HttpResponseError) as refused:
            storage.write_status(Status(hub_id=HUB, server_key=server_key(HUB, "x"), phase=Phase.QUEUED, generation=1))
    finally:
        storage.table.close()
    assert refused.value.status_code == 403
    assert identity.asked_for() == {(STORAGE_RESOURCE, FUNCTIONS_CLIENT_ID)}


async def test_the_hub_fails_with_tokens_for_another_audience(oauth_azurite, identity, trusted, names, monkeypatch):
    """The hub's requests carry the endpoint's tokens too: ARM tokens get its send refused."""
    queue_name, table_name = names
    set_azure_environment(monkeypatch, identity, HUB_CLIENT_ID)
    identity.audience = "https://management.azure.com"
    storage = HubStorage(StorageConfig(queue_name=queue_name, table_name=table_name,
                                       queue_account_url=oauth_azurite.queue_url,
                                       table_account_url=oauth_azurite.table_url, client_id=HUB_CLIENT_ID))
    try:
        with pytest.raises(HttpResponseError) as refused:
            await storage.send(b"sealed")
    finally:
        await storage.close()
    assert refused.value.status_code == 403
    assert identity.asked_for() == {(STORAGE_RESOURCE, HUB_CLIENT_ID)}


# --- the credential itself -------------------------------------------------------------------------


async def test_without_a_configured_client_id_the_credential_follows_AZURE_CLIENT_ID(identity, monkeypatch):
    """An empty client id leaves the choice to ``DefaultAzureCredential``, which reads AZURE_CLIENT_ID."""
    set_azure_environment(monkeypatch, identity, FUNCTIONS_CLIENT_ID)
    azure_credential("").get_token("https://storage.azure.com/.default")
    credential = async_azure_credential("")
    try:
        await credential.get_token("https://storage.azure.com/.default")
    finally:
        await credential.close()
    assert [r.client_id for r in identity.requests if r.token] == [FUNCTIONS_CLIENT_ID, FUNCTIONS_CLIENT_ID]
