"""The warm pool without a running ARM: its profiles, a slot's app, the timer's decisions, binding and giving back.

ARM is :class:`FakeApps`; the rows are in Azurite. The same paths against the
ACA emulator and a real launcher are in ``test_warm_pool_stack.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from fn_support import HUB, TOKEN, deliver, request, status_of

from acaspawner.contract import Op, Phase
from acaspawner.naming import home_folder, legacy_home_folder
from functions.capacity import UserLimit
from functions.footprint import Footprint
from functions.lifecycle import Outcome
from functions.pool_profiles import parse_pool
from functions.pool_timer import LEASE_DEADLINE, WarmPool
from functions.reconcile_apps import AppsStep
from functions.reconcile_run import ReconcileOptions, ReconcileSummary
from functions.settings import Settings
from functions.warm_pool import (
    LAUNCHER_SOURCE,
    SLOT_DONE,
    SLOT_KEY_SECRET,
    SlotRows,
    build_slot_app,
    slot_folder,
)

PROFILE = {"name": "std", "image": "example.org/notebook:1", "cpu": 0.5, "memory": "1Gi", "size": 2}


def pool_json(**changes) -> str:
    return json.dumps([{**PROFILE, **changes}])


# -- profiles ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "complaint"), [
    ("{", "is not JSON"),
    ('{"name": "std"}', "JSON list"),
    (json.dumps([{"name": "std"}]), "needs name, image, cpu, memory and size"),
    (pool_json(name="Std!"), "lower case"),
    (pool_json(size=-1), "size must be"),
    (pool_json(size=True), "size must be"),
    (pool_json(cpu="lots"), "cpu must be"),
    (pool_json(cpu=0), "cpu must be"),
    (pool_json(memory="1GB"), "memory must look like"),
    (pool_json(image=" "), "image must not be empty"),
    (pool_json(hours={"days": "mon-funday"}), "days must be"),
    (pool_json(hours={"days": ["mon", "someday"]}), "days must be"),
    (pool_json(hours={"from": "7:45"}), "both from and to"),
    (pool_json(hours={"from": "quarter to eight", "to": "17:00"}), "must look like 07:45"),
    (pool_json(hours={"timezone": "Mars/Olympus"}), "unknown timezone"),
    (pool_json(hours={"size_outside": "none"}), "size_outside"),
    (json.dumps([PROFILE, PROFILE]), "names a profile twice"),
])
def test_a_bad_pool_is_refused_with_what_is_wrong(raw, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse_pool(raw)


def test_a_bad_pool_stops_the_settings_with_its_name(env):
    with pytest.raises(ValueError, match="ACA_WARM_POOL entry 1: size must be"):
        Settings.from_environ({**env, "ACA_WARM_POOL": pool_json(size=5000)})


def test_a_pool_needs_the_home_share(env):
    env = {k: v for k, v in env.items() if not k.startswith("ACA_HOME_")}
    with pytest.raises(ValueError, match="ACA_WARM_POOL needs the home share"):
        Settings.from_environ({**env, "ACA_WARM_POOL": pool_json()})


def test_class_hours_follow_the_local_clock_across_daylight_saving():
    (profile,) = parse_pool(pool_json(size=40, hours={"days": "mon-fri", "from": "07:45", "to": "17:00",
                                                      "timezone": "Europe/Berlin", "size_outside": 1}))
    # 07:45 in Berlin is 06:45 UTC in winter and 05:45 UTC in summer
    assert profile.wanted(datetime(2026, 12, 7, 6, 44, tzinfo=UTC)) == 1
    assert profile.wanted(datetime(2026, 12, 7, 6, 45, tzinfo=UTC)) == 40
    assert profile.wanted(datetime(2026, 7, 6, 5, 45, tzinfo=UTC)) == 40
    assert profile.wanted(datetime(2026, 7, 6, 15, 0, tzinfo=UTC)) == 1  # 17:00 local: the end is outside
    assert profile.wanted(datetime(2026, 12, 5, 10, 0, tzinfo=UTC)) == 1  # a Saturday


def test_a_start_is_served_only_by_a_profile_of_its_image_and_size():
    (profile,) = parse_pool(pool_json())
    assert profile.serves("example.org/notebook:1", 0.5, "1Gi")
    assert profile.serves("example.org/notebook:1", 0.5, "1024Mi")
    assert not profile.serves("example.org/notebook:2", 0.5, "1Gi")
    assert not profile.serves("example.org/notebook:1", 1.0, "1Gi")


# -- a slot's app ------------------------------------------------------------------------------------------------

def test_a_slot_app_keeps_its_key_a_secret_and_mounts_only_its_own_folder(settings):
    (profile,) = parse_pool(pool_json())
    key = Fernet.generate_key().decode()
    body = build_slot_app("ws-abc", profile, settings, settings.environment_id, key, HUB)
    (container,) = body["properties"]["template"]["containers"]
    assert {"name": "ACA_SLOT_KEY", "secretRef": SLOT_KEY_SECRET} in container["env"]
    plain = json.dumps({k: v for k, v in body.items() if k != "properties"}) + json.dumps(container)
    assert key not in plain  # only in the app's secrets
    assert {"volumeName": "home", "mountPath": "/mnt/slot", "subPath": "slots/ws-abc"} in container["volumeMounts"]
    secrets = {s["name"]: s["value"] for s in body["properties"]["configuration"]["secrets"]}
    assert secrets[SLOT_KEY_SECRET] == key and secrets["slot-launcher"] == LAUNCHER_SOURCE.read_text()
    assert secrets["slot-claims"] == LAUNCHER_SOURCE.with_name("slot_claims.py").read_text()
    (launcher,) = [v for v in body["properties"]["template"]["volumes"] if v["name"] == "launcher"]
    assert launcher["secrets"] == [{"secretRef": "slot-launcher", "path": "slot_launcher.py"},
                                   {"secretRef": "slot-claims", "path": "slot_claims.py"}]
    assert body["properties"]["configuration"]["ingress"]["external"] is False
    assert container["image"] == profile.image and container["resources"] == {"cpu": 0.5, "memory": "1Gi"}


def test_slot_names_are_valid_app_names_no_server_has():
    from functions.warm_pool import new_slot_name
    names = {new_slot_name() for _ in range(200)}
    assert len(names) == 200
    assert all(re.fullmatch(r"ws-[a-z2-7]{16}", name) for name in names)


# -- the timer ---------------------------------------------------------------------------------------------------

@pytest.fixture
def pool_deps(make_deps):
    return make_deps(ACA_WARM_POOL=pool_json(), ACA_MAX_SERVERS_PER_USER="5")


def run_pool(deps, now: float | None = None):
    return WarmPool(deps, datetime.now(UTC).timestamp() if now is None else now).run()


def states(deps) -> dict[str, str]:
    return {s.name: s.state for s in SlotRows(deps.storage.table, HUB).all()}


def filled(deps) -> dict[str, str]:
    """Two runs: the first sends the creates, the second sees the apps running."""
    run_pool(deps)
    summary = run_pool(deps)
    assert summary.ready == {"std": 2} and len(summary.became_ready) == 2, summary
    return states(deps)


def test_the_timer_fills_the_pool_and_slots_become_ready_when_running(pool_deps):
    first = run_pool(pool_deps)
    assert len(first.created) == 2 and set(states(pool_deps).values()) == {"creating"}
    assert all(pool_deps.homes.folders.exists(slot_folder(name)) for name in first.created)
    second = run_pool(pool_deps)
    assert sorted(second.became_ready) == sorted(first.created) and not second.created
    assert set(states(pool_deps).values()) == {"ready"}
    third = run_pool(pool_deps)
    assert third.ready == {"std": 2} and not third.created and not third.retired


def test_a_ready_slot_whose_app_went_is_replaced(pool_deps):
    slots = filled(pool_deps)
    gone = sorted(slots)[0]
    del pool_deps.apps.apps[gone]
    summary = run_pool(pool_deps)
    assert summary.retired == [gone] and len(summary.created) == 1
    assert gone not in states(pool_deps) and not pool_deps.homes.folders.exists(slot_folder(gone))


def test_an_app_without_a_slot_row_is_deleted_and_extra_slots_retired(pool_deps):
    filled(pool_deps)
    orphan = sorted(states(pool_deps))[0]
    SlotRows(pool_deps.storage.table, HUB).delete(SlotRows(pool_deps.storage.table, HUB).get(orphan))
    run_pool(pool_deps)
    assert ("delete", orphan) in pool_deps.apps.calls
    # the admin shrinks the pool: the oldest ready slots beyond the size go
    smaller = replace(pool_deps, settings=replace(pool_deps.settings, warm_pool=parse_pool(pool_json(size=0))))
    summary = WarmPool(smaller, datetime.now(UTC).timestamp()).run()
    assert len(summary.retired) == 2 and states(pool_deps) == {}


def test_a_lease_never_bound_is_taken_back_with_the_home(pool_deps):
    filled(pool_deps)
    rows = SlotRows(pool_deps.storage.table, HUB)
    now = datetime.now(UTC).timestamp()
    slot = rows.lease("std", "hub-test-alice", "alice", 1, now)
    home = pool_deps.homes.prepare("alice", "hub-test-alice")
    pool_deps.homes.owners.mark_lent(home, "alice", slot.name, "hub-test-alice")
    pool_deps.homes.lend("alice", home, f"{slot_folder(slot.name)}/home")  # ... and the invocation died here
    summary = run_pool(pool_deps, now + LEASE_DEADLINE + 1)
    assert slot.name in summary.retired
    assert pool_deps.homes.folders.exists(home) and pool_deps.homes.owners.lent(home) == ("", "")
    assert not pool_deps.homes.folders.exists(slot_folder(slot.name))


def test_two_starts_never_lease_the_same_slot(pool_deps):
    filled(pool_deps)
    rows = SlotRows(pool_deps.storage.table, HUB)
    stale = rows.all()  # both starts read the same ready rows
    first = rows.lease("std", "k1", "alice", 1, 1.0)
    # the second start's conditional write on the row the first took fails; it takes the other
    with pytest.raises(Exception, match=first.name):
        rows.update(next(s for s in stale if s.name == first.name), 2.0, state="leased", server_key="k2")
    second = rows.lease("std", "k2", "bob", 1, 2.0)
    assert second is not None and second.name != first.name
    assert rows.lease("std", "k3", "carol", 1, 3.0) is None


# -- binding a start ---------------------------------------------------------------------------------------------

def test_a_start_is_bound_to_a_warm_server_and_its_stop_gives_the_home_back(pool_deps):
    filled(pool_deps)
    creates = pool_deps.apps.count("create")
    start = request(Op.START, user="alice")
    assert deliver(pool_deps, start) is Outcome.APPLIED
    status = status_of(pool_deps, start)
    assert status.phase is Phase.RUNNING and status.slot in pool_deps.apps.apps
    assert status.url.endswith(".internal.env.example") and TOKEN not in json.dumps(status.to_entity())
    assert pool_deps.apps.count("create") == creates  # no app made for the start
    home = home_folder("alice")  # a new user's
    assert not pool_deps.homes.folders.exists(home)
    assert pool_deps.homes.folders.exists(f"{slot_folder(status.slot)}/home")
    assert states(pool_deps)[status.slot] == "bound"
    # the hub can open the slot's key; it is not the hub's sealing key itself
    assert Fernet(pool_deps.sealer.open_bytes_of_any_age(status.claim_key))
    # the cores are held once, by the server now, not by its slot too
    held = {k for k, r in pool_deps.capacity.read().reservations.items() if r.held}
    assert held == {start.server_key} | (set(states(pool_deps)) - {status.slot})

    stop = request(Op.STOP, user="alice")
    assert deliver(pool_deps, stop) is Outcome.APPLIED
    assert status_of(pool_deps, stop).phase is Phase.STOPPED and status_of(pool_deps, stop).slot == ""
    assert status.slot not in pool_deps.apps.apps and status.slot not in states(pool_deps)
    assert pool_deps.homes.folders.exists(home), pool_deps.homes.folders.calls
    assert pool_deps.homes.owners.lent(home) == ("", "")
    assert not pool_deps.homes.folders.exists(slot_folder(status.slot))


def _etags(count) -> dict[int, str | None]:
    return {index: shard.etag for index, shard in count.shards.items()}


def test_the_slots_cores_are_handed_over_in_one_transaction_that_leaves_the_environments_count_alone(pool_deps):
    """No bind writes the environment's count row, which every start and every other bind would race for."""
    filled(pool_deps)
    ledger = pool_deps.capacity
    counts_before = {key: _etags(count) for key, count in ledger.read().counts.items()}
    start = request(Op.START, user="alice")
    assert deliver(pool_deps, start) is Outcome.APPLIED
    slot = status_of(pool_deps, start).slot
    after = ledger.read()
    assert {key: _etags(count) for key, count in after.counts.items()} == counts_before
    assert after.reservations[start.server_key].held and after.reservations[start.server_key].user == "alice"
    assert not after.reservations[slot].held and after.reservations[slot].generation == SLOT_DONE
    assert after.users["alice"].usage.servers == 1
    assert sum(r.held for r in after.reservations.values()) == sum(c.usage.servers for c in after.counts.values())
    # the host hands the start again: nothing moves twice
    deliver(pool_deps, start, dequeue_count=2)
    again = ledger.read()
    assert again.users["alice"].usage == after.users["alice"].usage
    assert {key: _etags(count) for key, count in again.counts.items()} == counts_before


