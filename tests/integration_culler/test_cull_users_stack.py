"""Culling users end to end, with exactly the documented scopes and no more.

A real JupyterHub whose culler service has the role ``culler_role(cull_users=True)``
(the required scopes plus ``read:users`` and ``delete:users``; not ``admin:users``),
the functions with ``ACA_CULL_USERS=true``: an idle user's server is culled, then the
user is deleted; the demo's ``admin``, idle too, is spared (admins are, by default, when
users are culled); an active user and their server stay. Every culler run ends
without errors, so no call was refused for a missing scope.
"""

from __future__ import annotations

import secrets

import pytest
from culler_stack_support import ActivityKeeper, HubAdmin, culler_summaries, read_log, tail
from waiting import wait_until

from acaspawner.culler_service import SERVICE_NAME, USER_CULLING_SCOPES, culler_scopes
from acaspawner.naming import server_key
from local.procs import free_port
from local.stack import Stack, StackOptions

IDLE, ACTIVE = "idle-ursula", "busy-bo"


@pytest.fixture
def stack(tmp_path_factory):
    options = StackOptions(
        port=free_port(),
        state_dir=tmp_path_factory.mktemp("cull-users"),
        test_admin_token=secrets.token_hex(16),
        function_settings={"ACA_CULL_SCHEDULE": "*/5 * * * * *", "ACA_CULL_TIMEOUT": "30",
                           "ACA_CULL_USERS": "true", "ACA_RECONCILE_SCHEDULE": "0 0 0 1 1 *"},
    )
    with Stack(options) as running:
        yield running


@pytest.mark.timeout(600)
def test_idle_users_are_deleted_with_exactly_the_documented_scopes(stack: Stack):
    hub = HubAdmin(stack)
    # what the hub grants the functions' token: the culler's role and nothing else
    culler = HubAdmin(stack)
    culler.token = stack.culler_token
    me = culler.expect("GET", "/user")
    assert me["kind"] == "service" and me["name"] == SERVICE_NAME, me
    granted = set(me["scopes"])
    assert set(culler_scopes(cull_users=True)) <= granted, granted
    assert set(USER_CULLING_SCOPES) <= granted
    assert not granted & {"admin:users", "admin:servers", "users", "servers"}, granted

    hub.expect("POST", "/users", {"usernames": [IDLE, ACTIVE]}, ok=(201,))
    for user in (IDLE, ACTIVE):
        hub.expect("POST", f"/users/{user}/server", ok=(201, 202))

    def situation() -> str:
        return f"apps: {sorted(stack.emulator_apps())}\n{tail(read_log(stack, 'functions'), 30)}"

    with ActivityKeeper(hub, ACTIVE, interval=2.0):
        wait_until(lambda: all((hub.default_server(u) or {}).get("ready") for u in (IDLE, ACTIVE)), timeout=240,
                   interval=1, what="both servers ready", describe=situation)
        # the idle user is deleted from the hub (their server first), the active one stays
        wait_until(lambda: hub.call("GET", f"/users/{IDLE}")[0] == 404, timeout=180, interval=1,
                   what=f"{IDLE} deleted by the culler", describe=situation)
        assert (hub.default_server(ACTIVE) or {}).get("ready"), situation()

    assert hub.call("GET", f"/users/{ACTIVE}")[0] == 200
    summaries = culler_summaries(read_log(stack, "functions"))
    # the idle user, nobody else: the demo's "admin" (no server, idle since the hub started) is an admin
    assert sum(s["users_deleted"] for s in summaries) == 1, summaries
    assert hub.call("GET", "/users/admin")[0] == 200
    assert all(s["errors"] == 0 for s in summaries), summaries  # nothing refused for a missing scope
    wait_until(lambda: server_key(stack.options.hub_id, IDLE, "") not in stack.emulator_apps(), timeout=60,
               interval=1, what="the idle user's app removed", describe=situation)
