"""A key names one server: what the table or ARM records for another server under it is never touched.

Keys carry 65 bits of hash, so nobody can search for a colliding server name;
these tests build the collision by hand (another user's row and app under a
requester's own key) and check that the functions leave both alone.
"""

from __future__ import annotations

from fn_support import HUB, deliver, request, status_of

from acaspawner.contract import Op, Phase, Request, Status
from acaspawner.naming import legacy_server_key
from functions.app_body import app_tags
from functions.lifecycle import Outcome, handle_message
from functions.policy import check_request, key_belongs_to


def victims_server_under(deps, key: str) -> tuple[Status, dict]:
    """Another user's running server recorded under ``key``: its status row and its app."""
    victim = request(user="victim")
    row = deps.storage.write_status(Status(hub_id=HUB, server_key=key, phase=Phase.RUNNING,
                                           generation=victim.generation, user="victim", url="http://victim-app"))
    app = {"name": key, "tags": app_tags(victim), "properties": {"provisioningState": "Succeeded"}}
    deps.apps.apps[key] = app
    return row, app


def test_a_start_under_a_key_whose_row_is_another_servers_leaves_row_and_app(deps):
    start = request(user="mallory")
    row, app = victims_server_under(deps, start.server_key)
    assert handle_message(deps.sealer.seal(start), deps) is Outcome.CONFLICT
    assert status_of(deps, start).etag == row.etag  # not rewritten
    assert deps.apps.apps[start.server_key] == app and deps.apps.count("create") == 0
    assert deps.follow_ups.queue.messages == []


def test_a_stop_under_a_key_whose_row_is_another_servers_deletes_nothing(deps):
    stop = request(Op.STOP, user="mallory")
    row, app = victims_server_under(deps, stop.server_key)
    for op in (Op.STOP, Op.DELETE):
        assert handle_message(deps.sealer.seal(request(op, user="mallory")), deps) is Outcome.CONFLICT
    assert status_of(deps, stop).etag == row.etag
    assert deps.apps.apps[stop.server_key] == app and deps.apps.count("delete") == 0


def test_a_start_finding_another_servers_app_fails_its_own_server_and_leaves_the_app(deps):
    start = request(user="mallory")
    _, app = victims_server_under(deps, start.server_key)
    deps.storage.table.delete_entity(HUB, start.server_key)  # the row is gone, the app is not
    assert deliver(deps, start) is Outcome.FAILED
    status = status_of(deps, start)
    assert (status.user, status.phase, status.error_code) == ("mallory", Phase.FAILED, "ServerNameTaken")
    assert deps.apps.apps[start.server_key] == app and deps.apps.count("create") == 0


def test_a_stop_leaves_another_servers_app_and_records_its_own_server_stopped(deps):
    stop = request(Op.STOP, user="mallory")
    _, app = victims_server_under(deps, stop.server_key)
    deps.storage.table.delete_entity(HUB, stop.server_key)
    assert deliver(deps, stop) is Outcome.APPLIED
    assert status_of(deps, stop).phase is Phase.STOPPED
    assert deps.apps.apps[stop.server_key] == app and deps.apps.count("delete") == 0


def test_a_follow_up_whose_row_was_taken_over_by_another_server_does_nothing(deps):
    start = request(user="mallory")
    deps.apps.hold = True
    handle_message(deps.sealer.seal(start), deps)
    follow_up = deps.follow_ups.queue.take()[0]
    deps.apps.hold = False
    deps.storage.table.delete_entity(HUB, start.server_key)
    row, _ = victims_server_under(deps, start.server_key)
    assert handle_message(follow_up, deps) is Outcome.CONFLICT
    assert status_of(deps, start).etag == row.etag


def test_a_key_that_is_not_its_users_is_poisoned_without_touching_the_row_it_names(deps):
    victim_key = request(user="victim").server_key
    row, app = victims_server_under(deps, victim_key)
    forged = Request(op=Op.START, hub_id=HUB, server_key=victim_key, user="mallory", server_name="",
                     generation=row.generation + 1, spec=request().spec)
    assert handle_message(deps.sealer.seal(forged), deps) is Outcome.POISONED
    assert deps.storage.get_status(HUB, victim_key).etag == row.etag
    assert deps.apps.apps[victim_key] == app and deps.apps.calls == []


def test_servers_recorded_under_a_legacy_key_keep_working(settings):
    legacy = Request(op=Op.STOP, hub_id=settings.hub_id, server_key=legacy_server_key(settings.hub_id, "alice"),
                     user="alice", server_name="", generation=1)
    assert key_belongs_to(legacy)
    check_request(legacy, settings)  # no error
    other = Request(op=Op.STOP, hub_id=settings.hub_id, server_key=legacy_server_key(settings.hub_id, "bob"),
                    user="alice", server_name="", generation=1)
    assert not key_belongs_to(other)