def test_a_hand_over_that_does_not_apply_falls_back_to_reserve_then_release(pool_deps):
    filled(pool_deps)
    ledger = pool_deps.capacity
    slot = next(iter(states(pool_deps)))
    held = ledger.reservation(slot)
    other_size = Footprint(held.footprint.cpu * 2, held.footprint.memory_gib)
    assert ledger.take_over("k1", 5, other_size, slot, SLOT_DONE, "alice") is False
    assert ledger.take_over("k1", 5, held.footprint, "ws-no-such-slot", SLOT_DONE, "alice") is False
    assert ledger.reservation("k1") is None and ledger.reservation(slot).held  # nothing written


def test_a_hand_over_keeps_the_per_user_limits(make_deps):
    deps = make_deps(ACA_WARM_POOL=pool_json(), ACA_MAX_SERVERS_PER_USER="1")
    filled(deps)
    first, second = sorted(states(deps))
    fp = deps.capacity.reservation(first).footprint
    assert deps.capacity.take_over("k1", 5, fp, first, SLOT_DONE, "alice") is True
    with pytest.raises(UserLimit, match="ACA_MAX_SERVERS_PER_USER 1"):
        deps.capacity.take_over("k2", 6, fp, second, SLOT_DONE, "alice")
    assert deps.capacity.reservation(second).held and deps.capacity.reservation("k2") is None


