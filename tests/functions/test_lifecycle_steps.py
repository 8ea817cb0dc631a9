"""Every step of the serverless lifecycle on its own: send, return, follow up.

A request invocation sends one ARM write and returns; follow-ups observe the
app in the shared listing. Each test delivers the messages one by one (real
status table in Azurite, scripted ARM) and checks what every step did.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
from fn_support import HUB, deliver, poison_bodies, request, settle, status_of

from acaspawner import wire
from acaspawner.contract import Op, Phase
from acaspawner.sealing import generate_key
from functions.arm import TerminalArmError, TransientArmError
from functions.followup import FollowUp, Step
from functions.lifecycle import Outcome, RetryLater, handle_message
from functions.listing import READS_PER_SECOND, AppListing
from functions.settings import Settings, SettingsError


def sent_follow_ups(deps) -> list[FollowUp]:
    """The follow-ups waiting on the queue (left there)."""
    return [FollowUp.from_dict(json.loads(deps.followup_sealer.open_bytes(wire.decode(body))))
            for body, _ in deps.follow_ups.queue.messages]


def test_a_start_sends_one_write_and_returns(make_deps):
    deps = make_deps(ACA_ARM_POLL_INTERVAL="3")
    start = request()
    assert handle_message(deps.sealer.seal(start), deps) is Outcome.ACCEPTED
    # one write, no wait; the listing (whose app has this name?) is shared by later starts
    assert deps.apps.calls == [("list", "*"), ("create", start.server_key)]
    other = request(user="bob")
    assert handle_message(deps.sealer.seal(other), deps) is Outcome.ACCEPTED
    assert deps.apps.calls[2:] == [("create", other.server_key)]
    status = status_of(deps, start)
    assert status.phase is Phase.PROVISIONING and status.step == "create"
    follow_up = sent_follow_ups(deps)[0]
    assert (follow_up.op, follow_up.step, follow_up.generation) == (Op.START, Step.CREATE, start.generation)
    assert follow_up.deadline == pytest.approx(start.created + deps.settings.spawn_deadline)
    assert follow_up.operation_url.startswith("https://arm.test/operations/")
    # no Retry-After from ARM: the configured interval
    assert deps.follow_ups.queue.messages[0][1] == 3


def test_the_first_look_waits_for_arms_retry_after_later_ones_the_interval(make_deps):
    deps = make_deps(ACA_ARM_POLL_INTERVAL="1.5")
    deps.apps.retry_after, deps.apps.hold = 7, True
    handle_message(deps.sealer.seal(request()), deps)
    assert deps.follow_ups.queue.messages[0][1] == 7
    handle_message(deps.follow_ups.queue.take()[0], deps)  # ARM still at it
    [(_, delay)] = deps.follow_ups.queue.messages
    assert delay == 2  # 1.5 s, in the whole seconds a queue message can stay invisible
    assert sent_follow_ups(deps)[0].delay == 1.5


def counting_status_reads(deps) -> list[str]:
    reads: list[str] = []
    original = deps.storage.get_status

    def get_status(hub_id, key):
        reads.append(key)
        return original(hub_id, key)

    deps.storage.get_status = get_status
    return reads


def test_a_follow_up_while_arm_is_busy_comes_back_later_without_table_traffic(deps):
    start = request()
    deps.apps.hold = True
    handle_message(deps.sealer.seal(start), deps)
    before = status_of(deps, start)
    [first] = sent_follow_ups(deps)
    reads = counting_status_reads(deps)
    assert handle_message(deps.follow_ups.queue.take()[0], deps) is Outcome.PENDING
    assert reads == [] and status_of(deps, start).etag == before.etag  # waiting costs no table read or write
    [second] = sent_follow_ups(deps)
    assert second.attempt == 2 and second.since > first.since and second.step is Step.CREATE
    # the first look waits for ARM's Retry-After (none here: the interval); later looks every interval
    assert second.delay == deps.settings.arm_poll_interval
    deps.apps.hold = False
    assert [o for o in settle(deps) if o is not Outcome.PENDING] == [Outcome.APPLIED]
    assert status_of(deps, start).phase is Phase.RUNNING


def test_duplicate_follow_ups_record_running_once(deps):
    start = request()
    handle_message(deps.sealer.seal(start), deps)
    body = deps.follow_ups.queue.take()[0]
    assert handle_message(body, deps) is Outcome.APPLIED
    running = status_of(deps, start)
    assert handle_message(body, deps) is Outcome.IGNORED
    assert status_of(deps, start).etag == running.etag
    assert deps.apps.count("create") == 1


def test_a_duplicate_start_after_arm_accepted_only_follows_again(deps):
    start = request()
    deps.apps.hold = True
    sealed = deps.sealer.seal(start)
    assert handle_message(sealed, deps) is Outcome.ACCEPTED
    assert handle_message(sealed, deps, dequeue_count=2) is Outcome.DUPLICATE
    assert deps.apps.count("create") == 1  # not sent twice
    assert len(sent_follow_ups(deps)) == 2  # a lost follow-up is replaced
    deps.apps.hold = False
    assert Outcome.APPLIED in settle(deps)
    assert status_of(deps, start).phase is Phase.RUNNING


def test_a_follow_up_for_a_superseded_generation_is_ignored(deps):
    old = request()
    handle_message(deps.sealer.seal(old), deps)
    stale = deps.follow_ups.queue.take()
    newer = request()
    assert deliver(deps, newer) is Outcome.APPLIED
    calls = len(deps.apps.calls)
    assert [handle_message(body, deps) for body in stale] == [Outcome.IGNORED]
    assert len(deps.apps.calls) == calls  # no ARM call for it
    status = status_of(deps, newer)
    assert status.phase is Phase.RUNNING and status.generation == newer.generation


def test_a_stop_while_the_create_is_provisioning_ends_stopped_without_an_app(deps):
    start, stop = request(), request(Op.STOP)
    deps.apps.hold = True
    assert handle_message(deps.sealer.seal(start), deps) is Outcome.ACCEPTED
    assert handle_message(deps.sealer.seal(stop), deps) is Outcome.ACCEPTED  # the delete is on its way
    deps.apps.hold = False
    outcomes = settle(deps)
    assert Outcome.APPLIED in outcomes and Outcome.IGNORED in outcomes  # the stop's, the start's
    status = status_of(deps, stop)
    assert status.phase is Phase.STOPPED and status.generation == stop.generation
    assert deps.apps.apps == {}


def test_an_app_that_ends_failed_reports_arms_code_and_message(deps):
    deps.apps.fail_next = TerminalArmError("ContainerAppImageNotFound", "MANIFEST_UNKNOWN: example.org/notebook:1")
    start = request()
    assert deliver(deps, start) is Outcome.FAILED
    status = status_of(deps, start)
    assert status.phase is Phase.FAILED and status.error_code == "ContainerAppImageNotFound"
    assert status.message == "MANIFEST_UNKNOWN: example.org/notebook:1" and status.step == ""
    assert deps.apps.count("operation") == 1


def test_a_failed_app_without_an_operation_error_still_says_so(deps):
    deps.apps.fail_next = TerminalArmError("unused", "unused")
    start = request()
    handle_message(deps.sealer.seal(start), deps)
    deps.apps.operation_errors.clear()  # ARM's operation says nothing
    assert settle(deps) == [Outcome.FAILED]
    status = status_of(deps, start)
    assert status.error_code == "ContainerAppProvisioningFailed" and "Failed" in status.message


def test_a_spawn_past_its_deadline_fails_naming_the_step(make_deps):
    deps = make_deps(ACA_SPAWN_DEADLINE="30")
    start = replace(request(), created=time.time() - 31)  # asked 31 s ago
    deps.apps.hold = True
    handle_message(deps.sealer.seal(start), deps)
    assert settle(deps) == [Outcome.FAILED]
    status = status_of(deps, start)
    assert status.phase is Phase.FAILED and status.error_code == "DeadlineExceeded"
    assert "still provisioning" in status.message and start.server_key in status.message
    assert "InProgress" in status.message


def test_a_stop_follow_up_while_the_delete_runs_reads_no_status(deps):
    deliver(deps, request())
    deps.apps.hold = True
    stop = request(Op.STOP)
    assert handle_message(deps.sealer.seal(stop), deps) is Outcome.ACCEPTED
    reads = counting_status_reads(deps)
    assert handle_message(deps.follow_ups.queue.take()[0], deps) is Outcome.PENDING
    assert reads == []
    deps.apps.hold = False
    assert settle(deps) == [Outcome.APPLIED]
    assert status_of(deps, stop).phase is Phase.STOPPED and deps.apps.apps == {}


def test_a_stop_past_its_deadline_fails_naming_the_step(make_deps):
    deps = make_deps(ACA_SPAWN_DEADLINE="30")
    deliver(deps, request())
    deps.apps.hold = True
    stop = replace(request(Op.STOP), created=time.time() - 31)
    assert handle_message(deps.sealer.seal(stop), deps) is Outcome.ACCEPTED
    assert settle(deps) == [Outcome.FAILED]
    assert "still deleting" in status_of(deps, stop).message


def test_pending_follow_ups_share_one_listing_and_the_first_look_records_every_start_it_shows_running(deps):
    starts = [request(user=f"user{i}") for i in range(5)]
    deps.apps.hold = True
    for start in starts:
        handle_message(deps.sealer.seal(start), deps)
    deps.apps.hold = False
    bodies = deps.follow_ups.queue.take()
    reads_before = deps.apps.count("list") + deps.apps.count("get")
    # the first look sweeps the other four (functions.pending_looks); their own looks find them recorded
    assert [handle_message(body, deps) for body in bodies] == [Outcome.APPLIED] + [Outcome.IGNORED] * 4
    assert deps.follow_ups.queue.messages == []  # no chain goes on
    assert deps.apps.count("list") + deps.apps.count("get") - reads_before == 1
    assert all(status_of(deps, s).phase is Phase.RUNNING for s in starts)


def test_a_listing_is_fresh_for_the_poll_interval_or_as_long_as_its_pages_take_at_ten_reads_a_second():
    class Lister:
        def __init__(self, pages: int):
            self.count = pages

        def pages(self):
            for i in range(self.count):
                yield [{"name": f"jl-{i}", "tags": {}}]

    few, many = AppListing(Lister(1)), AppListing(Lister(20))
    assert few.freshness(1.0) == many.freshness(1.0) == 1.0  # none taken yet: counted as one page
    few.latest(since=time.time())
    assert len(many.latest(since=time.time())[1]) == 20  # every page's apps
    assert few.freshness(1.0) == 1.0 and few.freshness(0.05) == 0.1
    assert many.freshness(1.0) == 20 / READS_PER_SECOND == 2.0  # 2000 apps: no more than 10 ARM reads a second
    assert many.freshness(5.0) == 5.0


def test_the_listing_is_refreshed_for_a_follow_up_newer_than_it():
    class Lister:
        calls = 0

        def pages(self):
            Lister.calls += 1
            yield [{"name": "jl-a-1", "tags": {}}]

    listing = AppListing(Lister())
    assert listing.find("jl-a-1", since=time.time())["name"] == "jl-a-1"
    listing.find("jl-a-1", since=0)  # an older follow-up: the listing serves
    assert Lister.calls == 1
    listing.find("JL-A-1", since=time.time() + 0.001)  # written after the listing: look again
    assert Lister.calls == 2


def test_a_vanished_app_fails_the_spawn(deps):
    start = request()
    handle_message(deps.sealer.seal(start), deps)
    deps.apps.apps.clear()  # removed behind the functions' back
    assert settle(deps) == [Outcome.FAILED]
    status = status_of(deps, start)
    assert status.error_code == "ContainerAppNotFound"
    assert deps.apps.count("get") == 1  # the listing did not show it: asked the app itself once


def test_an_app_taken_over_by_a_newer_generation_is_left_alone(deps):
    start = request()
    handle_message(deps.sealer.seal(start), deps)
    deps.apps.apps[start.server_key]["tags"]["aca-generation"] = str(start.generation + 1)
    assert settle(deps) == [Outcome.IGNORED]
    assert start.server_key in deps.apps.apps


def test_a_listing_from_before_the_write_means_not_yet(deps):
    start = request()
    deps.apps.hold = True
    handle_message(deps.sealer.seal(start), deps)
    app = deps.apps.apps[start.server_key]
    app["tags"]["aca-generation"] = str(start.generation - 1)  # what an older state of the app says
    app["properties"]["provisioningState"] = "Succeeded"
    body = deps.follow_ups.queue.take()[0]
    assert handle_message(body, deps) is Outcome.PENDING
    assert status_of(deps, start).phase is Phase.PROVISIONING
    [again] = sent_follow_ups(deps)
    assert again.attempt == 2


def test_a_transient_listing_error_is_redelivered(deps):
    start = request()
    handle_message(deps.sealer.seal(start), deps)
    body = deps.follow_ups.queue.take()[0]
    deps.apps.failures.append(TransientArmError("TooManyRequests", "throttled", 429))
    with pytest.raises(RetryLater):
        handle_message(body, deps)
    assert handle_message(body, deps, dequeue_count=2) is Outcome.APPLIED


def test_a_follow_up_naming_another_hubs_server_is_poisoned(deps):
    start = request()
    handle_message(deps.sealer.seal(start), deps)
    [follow_up] = sent_follow_ups(deps)
    foreign = replace(follow_up, hub_id="other-hub")
    assert handle_message(deps.followup_sealer.seal_bytes(foreign.to_json().encode()), deps) is Outcome.POISONED
    assert deps.storage.get_status("other-hub", start.server_key) is None
    assert status_of(deps, start).hub_id == HUB


def test_what_users_see_of_an_arm_error_names_no_subscription_or_resource(deps, caplog):
    sub_id = "3f2b6a1c-0d4e-4b7a-9c1e-2a5d8f0b7e61"
    resource = f"/subscriptions/{sub_id}/resourceGroups/rg-users/providers/Microsoft.App/containerApps/x"
    deps.apps.fail_next = TerminalArmError(
        "ContainerAppOperationError", f"Failed to provision revision for container app '{resource}': image pull failed")
    start = request()
    assert deliver(deps, start) is Outcome.FAILED
    status = status_of(deps, start)
    assert status.error_code == "ContainerAppOperationError" and "image pull failed" in status.message
    assert sub_id not in status.message and "/subscriptions/" not in status.message
    assert sub_id in caplog.text  # the functions' log keeps ARM's full text for the operator


def test_while_arm_works_a_progress_note_is_written_every_interval(deps):
    start = request()
    deps.apps.hold = True
    handle_message(deps.sealer.seal(start), deps)
    [first] = [FollowUp.from_dict(json.loads(deps.followup_sealer.open_bytes(b))) for b in deps.follow_ups.queue.take()]
    quiet = replace(first, noted=time.time() - 31)  # the chain last wrote a note 31 s ago
    assert handle_message(deps.followup_sealer.seal_bytes(quiet.to_json().encode()), deps) is Outcome.PENDING
    status = status_of(deps, start)
    assert status.phase is Phase.PROVISIONING and "still provisioning" in status.message
    [after] = sent_follow_ups(deps)
    assert after.noted > quiet.noted + 30  # the next note is due an interval from now


# -- H1: a hub, or whoever holds its sealing keys, cannot forge the functions' follow-ups -------------------


def test_a_follow_up_sealed_with_a_hub_key_is_poisoned_and_does_nothing(make_deps):
    """The review's proof of concept: forged follow-ups that asked for an ARM read elsewhere and home deletions."""
    deps = make_deps(ACA_HOME_DELETE_ON_DELETE="true")
    start = request()
    deliver(deps, start)
    calls_before = list(deps.apps.calls)
    forged_read = FollowUp.first(start, Step.CREATE, since=time.time(), delay=1, deadline=time.time() + 60,
                                 operation_url="https://attacker.example/collect")
    forged_delete = FollowUp.first(request(Op.DELETE), Step.DELETE, since=time.time(), delay=1,
                                   deadline=time.time() + 60, remove_home=True)
    for forged in (forged_read, forged_delete):
        assert handle_message(deps.sealer.seal_bytes(forged.to_json().encode()), deps) is Outcome.POISONED
    assert deps.apps.calls == calls_before  # no ARM call at all
    assert [c for c in deps.homes.folders.calls if c[0] == "delete"] == []
    assert len(poison_bodies(deps)) == 2
    assert status_of(deps, start).phase is Phase.RUNNING


def test_a_request_sealed_with_the_functions_key_is_poisoned(deps):
    start = request()
    assert handle_message(deps.followup_sealer.seal(start), deps) is Outcome.POISONED
    assert deps.apps.calls == [] and status_of(deps, start) is None


def test_the_follow_up_keys_are_the_functions_own(env):
    shared = env["ACA_SEALING_KEYS"]
    with pytest.raises(SettingsError, match="must not share a key"):
        Settings.from_environ({**env, "ACA_FOLLOWUP_KEYS": f"{generate_key()}, {shared}"})
    with pytest.raises(SettingsError, match="ACA_FOLLOWUP_KEYS"):
        Settings.from_environ({k: v for k, v in env.items() if k != "ACA_FOLLOWUP_KEYS"})
