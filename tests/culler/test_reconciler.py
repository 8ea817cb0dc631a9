"""The reconciler against the ACA emulator (real ARM REST through azure-mgmt-appcontainers) and Azurite.

Apps are created directly through the SDK with the tags the lifecycle
writes; statuses directly through :class:`FunctionStorage`. Most runs use a
clock an hour ahead, so apps and entries are past the reconciler's grace
period (``ACA_RECONCILE_GRACE``) without waiting.
"""

from __future__ import annotations

import logging
import time

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.appcontainers import ContainerAppsAPIClient
from hubprocess import RunningHub
from reconciler_support import HUB, reconciler_settings
from waiting import wait_until

from acaspawner.contract import Phase, Status
from acaspawner.naming import server_key
from acaspawner.storage_config import StorageConfig
from functions.hubapi import HubApi, HubUnavailable
from functions.reconcile_apps import hub_active_servers
from functions.reconcile_run import ReconcileOptions
from functions.reconcile_stuck import STUCK_ERROR_CODE
from functions.reconciler import ReconcilerError, reconcile, run_reconciler
from functions.storage import FunctionStorage
from local.emulator.client import StaticTokenCredential
from local.procs import free_port

OTHER_HUB = "hub-b"
HOUR_AHEAD = 3600.0


@pytest.fixture
def store(storage_connection_string, unique_name) -> FunctionStorage:
    return FunctionStorage(StorageConfig(table_name=unique_name("t"), connection_string=storage_connection_string))


def key(user: str, server: str = "", hub: str = HUB) -> str:
    return server_key(hub, user, server)


def put_status(store: FunctionStorage, user: str, phase: Phase, generation: int = 1, *, hub: str = HUB,
               updated: float | None = None, server: str = "") -> Status:
    status = Status(hub_id=hub, server_key=key(user, server, hub), phase=phase, generation=generation, user=user,
                    server_name=server, message=f"{phase.value} by the test")
    if updated is not None:
        status.updated = updated
    return store.write_status(status)


def create_app(client: ContainerAppsAPIClient, emulator, name: str, *, hub: str | None = HUB, generation: int = 1,
               user: str = "someone") -> None:
    tags = {"aca-user": user, "aca-server": "", "aca-generation": str(generation)}
    if hub is not None:
        tags["aca-hub"] = hub
    body = {
        "location": emulator.location,
        "tags": tags,
        "properties": {
            "environmentId": emulator.environment_id,
            "template": {"containers": [{"name": "main", "image": "test/sleeper", "command": ["sleep", "600"],
                                         "resources": {"cpu": 0.25, "memory": "0.5Gi"}}]},
        },
    }
    client.container_apps.begin_create_or_update(emulator.resource_group, name, body).result()


def app_names(emulator) -> set[str]:
    return set(emulator.apps)


def wait_gone(emulator, names: set[str], timeout: float = 20) -> None:
    wait_until(lambda: not app_names(emulator) & names, timeout=timeout, interval=0.1, what=f"{sorted(names)} to go",
               describe=lambda: f"still there: {app_names(emulator) & names}")


def requests_made(emulator) -> dict[str, int]:
    return dict(emulator.stats["requests_by_method"])


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {m: after.get(m, 0) - before.get(m, 0) for m in after if after.get(m, 0) != before.get(m, 0)}


def options(emulator, **changes) -> ReconcileOptions:
    return ReconcileOptions(hub_id=HUB, resource_group=emulator.resource_group, **changes)


def test_orphans_and_apps_of_stopped_or_failed_servers_are_deleted(aca_emulator, aca_client, store, caplog):
    orphan, stopped, failed, running, newer = (key(u) for u in ("orphan", "stopped", "failed", "running", "newer"))
    foreign, untagged = key("foreign", hub=OTHER_HUB), "untagged-app"
    put_status(store, "stopped", Phase.STOPPED, generation=2)
    put_status(store, "failed", Phase.FAILED, generation=3)
    put_status(store, "running", Phase.RUNNING, generation=1)
    put_status(store, "newer", Phase.STOPPED, generation=1)  # a newer start's app, its status not written yet
    put_status(store, "foreign", Phase.STOPPED, hub=OTHER_HUB)  # stopped, but not this hub's business
    for name, generation in ((orphan, 1), (stopped, 1), (failed, 3), (running, 1), (newer, 2)):
        create_app(aca_client, aca_emulator, name, generation=generation)
    create_app(aca_client, aca_emulator, foreign, hub=OTHER_HUB)
    create_app(aca_client, aca_emulator, untagged, hub=None)
    before = requests_made(aca_emulator)
    caplog.set_level(logging.INFO)

    summary = reconcile(options(aca_emulator), store, aca_client, now=time.time() + HOUR_AHEAD)

    assert summary.deleted == sorted([orphan, stopped, failed])
    assert summary.kept == 2 and summary.foreign_apps == 2 and summary.apps_seen == 5
    assert summary.marked_failed == [] and summary.errors == [] and summary.listing_complete
    assert summary.arm_calls == 4  # one page of apps, three deletes
    assert delta(before, requests_made(aca_emulator)) == {"GET": 1, "DELETE": 3}
    wait_gone(aca_emulator, {orphan, stopped, failed})
    assert app_names(aca_emulator) == {running, newer, foreign, untagged}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("aca-reconciler:")]
    assert len(lines) == 1 and "deleted=3 kept=2" in lines[0] and "errors=0" in lines[0]
    assert "arm_calls=4/100" in lines[0]