def test_a_redelivered_start_goes_on_with_the_slot_it_leased(pool_deps):
    filled(pool_deps)
    start = request(Op.START, user="alice")
    assert deliver(pool_deps, start) is Outcome.APPLIED
    bound = status_of(pool_deps, start).slot
    moves = [c for c in pool_deps.homes.folders.calls if c[0] == "move"]
    # the host hands the same message again (the first invocation's completion was lost)
    deliver(pool_deps, start, dequeue_count=2)
    assert status_of(pool_deps, start).slot == bound
    assert [c for c in pool_deps.homes.folders.calls if c[0] == "move"] == moves
    assert list(states(pool_deps).values()).count("bound") == 1


def test_while_the_home_is_lent_another_server_of_the_user_fails_clearly(pool_deps):
    filled(pool_deps)
    assert deliver(pool_deps, request(Op.START, user="alice")) is Outcome.APPLIED
    other = request(Op.START, user="alice", server_name="gpu", image="example.org/notebook:2")
    assert deliver(pool_deps, other) is Outcome.FAILED
    failed = status_of(pool_deps, other)
    assert failed.error_code == "HomeInUse" and "stop that server" in failed.message
    # no empty home was made in the lent home's place
    assert not pool_deps.homes.folders.exists(legacy_home_folder("alice"))
    assert not pool_deps.homes.folders.exists(home_folder("alice"))


