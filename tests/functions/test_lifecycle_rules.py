"""The lifecycle handler's rules against a real status table (Azurite) and a scripted ARM.

The scripted ARM (``FakeApps``) lets a test deliver a stop in the middle of a
create, hold an operation in flight, or fail a call, at an exact point; the
follow-ups the functions send are kept by a ``RecordingQueue`` and delivered
by the test (``settle``), so every step is visible. The emulator tests repeat
the main paths against the real SDK and queue.
"""

from __future__ import annotations

import base64
import json
import logging
import threading

import pytest
from fn_support import HUB, TOKEN, deliver, poison_bodies, request, settle, status_of

from acaspawner import wire
from acaspawner.contract import SCHEMA_VERSION, Op, Phase, Request
from acaspawner.naming import home_folder
from acaspawner.sealing import Sealer, generate_key
from functions.app_body import app_tags
from functions.arm import TerminalArmError, TransientArmError
from functions.lifecycle import Outcome, RetryLater, handle_message


def test_start_then_stop(deps):
    start = request(Op.START)
    assert deliver(deps, start) is Outcome.APPLIED
    status = status_of(deps, start)
    assert status.phase is Phase.RUNNING and status.generation == start.generation
    assert status.url == f"http://{start.server_key}.internal.env.example"
    assert [e["phase"] for e in status.events] == ["provisioning", "provisioning", "running"]
    assert "Azure is provisioning" in status.events[1]["message"]
    assert status.user == "alice" and status.error_code == "" and status.step == ""
    assert deps.homes.folders.calls == [("ensure", home_folder("alice"))]  # before the app exists

    stop = request(Op.STOP)
    assert deliver(deps, stop) is Outcome.APPLIED
    status = status_of(deps, stop)
    assert status.phase is Phase.STOPPED and status.url == "" and status.generation == stop.generation
    # a new generation starts afresh
    assert [e["phase"] for e in status.events] == ["stopping", "stopping", "stopped"]
    assert deps.apps.apps == {}


def test_duplicate_start_creates_once(deps):
    start = request()
    sealed = deps.sealer.seal(start)
    assert deliver(deps, sealed) is Outcome.APPLIED
    written = status_of(deps, start)
    assert deliver(deps, sealed, dequeue_count=2) is Outcome.DUPLICATE
    assert deps.apps.count("create") == 1
    assert status_of(deps, start).etag == written.etag  # nothing rewritten


def test_duplicate_start_recreates_a_vanished_app(deps):
    start = request()
    deliver(deps, start)
    deps.apps.apps.clear()  # removed behind the functions' back
    assert deliver(deps, start) is Outcome.APPLIED
    assert deps.apps.count("create") == 2 and start.server_key in deps.apps.apps


def test_stop_before_start_of_the_same_generation(deps):
    start = request(Op.START)
    stop = request(Op.STOP, generation=start.generation)
    assert deliver(deps, stop) is Outcome.APPLIED
    assert deliver(deps, start) is Outcome.IGNORED
    assert status_of(deps, start).phase is Phase.STOPPED
    assert deps.apps.count("create") == 0 and deps.apps.apps == {}


def test_an_older_start_after_a_newer_stop_is_ignored(deps):
    start = request(Op.START)
    stop = request(Op.STOP)
    assert stop.generation > start.generation
    deliver(deps, stop)
    assert deliver(deps, start) is Outcome.IGNORED
    assert deps.apps.count("create") == 0
    assert status_of(deps, start).generation == stop.generation


def test_an_older_stop_after_a_newer_start_is_ignored(deps):
    stop = request(Op.STOP)
    start = request(Op.START)
    deliver(deps, start)
    assert deliver(deps, stop) is Outcome.IGNORED
    assert status_of(deps, start).phase is Phase.RUNNING and start.server_key in deps.apps.apps


def test_a_stop_for_a_server_never_started_leaves_a_tombstone(deps):
    stop = request(Op.STOP)
    assert deliver(deps, stop) is Outcome.APPLIED
    status = status_of(deps, stop)
    assert status.phase is Phase.STOPPED and status.generation == stop.generation
    assert deps.apps.count("delete") == 0  # there was no app to delete
    assert deliver(deps, stop) is Outcome.DUPLICATE


def test_a_stop_deletes_a_leftover_app_without_an_entity(deps):
    start = request()
    # one of this hub's apps (its tags say whose), whose status row was lost
    deps.apps.apps[start.server_key] = {"name": start.server_key, "tags": app_tags(start),
                                        "properties": {"provisioningState": "Succeeded"}}
    deliver(deps, request(Op.STOP))
    assert deps.apps.apps == {}


def test_a_stop_racing_a_start_ends_stopped_without_an_app(deps):
    """The stop runs to completion while the start's create is in flight: the start must clean up."""
    start = request(Op.START)
    stop = request(Op.STOP)
    outcomes = []
    deps.apps.before_create = lambda: outcomes.append(deliver(deps, stop))
    assert deliver(deps, start) is Outcome.IGNORED
    assert outcomes == [Outcome.APPLIED]
    assert status_of(deps, start).phase is Phase.STOPPED
    assert deps.apps.apps == {}  # the create landed after the stop's delete, and was undone