def test_young_apps_and_fresh_statuses_are_left_to_the_lifecycle(aca_emulator, aca_client, store):
    put_status(store, "justgone", Phase.STOPPED)
    create_app(aca_client, aca_emulator, key("justgone"))
    create_app(aca_client, aca_emulator, key("justmade"))  # the lifecycle may be about to record it

    summary = reconcile(options(aca_emulator, grace=300), store, aca_client)
    assert summary.deleted == [] and summary.kept == 2
    assert app_names(aca_emulator) == {key("justgone"), key("justmade")}


def test_stuck_statuses_become_failed(aca_emulator, aca_client, store):
    long_ago = time.time() - 2 * 3600
    put_status(store, "queued", Phase.QUEUED, updated=long_ago)
    put_status(store, "prov", Phase.PROVISIONING, updated=long_ago)
    put_status(store, "fresh", Phase.PROVISIONING)
    put_status(store, "fine", Phase.RUNNING, updated=long_ago)

    summary = reconcile(options(aca_emulator, stuck_after=1200), store, aca_client)

    assert sorted(summary.marked_failed) == sorted([key("queued"), key("prov")])
    for user, was in (("queued", "queued"), ("prov", "provisioning")):
        status = store.get_status(HUB, key(user))
        assert status.phase is Phase.FAILED and status.error_code == STUCK_ERROR_CODE
        assert f"stuck in {was} for 2 h 0 min (limit 20 min)" in status.message and "reconciler" in status.message
        assert status.events[-1]["phase"] == "failed"
    assert store.get_status(HUB, key("fresh")).phase is Phase.PROVISIONING
    assert store.get_status(HUB, key("fine")).phase is Phase.RUNNING


class RacingStore:
    """A store whose entity is moved on by 'the lifecycle' between the reconciler's read and its write."""

    def __init__(self, store: FunctionStorage):
        self.store = store
        self.raced: list[str] = []

    def list_statuses(self, hub_id):
        return self.store.list_statuses(hub_id)

    def get_status(self, hub_id, server_key):
        return self.store.get_status(hub_id, server_key)

    def write_status(self, status):
        current = self.store.get_status(status.hub_id, status.server_key)
        self.store.write_status(current.with_event(Phase.RUNNING, "server is running"))
        self.raced.append(status.server_key)
        return self.store.write_status(status)  # the reconciler's stale ETag: StatusConflict


def test_a_stuck_status_that_progresses_meanwhile_is_left_alone(aca_emulator, aca_client, store):
    put_status(store, "slowstart", Phase.PROVISIONING, updated=time.time() - 7200)
    racing = RacingStore(store)
    summary = reconcile(options(aca_emulator), racing, aca_client)
    assert racing.raced == [key("slowstart")]
    assert summary.marked_failed == [] and summary.errors == []
    assert store.get_status(HUB, key("slowstart")).phase is Phase.RUNNING


def test_the_arm_call_budget_is_respected(aca_emulator, aca_client, store):
    aca_emulator.set_faults(list_page_size=2)
    orphans = {key(f"orphan{i}") for i in range(5)}
    for name in orphans:
        create_app(aca_client, aca_emulator, name)
    later = time.time() + HOUR_AHEAD

    before = requests_made(aca_emulator)
    summary = reconcile(options(aca_emulator, max_arm_calls=3), store, aca_client, now=later)
    assert summary.arm_calls == 3 and summary.listing_complete and summary.deleted == []  # exactly the 3 pages
    assert any("budget (3)" in note for note in summary.notes)

    before = requests_made(aca_emulator)
    summary = reconcile(options(aca_emulator, max_arm_calls=5), store, aca_client, now=later)
    assert summary.arm_calls == 5 and sum(delta(before, requests_made(aca_emulator)).values()) == 5
    assert len(summary.deleted) == 2  # three pages of apps, then two deletes
    assert any("budget (5)" in note for note in summary.notes)
    first = set(summary.deleted)

    before = requests_made(aca_emulator)
    summary = reconcile(options(aca_emulator, max_arm_calls=1), store, aca_client, now=later)
    assert summary.arm_calls == 1 and sum(delta(before, requests_made(aca_emulator)).values()) == 1
    assert not summary.listing_complete and summary.deleted == []
    assert any("missing apps not checked" in note for note in summary.notes)

    wait_gone(aca_emulator, first)
    summary = reconcile(options(aca_emulator), store, aca_client, now=later)
    wait_gone(aca_emulator, orphans)
    assert len(summary.deleted) == 3


