"""The idle culler against a real JupyterHub (subprocess, tiny spawner, real CHP).

The hub only moves activity forward and accepts activity up to 59 minutes
in the future, so most tests run the culler with a clock 45 minutes ahead
(``LATER``) and a 30 minute timeout: every server is then idle unless the
test records activity for it between "now" and that clock.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from hubprocess import RunningHub

from acaspawner.culler_service import REQUIRED_SCOPES, SERVICE_NAME, USER_CULLING_SCOPES
from functions.culler import CullerError, CullOptions, cull_idle, run_culler
from functions.hubapi import HubApi
from local.procs import free_port

TIMEOUT = 30 * 60
AHEAD = timedelta(minutes=45)
WEIRD = "Émilie.O'Brien+test"


def later() -> datetime:
    return datetime.now(UTC) + AHEAD


def culler_api(hub: RunningHub, **kwargs) -> HubApi:
    return HubApi(hub.api_url, hub.culler_token, timeout=10, **kwargs)


def options(**changes) -> CullOptions:
    values = {"timeout": TIMEOUT, "stop_poll_interval": 0.2}
    values.update(changes)
    return CullOptions(**values)


def settings_for(hub: RunningHub, **extra: str) -> dict[str, str]:
    return {"ACA_HUB_API_URL": hub.api_url, "ACA_HUB_API_TOKEN": hub.culler_token, "ACA_HUB_API_TIMEOUT": "10",
            **extra}


def test_idle_servers_are_stopped_through_the_hub_and_active_ones_kept(hub, caplog):
    """The timer entry point on the real clock: a 5 s timeout, one server active, two idle."""
    idle, weird, active = hub.create_users(["idle", WEIRD, "active"])
    assert weird == WEIRD.lower()  # the dummy authenticator normalises names; the culler uses what the hub lists
    for user in (idle, weird, active):
        hub.start(user)
    time.sleep(5.5)
    hub.set_activity(active, datetime.now(UTC))

    caplog.set_level(logging.DEBUG)
    summary = run_culler(settings_for(hub, ACA_CULL_TIMEOUT="5"))

    assert sorted(summary.culled) == sorted([idle, weird])
    assert summary.kept == 1 and not summary.errors and not summary.stopping
    assert hub.server(idle) is None and hub.server(weird) is None
    assert hub.server(active)["ready"]
    assert summary.api_calls == 1 + 2  # one page of users, one DELETE per idle server
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{SERVICE_NAME}:")]
    assert len(lines) == 1 and "culled=2 kept=1" in lines[0] and "errors=0" in lines[0]
    assert hub.culler_token not in caplog.text


def test_named_servers_follow_the_options(hub):
    (user,) = hub.create_users(["nora"])
    hub.start(user)
    hub.start(user, "gpu-1")
    hub.start(user, "small")
    hub.set_activity(user, later() - timedelta(minutes=1), servers=("small",))

    with culler_api(hub) as api:
        summary = cull_idle(api, options(cull_default_servers=False, remove_named_servers=True), now=later())
    assert summary.culled == [f"{user}/gpu-1"]
    assert summary.kept == 2  # the default server (not culled by option) and the active named one
    assert hub.server(user)["ready"] and hub.server(user, "small")["ready"]
    # removed: the hub forgot the named server altogether
    hub.call("GET", f"/users/{user}/servers/gpu-1", ok=(404,))

    with culler_api(hub) as api:
        summary = cull_idle(api, options(cull_named_servers=False), now=later())
    assert summary.culled == [user]
    assert hub.server(user) is None and hub.server(user, "small")["ready"]

    hub.start(user, "gpu-1")
    with culler_api(hub) as api:
        summary = cull_idle(api, options(), now=later() + timedelta(minutes=35))
    assert sorted(summary.culled) == [f"{user}/gpu-1", f"{user}/small"]
    # stopped, not removed: the hub still knows the server and could start it again
    assert hub.call("GET", f"/users/{user}/servers/gpu-1").json()["stopped"] is True


def test_admins_are_excluded_when_asked(hub):
    (admin,) = hub.create_users(["boss"], admin=True)
    (user,) = hub.create_users(["worker"])
    hub.start(admin)
    hub.start(user)

    with culler_api(hub) as api:
        summary = cull_idle(api, options(cull_admin_users=False), now=later())
    assert summary.culled == [user] and summary.kept == 1
    assert hub.server(admin)["ready"] and hub.server(user) is None

    with culler_api(hub) as api:
        summary = cull_idle(api, options(cull_admin_users=True), now=later())
    assert summary.culled == [admin]
    assert hub.server(admin) is None


def test_max_age_culls_active_servers(hub):
    (user,) = hub.create_users(["busy"])
    hub.start(user)
    hub.set_activity(user, later() - timedelta(seconds=30))

    with culler_api(hub) as api:
        assert cull_idle(api, options(), now=later()).culled == []
        summary = cull_idle(api, options(max_age=40 * 60), now=later())
    assert summary.culled == [user]
    assert hub.server(user) is None


def test_dry_run_changes_nothing(hub, caplog):
    users = hub.create_users(["d1", "d2", "d3"])
    for user in users:
        hub.start(user)
    caplog.set_level(logging.INFO)

    with culler_api(hub) as api:
        summary = cull_idle(api, options(dry_run=True, cull_users=True), now=later())
        assert api.calls == {"GET users": 2}  # ready + inactive listings, not one write
    assert sorted(summary.culled) == sorted(users) and summary.dry_run
    for user in users:
        assert hub.server(user)["ready"]
    assert "Would cull server d1" in caplog.text
    assert "dry_run=true" in caplog.text


def test_cull_users_with_the_documented_extra_scope(make_hub):
    hub = make_hub(culler_scopes=(*REQUIRED_SCOPES, *USER_CULLING_SCOPES))
    idle_with_server, idle_without, active = hub.create_users(["gone1", "gone2", "stays"])
    hub.start(idle_with_server)
    hub.start(active)
    hub.set_activity(active, later() - timedelta(minutes=1))

    with culler_api(hub) as api:
        summary = cull_idle(api, options(cull_users=False), now=later())
        assert summary.users_deleted == [] and summary.culled == [idle_with_server]
        summary = cull_idle(api, options(cull_users=True), now=later())
    assert sorted(summary.users_deleted) == sorted([idle_with_server, idle_without])
    assert hub.user_names() == {active}
    assert hub.server(active)["ready"]


def test_cull_users_without_the_scope_reports_errors(hub):
    """Only the four documented scopes: deleting a user is refused, the error is counted, servers still culled."""
    (user,) = hub.create_users(["lonely"])
    hub.start(user)
    with culler_api(hub) as api:
        summary = cull_idle(api, options(cull_users=True), now=later())
    assert summary.culled == [user]
    assert summary.errors and "403" in summary.errors[0]
    assert user in hub.user_names()


@pytest.mark.parametrize("stop_wait, finished", [(20, True), (0.5, False)])
def test_slow_stop_202_is_polled(make_hub, stop_wait, finished):
    """The hub answers 202 when stop() outlasts slow_stop_timeout; the culler polls the user (bounded)."""
    hub = make_hub(slow_stop_timeout=0.5, culler_scopes=(*REQUIRED_SCOPES, *USER_CULLING_SCOPES))
    (user,) = hub.create_users(["slowpoke"])
    hub.start(user)
    with culler_api(hub) as api:
        summary = cull_idle(api, options(stop_wait=stop_wait, cull_users=True), now=later())
        polls = api.calls["GET user"]
    assert summary.culled == [user]
    assert polls >= 1
    if finished:
        assert summary.stopping == [] and summary.users_deleted == [user]
        assert user not in hub.user_names()
    else:
        # counted as culled, but a user whose server is still stopping is never deleted; "still stopping"
        # shows the culler gave up its bounded wait (0.5 s) before the 3 s stop finished (no timed assert)
        assert summary.stopping == [user] and summary.users_deleted == []
        hub.wait_stopped(user)
    assert not summary.errors


def test_many_users_are_listed_in_few_pages(hub):
    """250 users with ready servers: page size 50 means exactly 5 list calls, nothing else."""
    names = hub.create_users([f"u{i:04}" for i in range(250)])
    assert len(names) == 250
    hub.start_many(names)

    with culler_api(hub) as api:
        summary = cull_idle(api, options(page_size=50))
        assert api.calls == {"GET users": 5}
    assert summary.users_listed == 250 and summary.kept == 250 and summary.culled == []

    # a page size above the hub's api_page_max_limit (200): the hub caps it, the culler follows "next"
    with culler_api(hub) as api:
        assert len(list(api.list_users("ready", page_size=500))) == 250
        assert api.calls == {"GET users": 2}

    # the whole hub idle (clock ahead): still 5 list calls, then exactly one DELETE per server
    with culler_api(hub, pool_size=20) as api:
        summary = cull_idle(api, options(page_size=50, concurrency=20), now=later())
        assert api.calls == {"GET users": 5, "DELETE server": 250}
    assert len(summary.culled) == 250 and not summary.errors
    with culler_api(hub) as api:
        assert list(api.list_users("ready")) == []


def test_unreachable_hub_fails_loudly(caplog, aca_emulator, aca_client):
    """The run raises with a clear message; no app is touched (the emulator sees no request at all)."""
    app = {"location": aca_emulator.location, "tags": {"aca-hub": "hub-a"}, "properties": {
        "environmentId": aca_emulator.environment_id,
        "template": {"containers": [{"name": "main", "image": "test/sleeper", "command": ["sleep", "600"],
                                     "resources": {"cpu": 0.25, "memory": "0.5Gi"}}]}}}
    aca_client.container_apps.begin_create_or_update(aca_emulator.resource_group, "jl-someone-12345678", app).result()
    arm_requests = aca_emulator.stats["requests"]
    port = free_port()  # nothing listens here
    token = "s3cret-token-value"
    caplog.set_level(logging.DEBUG)
    settings = {"ACA_HUB_API_URL": f"http://127.0.0.1:{port}/hub/api", "ACA_HUB_API_TOKEN": token,
                "ACA_HUB_API_TIMEOUT": "2"}
    with pytest.raises(CullerError, match="unreachable") as raised:
        run_culler(settings)
    assert f"127.0.0.1:{port}" in str(raised.value)
    assert token not in str(raised.value) and token not in caplog.text
    assert "errors=1" in caplog.text and "culled=0" in caplog.text
    assert aca_emulator.stats["requests"] == arm_requests
    assert set(aca_emulator.apps) == {"jl-someone-12345678"}


def test_refused_token_fails_loudly_naming_the_scopes(hub):
    settings = {"ACA_HUB_API_URL": hub.api_url, "ACA_HUB_API_TOKEN": "not-a-valid-token"}
    (user,) = hub.create_users(["victim"])
    hub.start(user)
    with pytest.raises(CullerError, match=", ".join(REQUIRED_SCOPES)):
        run_culler({**settings, "ACA_CULL_TIMEOUT": "1"})
    assert hub.server(user)["ready"]


def test_missing_or_bad_settings_are_clear():
    with pytest.raises(CullerError, match="ACA_HUB_API_URL"):
        run_culler({"ACA_HUB_API_TOKEN": "x"})
    with pytest.raises(CullerError, match="ACA_HUB_API_TOKEN"):
        run_culler({"ACA_HUB_API_URL": "http://127.0.0.1:1/hub/api"})
    with pytest.raises(CullerError, match="ACA_CULL_DRY_RUN must be true or false"):
        run_culler({"ACA_HUB_API_URL": "http://127.0.0.1:1/hub/api", "ACA_HUB_API_TOKEN": "x",
                    "ACA_CULL_DRY_RUN": "maybe"})
    with pytest.raises(CullerError, match="ACA_CULL_TIMEOUT must be at least 1"):
        run_culler({"ACA_HUB_API_URL": "http://127.0.0.1:1/hub/api", "ACA_HUB_API_TOKEN": "x",
                    "ACA_CULL_TIMEOUT": "0"})
    defaults = CullOptions.from_settings({})
    assert (defaults.timeout, defaults.max_age, defaults.concurrency, defaults.page_size) == (3600, 0, 10, 200)
    assert defaults.cull_default_servers and defaults.cull_named_servers and defaults.cull_admin_users
    assert not (defaults.cull_users or defaults.remove_named_servers or defaults.dry_run)


def test_the_token_stays_out_of_reprs_and_errors():
    api = HubApi("http://127.0.0.1:1/hub/api", "tok-abc-123", timeout=1)
    assert "tok-abc-123" not in repr(api)
    with pytest.raises(Exception) as raised:
        list(api.list_users())
    assert "tok-abc-123" not in str(raised.value) and "tok-abc-123" not in repr(raised.value)