def test_a_user_with_a_server_running_gets_a_new_app_not_a_warm_server(pool_deps):
    filled(pool_deps)
    cold = request(Op.START, user="alice", server_name="big", cpu=1.0, memory="2Gi")
    assert deliver(pool_deps, cold) is Outcome.APPLIED and status_of(pool_deps, cold).slot == ""
    warmable = request(Op.START, user="alice")
    assert deliver(pool_deps, warmable) is Outcome.APPLIED
    assert status_of(pool_deps, warmable).slot == "" and warmable.server_key in pool_deps.apps.apps
    assert set(states(pool_deps).values()) == {"ready"}  # the slot it leased went back
    assert any("Another of your servers uses your home" in e["message"]
               for e in status_of(pool_deps, warmable).events)


def test_beyond_the_pool_a_start_creates_its_own_app_and_says_why_it_takes_longer(pool_deps):
    filled(pool_deps)
    for user in ("ann", "ben"):
        deliver(pool_deps, request(Op.START, user=user))
    third = request(Op.START, user="cat")
    assert deliver(pool_deps, third) is Outcome.APPLIED
    status = status_of(pool_deps, third)
    assert status.slot == "" and third.server_key in pool_deps.apps.apps
    assert any(e["message"].startswith("Every warm server is in use: Azure is provisioning") and
               e["message"].endswith("(this takes longer)") for e in status.events), status.events