def test_a_stop_racing_a_start_that_is_redelivered_still_cleans_up(deps):
    start = request(Op.START)
    stop = request(Op.STOP)
    deps.apps.before_create = lambda: deliver(deps, stop)
    # the clean-up delete fails transiently: the start is redelivered, and the redelivery removes the app
    deps.apps.after_create = lambda: deps.apps.failures.extend([TransientArmError("Throttled", "429")])
    with pytest.raises(RetryLater):
        deliver(deps, start)
    assert start.server_key in deps.apps.apps
    assert deliver(deps, start, dequeue_count=2) is Outcome.IGNORED
    assert deps.apps.apps == {}


def test_a_newer_start_keeps_its_app_from_an_older_stop(deps):
    """An older stop still acting must not delete the app a newer start created."""
    stop = request(Op.STOP)
    start = request(Op.START)
    # the stop claims first, then the newer start runs completely before the stop's delete
    original_get = deps.apps.get

    def get_after_start(name):
        deps.apps.get = original_get
        deliver(deps, start)
        return original_get(name)

    deps.apps.get = get_after_start
    assert deliver(deps, stop) is Outcome.IGNORED
    assert start.server_key in deps.apps.apps
    status = status_of(deps, start)
    assert status.phase is Phase.RUNNING and status.generation == start.generation


def test_concurrent_duplicates_make_one_running_server(deps):
    start = request()
    sealed = deps.sealer.seal(start)
    barrier = threading.Barrier(3)
    outcomes = []

    def run():
        barrier.wait()
        outcomes.append(handle_message(sealed, deps))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Outcome.ACCEPTED in outcomes
    assert set(outcomes) <= {Outcome.ACCEPTED, Outcome.DUPLICATE}
    assert Outcome.APPLIED in settle(deps)
    assert list(deps.apps.apps) == [start.server_key]
    assert status_of(deps, start).phase is Phase.RUNNING


def test_terminal_arm_error_fails_at_once(deps):
    deps.apps.failures_for["create"] = [TerminalArmError("ContainerAppInvalidResourceTotal", "cpu 0.5 and 3Gi do not pair")]
    start = request()
    assert deliver(deps, start) is Outcome.FAILED
    status = status_of(deps, start)
    assert status.phase is Phase.FAILED
    assert status.error_code == "ContainerAppInvalidResourceTotal"
    assert status.message == "cpu 0.5 and 3Gi do not pair"
    assert deps.apps.count("create") == 1
    # a redelivery of the same start does not try again
    assert deliver(deps, start, dequeue_count=2) is Outcome.DUPLICATE
    assert deps.apps.count("create") == 1


def test_transient_errors_are_redelivered_then_fail_on_the_last_delivery(deps):
    start = request()
    for attempt in range(1, 5):
        deps.apps.failures.append(TransientArmError("InternalServerError", "try again", 500))
        with pytest.raises(RetryLater):
            deliver(deps, start, dequeue_count=attempt)
        status = status_of(deps, start)
        assert status.phase is Phase.PROVISIONING
        assert "retrying" in status.message
    deps.apps.failures.append(TransientArmError("InternalServerError", "still broken", 500))
    assert deliver(deps, start, dequeue_count=5) is Outcome.FAILED
    status = status_of(deps, start)
    assert status.phase is Phase.FAILED and status.error_code == "InternalServerError"
    assert "gave up after 5 attempts" in status.message and "still broken" in status.message


def test_a_transient_error_then_success(deps):
    start = request()
    deps.apps.failures.append(TransientArmError("TooManyRequests", "throttled", 429))
    with pytest.raises(RetryLater):
        deliver(deps, start)
    assert deliver(deps, start, dequeue_count=2) is Outcome.APPLIED
    status = status_of(deps, start)
    assert status.phase is Phase.RUNNING
    assert "attempt 2 of 5" in status.events[-3]["message"]


@pytest.mark.parametrize("changes, words", [
    ({"image": "docker.io/evil/miner:latest"}, "not allowed"),
    ({"cpu": 16.0}, "cpu"),
    ({"memory": "64Gi"}, "memory"),
])
def test_policy_violations_fail_without_arm(deps, changes, words):
    start = request(**changes)
    assert deliver(deps, start) is Outcome.REJECTED
    status = status_of(deps, start)
    assert status.phase is Phase.FAILED and status.error_code == "PolicyViolation" and words in status.message
    assert deps.apps.calls == [] and deps.homes.folders.calls == []


def test_a_request_for_another_hub_is_poisoned(deps):
    foreign = request(hub_id="other-hub")
    assert deliver(deps, foreign) is Outcome.POISONED
    assert deps.apps.calls == []
    assert deps.storage.get_status("other-hub", foreign.server_key) is None
    assert len(poison_bodies(deps)) == 1