def test_stop_mode_keeps_parked_apps(aca_emulator, aca_client, store):
    parked, left_running = key("parked"), key("leftrunning")
    put_status(store, "parked", Phase.STOPPED)
    put_status(store, "leftrunning", Phase.STOPPED)
    create_app(aca_client, aca_emulator, parked)
    create_app(aca_client, aca_emulator, left_running)
    aca_client.container_apps.begin_stop(aca_emulator.resource_group, parked).result()
    later = time.time() + HOUR_AHEAD

    summary = reconcile(options(aca_emulator, stop_mode="stop"), store, aca_client, now=later)
    assert summary.deleted == [left_running] and summary.kept == 1

    summary = reconcile(options(aca_emulator, stop_mode="delete"), store, aca_client, now=later)
    assert summary.deleted == [parked]


def test_running_servers_whose_app_is_gone_are_reported(hub: RunningHub, aca_emulator, aca_client, store):
    ghost, alive = hub.create_users(["ghost", "alive"])
    hub.start(ghost)
    hub.start(alive)
    create_app(aca_client, aca_emulator, key(alive))
    put_status(store, alive, Phase.RUNNING)
    put_status(store, "tablerun", Phase.RUNNING)  # the table says running; its app vanished
    before = requests_made(aca_emulator)

    with HubApi(hub.api_url, hub.culler_token, timeout=10) as api:
        summary = reconcile(options(aca_emulator), store, aca_client,
                            hub_servers=lambda: hub_active_servers(api), now=time.time() + HOUR_AHEAD)
        assert api.calls == {"GET users": 1}

    assert summary.missing == [f"{k} ({src})" for k, src in sorted(
        [(key(ghost), f"the hub ({ghost})"), (key("tablerun"), "the status table")])]
    assert summary.deleted == [] and summary.errors == []
    assert delta(before, requests_made(aca_emulator)) == {"GET": 1}  # reported, not acted on
    assert store.get_status(HUB, key("tablerun")).phase is Phase.RUNNING
    assert hub.server(ghost)["ready"]


def test_an_unreachable_hub_does_not_stop_the_reconciler(aca_emulator, aca_client, store):
    create_app(aca_client, aca_emulator, key("orphan"))

    def hub_down():
        raise HubUnavailable("JupyterHub API at http://127.0.0.1:1/hub/api is unreachable")

    summary = reconcile(options(aca_emulator), store, aca_client, hub_servers=hub_down,
                        now=time.time() + HOUR_AHEAD)
    assert summary.deleted == [key("orphan")]
    assert summary.errors and "unreachable" in summary.errors[0]


def test_entry_point_honours_retry_after_when_throttled(aca_emulator, aca_client, store):
    """run_reconciler with the lifecycle's ARM client: 429s are retried after Retry-After, not hammered."""
    orphans = {key(f"t{i}") for i in range(3)}
    for name in orphans:
        create_app(aca_client, aca_emulator, name)
    aca_emulator.set_faults(delete_bucket=1, delete_refill=1.0)
    before = aca_emulator.stats

    t0 = time.monotonic()
    summary = run_reconciler(reconciler_settings(aca_emulator, store), now=time.time() + HOUR_AHEAD)
    elapsed = time.monotonic() - t0

    after = aca_emulator.stats
    assert sorted(summary.deleted) == sorted(orphans) and summary.errors == []
    assert summary.arm_calls == 4  # logical calls; azure-core's retries are on top
    throttled = after["throttled"] - before["throttled"]
    assert throttled >= 1
    assert after["requests_by_method"]["DELETE"] - before["requests_by_method"].get("DELETE", 0) == 3 + throttled
    assert elapsed >= throttled * 0.9  # each 429 said Retry-After: 1
    wait_gone(aca_emulator, orphans)


class ThrottledApps:
    """An ARM client whose container app deletes are always throttled (retries already spent)."""

    def __init__(self, client):
        self.container_apps = self
        self._config, self.send_request = client._config, client.send_request  # the listing: the real one
        self.deletes = 0

    def begin_delete(self, group, name, **kwargs):
        self.deletes += 1
        error = HttpResponseError(message="Too Many Requests")
        error.status_code = 429
        raise error


