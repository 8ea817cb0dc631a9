"""One id per request: the hub's request id reaches ARM with every write it causes, follow-ups included."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from fn_support import deliver, request, settle

from acaspawner.contract import Op, request_id, shown_request_id
from functions.arm import TransientArmError
from functions.lifecycle import handle_message
from functions.rules import RetryLater


def writes(deps) -> list[tuple[str, str]]:
    return [(what, rid) for what, _, rid in deps.apps.request_ids]


def test_a_start_and_a_stop_send_their_own_request_ids_to_arm(deps):
    start = request(Op.START, user="ann")
    deliver(deps, start)
    stop = request(Op.STOP, user="ann")
    deliver(deps, stop)
    assert writes(deps) == [("create", start.request_id), ("delete", stop.request_id)]
    assert str(uuid.UUID(start.request_id)) == start.request_id != stop.request_id


def test_a_parked_servers_start_sent_by_a_follow_up_carries_the_starts_id(make_deps):
    deps = make_deps(ACA_STOP_MODE="stop")
    deliver(deps, request(Op.START, user="ann"))
    deliver(deps, request(Op.STOP, user="ann"))
    again = request(Op.START, user="ann")
    deliver(deps, again)
    assert writes(deps)[-2:] == [("create", again.request_id), ("start", again.request_id)]


def test_a_correlation_id_that_is_no_guid_goes_nowhere_and_is_logged_escaped(deps):
    odd = dataclasses.replace(request(Op.START, user="ann"), correlation_id="x\nFAKE LOG LINE")
    assert odd.request_id == request_id(odd.correlation_id) == ""
    deliver(deps, odd)
    assert writes(deps) == [("create", "")]  # ARM gets the SDK's own id
    assert "\n" not in repr(odd) and shown_request_id(odd.correlation_id) == repr("x\nFAKE LOG LINE")


def test_an_overtaken_starts_follow_up_removes_its_app_under_the_starts_request_id(deps):
    """The start's create is in flight when its stop comes, and the stop's delete fails for now: the start's
    follow-up finds itself overtaken and removes the app it made, naming the start's request to ARM."""
    start, stop = request(Op.START, user="ann"), request(Op.STOP, user="ann")
    handle_message(deps.sealer.seal(start), deps, 1)  # the create is sent; its follow-up waits on the queue
    deps.apps.failures_for["delete"] = [TransientArmError("InternalServerError", "try again", 500)]
    with pytest.raises(RetryLater):  # the stop is recorded; the host hands it over again later
        handle_message(deps.sealer.seal(stop), deps, 1)
    settle(deps)  # the start's follow-up
    assert writes(deps)[-1] == ("delete", start.request_id), writes(deps)
    assert deps.apps.apps[start.server_key]["properties"]["provisioningState"] == "Deleting"
