"""The storage layer against a real Azurite."""

import asyncio
import base64
import json
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient
from waiting import wait_until

from acaspawner import wire
from acaspawner.contract import Op, Phase, Request, ServerSpec, Status
from acaspawner.hub_storage import HubStorage, close_shared
from acaspawner.naming import server_key
from acaspawner.sealing import Sealer, generate_key
from acaspawner.storage_config import StorageConfig
from functions.followup import FollowUp, FollowUps, Step
from functions.storage import FunctionStorage, StatusConflict

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(storage_connection_string, unique_name):
    return StorageConfig(
        queue_name=unique_name("q"), table_name=unique_name("t"), connection_string=storage_connection_string
    )


def start_request(user="carol") -> Request:
    return Request(op=Op.START, hub_id="hub", server_key=server_key("hub", user), user=user, server_name="",
                   generation=1_764_000_000_000, spec=ServerSpec(image="img", secret_env={"T": "token-xyz"}))


def host_message_encoding() -> str:
    host = json.loads((REPO / "host.json").read_text())
    return host.get("extensions", {}).get("queues", {}).get("messageEncoding", "base64")


async def test_hub_request_decodes_as_the_functions_host_will(config):
    """What the hub writes, read back raw, is what the host hands the function under host.json."""
    sealer = Sealer(generate_key())
    storage = HubStorage(config)
    request = start_request()
    sealed = sealer.seal(request)
    await storage.send(sealed)
    await storage.close()

    raw = QueueClient.from_connection_string(config.connection_string, config.queue_name)  # no decode policy
    message = raw.receive_message()
    assert message is not None
    encoding = host_message_encoding()
    assert encoding == wire.MESSAGE_ENCODING
    if encoding == "base64":
        assert base64.b64decode(message.content, validate=True) == sealed
    assert wire.decode(message.content, encoding) == sealed
    assert sealer.open(wire.decode(message.content, encoding)) == request
    assert "token-xyz" not in message.content


def test_non_base64_bodies_are_refused_like_the_host():
    with pytest.raises(wire.WireError):
        wire.decode("this is not base64!!")
    assert wire.decode(wire.encode(b"\x00\x01abc")) == b"\x00\x01abc"


async def test_enqueue_receive_delete(config):
    storage = HubStorage(config)
    await storage.send(b"one")
    await storage.send(b"two")
    await storage.close()
    raw = QueueClient.from_connection_string(config.connection_string, config.queue_name)
    bodies = []
    for message in raw.receive_messages(max_messages=10):
        bodies.append(wire.decode(message.content))
        raw.delete_message(message)
    assert sorted(bodies) == [b"one", b"two"]
    assert raw.get_queue_properties().approximate_message_count == 0


async def test_status_upsert_and_read(config):
    fstore = FunctionStorage(config)
    key = server_key("hub", "dave")
    status = Status(hub_id="hub", server_key=key, phase=Phase.PROVISIONING, generation=1_764_000_000_001, user="dave")
    written = fstore.write_status(status)
    assert written.etag
    written = fstore.write_status(written.with_event(Phase.RUNNING, "up", url="http://x"))
    storage = HubStorage(config)
    read = await storage.get_status("hub", key)
    assert read.phase is Phase.RUNNING and read.url == "http://x"
    assert read.generation == 1_764_000_000_001
    everything = await storage.list_statuses("hub")
    assert list(everything) == [key]
    assert await storage.list_statuses("other-hub") == {}
    await storage.close()


