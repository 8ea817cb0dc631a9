import json

import pytest

from acaspawner.contract import (
    SCHEMA_VERSION,
    ContractError,
    Op,
    Phase,
    Request,
    ServerSpec,
    Status,
    UnknownSchemaVersion,
    Volume,
)
from acaspawner.naming import server_key

KEY = server_key("hub", "alice")


def full_spec() -> ServerSpec:
    return ServerSpec(
        image="quay.io/jupyter/base-notebook:2025-01-01",
        cpu=1.0,
        memory="2Gi",
        target_port=8888,
        command=["jupyterhub-singleuser"],
        args=["--ServerApp.allow_origin=https://hub.example.org"],
        env={"JUPYTERHUB_USER": "alice"},
        secret_env={"JUPYTERHUB_API_TOKEN": "secret-token"},
        volumes=[Volume(name="home", storage_name="homes", mount_path="/home/jovyan", sub_path="alice")],
        workload_profile="Consumption",
    )


@pytest.mark.parametrize("op", list(Op))
def test_request_round_trip(op):
    spec = full_spec() if op is Op.START else None
    request = Request(op=op, hub_id="hub", server_key=KEY, user="alice", server_name="", generation=7, spec=spec)
    again = Request.from_json(request.to_json())
    assert again == request
    assert again.op is op


@pytest.mark.parametrize("phase", list(Phase))
def test_status_round_trip_through_table_entity(phase):
    status = Status(hub_id="hub", server_key=KEY, phase=phase, generation=1_700_000_000_123, user="alice",
                    url="http://a.internal", message="hello")
    status = status.with_event(phase, "a message", error_code="X" if phase is Phase.FAILED else "")
    again = Status.from_entity(status.to_entity())
    assert again == status


def test_unknown_schema_version_is_rejected():
    request = Request(op=Op.STOP, hub_id="hub", server_key=KEY, user="a", server_name="", generation=1)
    data = json.loads(request.to_json())
    data["schema"] = SCHEMA_VERSION + 1
    with pytest.raises(UnknownSchemaVersion, match="schema version"):
        Request.from_json(json.dumps(data))
    entity = Status(hub_id="hub", server_key=KEY, phase=Phase.RUNNING, generation=1).to_entity()
    entity["schema"] = 99
    with pytest.raises(UnknownSchemaVersion):
        Status.from_entity(entity)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"server_key": "Bad--Key"}, "server key"),
        ({"op": "explode"}, "invalid request"),
        ({"generation": -1}, "generation"),
        ({"hub_id": ""}, "hub id"),
        ({"spec": None, "op": "start"}, "needs a server spec"),
        ({"spec": {"image": ""}}, "image"),
        ({"spec": {"image": "x", "cpu": "lots"}}, "cpu"),
        ({"spec": {"image": "x", "target_port": 0}}, "target port"),
        ({"spec": {"image": "x", "surprise": 1}}, "invalid server spec"),
        ({"extra": 1}, "invalid request"),
    ],
)
def test_invalid_requests_are_rejected_clearly(change, message):
    request = Request(op=Op.START, hub_id="hub", server_key=KEY, user="a", server_name="", generation=1,
                      spec=full_spec())
    data = json.loads(request.to_json())
    data.update(change)
    with pytest.raises(ContractError, match=message):
        Request.from_json(json.dumps(data))


def test_garbage_is_a_contract_error():
    for garbage in [b"\xff\xfe", "[]", "not json", "null"]:
        with pytest.raises(ContractError):
            Request.from_json(garbage)


def test_reprs_hide_secret_values():
    request = Request(op=Op.START, hub_id="hub", server_key=KEY, user="a", server_name="", generation=1,
                      spec=full_spec())
    assert "secret-token" not in repr(request)
    assert "secret-token" not in repr(request.spec)


def test_events_are_bounded():
    status = Status(hub_id="hub", server_key=KEY, phase=Phase.QUEUED, generation=1)
    for i in range(50):
        status = status.with_event(Phase.PROVISIONING, f"step {i}")
    assert len(status.events) == 10
    assert status.events[-1]["message"] == "step 49"