def test_a_home_that_cannot_go_back_is_kept_in_the_slot(pool_deps, caplog):
    filled(pool_deps)
    start = request(Op.START, user="alice")
    deliver(pool_deps, start)
    slot = status_of(pool_deps, start).slot
    pool_deps.homes.folders.ensure(home_folder("alice"))  # something made the folder again
    deliver(pool_deps, request(Op.STOP, user="alice"))
    assert pool_deps.homes.folders.exists(f"{slot_folder(slot)}/home")  # nothing deleted
    assert "not moved back" in caplog.text


def test_a_warm_server_the_hub_forgot_is_recorded_stopped_then_retired_with_the_home_back(pool_deps):
    filled(pool_deps)
    start = request(Op.START, user="alice")
    deliver(pool_deps, start)
    status = status_of(pool_deps, start)
    later = datetime.now(UTC).timestamp() + 3600
    step = AppsStep(ReconcileOptions(hub_id=HUB, resource_group="rg", grace=300), pool_deps.storage, None, later, ReconcileSummary())
    step.forget_warm({status.server_key: status}, hub_active=set())
    assert status_of(pool_deps, start).error_code == "NotInHub"
    summary = run_pool(pool_deps, later)
    assert status.slot in summary.retired and ("delete", status.slot) in pool_deps.apps.calls
    assert pool_deps.homes.folders.exists(home_folder("alice"))
    assert pool_deps.homes.owners.lent(home_folder("alice")) == ("", "")