async def test_a_read_of_what_changed_returns_the_rows_written_since_by_the_tables_clock(config):
    """The watcher's fast read: ``Timestamp ge`` the newest row seen, in Azurite's own answer."""
    fstore = FunctionStorage(config)
    keys = [server_key("hub", user) for user in ("ann", "ben", "cat")]
    for key in keys:
        fstore.write_status(Status(hub_id="hub", server_key=key, phase=Phase.RUNNING, generation=1))
        await asyncio.sleep(0.02)  # distinct stamps
    storage = HubStorage(config)
    everything = await storage.read_statuses("hub")
    assert sorted(everything.statuses) == sorted(keys) and everything.latest is not None
    assert storage.entities_read == 3
    ann = fstore.get_status("hub", keys[0])
    fstore.write_status(ann.with_event(Phase.STOPPED, "stopped"))
    changed = await storage.read_statuses("hub", changed_since=everything.latest)
    # ann, written since; cat, stamped exactly at the bound (ge); never ben
    assert sorted(changed.statuses) == sorted([keys[0], keys[2]])
    assert changed.statuses[keys[0]].phase is Phase.STOPPED and changed.latest > everything.latest
    assert storage.entities_read == 5
    assert (await storage.read_statuses("hub", changed_since=changed.latest)).statuses.keys() == {keys[0]}
    await storage.close()


def test_conditional_update_that_lost_a_race_conflicts(config):
    fstore = FunctionStorage(config)
    key = server_key("hub", "erin")
    fstore.write_status(Status(hub_id="hub", server_key=key, phase=Phase.PROVISIONING, generation=1))
    first = fstore.get_status("hub", key)
    second = fstore.get_status("hub", key)
    fstore.write_status(first.with_event(Phase.RUNNING, "winner"))
    with pytest.raises(StatusConflict):
        fstore.write_status(second.with_event(Phase.STOPPED, "loser"))
    assert fstore.get_status("hub", key).message == "winner"
    # creating an entity that already exists is a conflict too
    with pytest.raises(StatusConflict):
        fstore.write_status(Status(hub_id="hub", server_key=key, phase=Phase.QUEUED, generation=2))


async def test_clients_are_shared_per_loop_and_config(config):
    a = HubStorage.shared(config)
    assert HubStorage.shared(config) is a
    other = StorageConfig(queue_name=config.queue_name + "x", table_name=config.table_name,
                          connection_string=config.connection_string)
    assert HubStorage.shared(other) is not a
    await close_shared()


def test_clients_differ_between_loops(config):
    async def grab():
        s = HubStorage.shared(config)
        await close_shared()
        return s

    assert asyncio.run(grab()) is not asyncio.run(grab())


def test_storage_config_from_app_settings():
    cfg = StorageConfig.from_app_settings(
        {"AcaStorage__queueServiceUri": "https://a.queue", "AcaStorage__tableServiceUri": "https://a.table",
         "AcaStorage__clientId": "cid"}, "AcaStorage", "q", "t")
    assert cfg.queue_account_url == "https://a.queue" and cfg.client_id == "cid"
    with pytest.raises(ValueError, match="AcaStorage__queueServiceUri"):
        StorageConfig.from_app_settings({}, "AcaStorage", "q", "t")
    secret = StorageConfig(connection_string="AccountKey=supersecret")
    assert "supersecret" not in repr(secret)


def lifetime(message) -> float:
    return (message.expires_on - message.inserted_on).total_seconds()


async def test_lifecycle_messages_live_no_longer_than_their_seal(config):
    """L4: a sealed message is refused past its maximum age, so the queue drops it soon after, token and all."""
    hub = HubStorage(config)
    try:
        await hub.send(Sealer(generate_key(), max_age=900).seal(start_request()), time_to_live=900 + 60)
    finally:
        await hub.close()
    functions = FunctionStorage(config)
    follow_up = FollowUp.first(start_request(), Step.CREATE, since=0.0, delay=1, deadline=0.0)
    FollowUps(Sealer(generate_key(), max_age=900), functions).send(follow_up)
    queue = QueueClient.from_connection_string(config.connection_string, config.queue_name)
    with queue:
        messages = wait_until(lambda: list(queue.peek_messages(max_messages=2)) if len(
            list(queue.peek_messages(max_messages=2))) == 2 else None, timeout=15, what="both messages to show")
    # the hub's request: its maximum age and a minute; the follow-up: its delay too
    assert sorted(round(lifetime(m)) for m in messages) == [960, 961]