def test_persistent_throttling_ends_the_run_early(aca_emulator, aca_client, store):
    for i in range(3):
        create_app(aca_client, aca_emulator, key(f"o{i}"))
    apps = ThrottledApps(aca_client)
    summary = reconcile(options(aca_emulator), store, apps, now=time.time() + HOUR_AHEAD)
    assert apps.deletes == 1 and summary.deleted == []
    assert summary.errors and any("429" in note for note in summary.notes)


def test_unreachable_arm_fails_loudly(store):
    client = ContainerAppsAPIClient(StaticTokenCredential(), "sub", base_url=f"https://127.0.0.1:{free_port()}",
                                    retry_total=0)
    try:
        with pytest.raises(ReconcilerError, match="reconciler run failed"):
            reconcile(ReconcileOptions(hub_id=HUB, resource_group="rg"), store, client)
    finally:
        client.close()


def test_settings_are_checked(store):
    with pytest.raises(ReconcilerError, match="ACA_HUB_ID, ACA_RESOURCE_GROUP"):
        run_reconciler({})
    with pytest.raises(ReconcilerError, match="ACA_RECONCILE_MAX_ARM_CALLS must be at least 1"):
        run_reconciler({"ACA_HUB_ID": HUB, "ACA_RESOURCE_GROUP": "rg", "ACA_RECONCILE_MAX_ARM_CALLS": "0"})
    defaults = ReconcileOptions.from_settings({"ACA_HUB_ID": HUB, "ACA_RESOURCE_GROUP": "rg"})
    assert (defaults.stuck_after, defaults.max_arm_calls, defaults.grace, defaults.stop_mode) == (
        1200, 100, 300, "delete")


def test_apps_of_servers_the_hub_no_longer_counts_are_removed(hub: RunningHub, aca_emulator, aca_client, store):
    """The hub gave up on a start whose request was already queued, or a stop was lost: the app must go."""
    kept, forgotten, fresh = hub.create_users(["kept", "forgotten", "fresh"])
    hub.start(kept)
    later = time.time() + HOUR_AHEAD  # the run's clock: these statuses are older than the grace period...
    for user in (kept, forgotten, fresh):
        create_app(aca_client, aca_emulator, key(user))
    put_status(store, kept, Phase.RUNNING)
    put_status(store, forgotten, Phase.RUNNING)
    put_status(store, fresh, Phase.PROVISIONING, updated=later - 10)  # ...but not this one

    with HubApi(hub.api_url, hub.culler_token, timeout=10) as api:
        summary = reconcile(options(aca_emulator), store, aca_client,
                            hub_servers=lambda: hub_active_servers(api), now=later)

    assert summary.deleted == [key(forgotten)]
    wait_gone(aca_emulator, {key(forgotten)})
    assert key(kept) in app_names(aca_emulator) and key(fresh) in app_names(aca_emulator)
    status = store.get_status(HUB, key(forgotten))
    assert status.phase is Phase.STOPPED and status.error_code == "NotInHub"
    assert "no longer counts" in status.message
    assert store.get_status(HUB, key(kept)).phase is Phase.RUNNING
    assert hub.server(kept)["ready"]


def test_without_the_hub_servers_it_forgot_are_left_alone(aca_emulator, aca_client, store):
    create_app(aca_client, aca_emulator, key("unknown"))
    put_status(store, "unknown", Phase.RUNNING)
    summary = reconcile(options(aca_emulator), store, aca_client, now=time.time() + HOUR_AHEAD)
    assert summary.deleted == [] and store.get_status(HUB, key("unknown")).phase is Phase.RUNNING


@pytest.mark.parametrize("hub_lists", [0, 2], ids=["empty", "2-of-12"])
def test_an_implausible_hub_answer_removes_nothing(aca_emulator, aca_client, store, hub_lists):
    """L6: a hub that answers with no (or few) active servers while a class runs must not get them deleted."""
    users = [f"student{i:02d}" for i in range(12)]
    for user in users:
        create_app(aca_client, aca_emulator, key(user))
        put_status(store, user, Phase.RUNNING)
    listed = [(user, "", True) for user in users[:hub_lists]]
    summary = reconcile(options(aca_emulator), store, aca_client, hub_servers=lambda: listed,
                        now=time.time() + HOUR_AHEAD)
    assert summary.deleted == []
    assert app_names(aca_emulator) >= {key(user) for user in users}
    assert any("no server was removed for being unknown to the hub" in e for e in summary.errors)
    assert all(store.get_status(HUB, key(user)).phase is Phase.RUNNING for user in users)
