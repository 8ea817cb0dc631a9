"""One id per request: the hub's request id reaches ARM with every write it causes, follow-ups included."""

from __future__ import annotations

import dataclasses
import uuid

from fn_support import deliver, request

from acaspawner.contract import Op, request_id, shown_request_id


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