def test_untrusted_messages_are_poisoned_as_the_host_would(deps):
    start = request()
    sealed = deps.sealer.seal(start)
    kid, _, token = sealed.partition(b".")
    tampered = kid + b"." + token[:-8] + (b"A" * 8 if not token.endswith(b"A" * 8) else b"B" * 8)
    unknown_key = Sealer(generate_key()).seal(start)
    forged = b"not a sealed request at all"
    for body in (tampered, unknown_key, forged, kid + b".", b""):
        assert handle_message(body, deps) is Outcome.POISONED
    assert deps.apps.calls == []
    assert status_of(deps, start) is None  # nothing identifies the server of an untrusted message
    assert poison_bodies(deps) == [wire.encode(b) for b in (tampered, unknown_key, forged, kid + b".", b"")]


def test_an_expired_request_is_poisoned_and_fails_its_server(deps):
    start = request()
    old = deps.sealer.seal(start, now=start.created - 3600)
    assert handle_message(old, deps) is Outcome.POISONED
    assert deps.apps.calls == []
    status = status_of(deps, start)
    assert status.phase is Phase.FAILED and status.error_code == "RequestExpired"


def test_an_unknown_schema_version_is_poisoned_and_fails_its_server(deps):
    start = request()
    data = json.loads(start.to_json())
    data["schema"] = SCHEMA_VERSION + 1
    fernet_token = deps.sealer.seal(start).partition(b".")[2]  # only to reuse the key id format
    assert fernet_token
    from cryptography.fernet import Fernet

    from acaspawner.sealing import key_id

    key = deps.settings.sealing_keys[0]
    body = key_id(key).encode() + b"." + Fernet(key.encode()).encrypt(json.dumps(data).encode())
    assert handle_message(body, deps) is Outcome.POISONED
    status = status_of(deps, start)
    assert status.phase is Phase.FAILED and status.error_code == "InvalidRequest"
    assert "schema version" in status.message
    assert deps.apps.calls == []


def delete_with_home() -> Request:
    """A delete naming the home folder it may remove (the volumes of the spec the server ran with)."""
    return Request(op=Op.DELETE, hub_id=HUB, server_key=request().server_key, user="alice", server_name="",
                   generation=request().generation, spec=request().spec)


def test_home_folder_is_deleted_only_when_configured(make_deps):
    keep = make_deps()
    deliver(keep, request(Op.START))
    deliver(keep, delete_with_home())
    assert [c for c in keep.homes.folders.calls if c[0] == "delete"] == []

    remove = make_deps(ACA_HOME_DELETE_ON_DELETE="true")
    deliver(remove, request(Op.START))
    deliver(remove, request(Op.DELETE))  # no spec: no folder named, nothing removed
    assert [c for c in remove.homes.folders.calls if c[0] == "delete"] == []
    final = delete_with_home()
    assert deliver(remove, final) is Outcome.APPLIED
    assert ("delete", home_folder("alice")) in remove.homes.folders.calls
    status = status_of(remove, final)
    assert status.phase is Phase.STOPPED and status.message == "server deleted"
    assert remove.apps.apps == {}


def test_stop_mode_stop_keeps_the_app_and_restarts_it(make_deps):
    deps = make_deps(ACA_STOP_MODE="stop")
    deliver(deps, request(Op.START))
    deliver(deps, request(Op.STOP))
    key = request().server_key
    assert deps.apps.apps[key]["properties"]["runningStatus"] == "Stopped"
    assert deps.apps.count("delete") == 0
    # the PUT leaves the parked app stopped; its follow-up starts it, and the next one sees it run
    restart = request(Op.START)
    assert deliver(deps, restart) is Outcome.APPLIED
    assert deps.apps.count("start") == 1
    assert deps.apps.apps[key]["properties"]["runningStatus"] == "Running"
    assert status_of(deps, restart).phase is Phase.RUNNING
    # a delete removes the app even in stop mode
    deliver(deps, request(Op.DELETE))
    assert deps.apps.apps == {}


def test_the_token_never_reaches_entities_logs_or_poison(deps, caplog):
    caplog.set_level(logging.DEBUG)
    start = request()
    deliver(deps, start)
    deps.apps.failures.append(TerminalArmError("Bad", "refused"))
    deliver(deps, request())
    deliver(deps, request(image="docker.io/evil/x"))
    handle_message(deps.sealer.seal(start, now=start.created - 3600), deps)
    deliver(deps, request(Op.STOP))
    entities = list(deps.storage.table.list_entities())
    assert entities
    assert TOKEN not in json.dumps([dict(e) for e in entities], default=str)
    assert TOKEN not in caplog.text
    poisoned = poison_bodies(deps)
    assert poisoned  # the expired start is there (sealed), so the check below has something to look at
    for body in poisoned:
        assert TOKEN.encode() not in base64.b64decode(body)
