"""The idle culler end to end: an idle server is stopped through the hub and its app removed; an active one is kept.

The whole local stack runs (Azurite, the ACA emulator, the functions dev host with the
``culler`` timer every few seconds, a real JupyterHub + CHP). Two users start their default
servers through the hub's REST API; one keeps reporting activity, the other does nothing.
The culler (a timer function) must stop the idle one with ``DELETE /users/{u}/server``, the
hub then runs ``AcaSpawner.stop()``, whose queued ``stop`` makes the lifecycle function
delete the container app in the emulator. The active server and its app stay.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime

import pytest
from culler_stack_support import (
    ActivityKeeper,
    HubAdmin,
    culler_summaries,
    files_containing,
    read_log,
    stack_log_files,
    tail,
)
from waiting import wait_until

from acaspawner.culler_service import SERVICE_NAME
from acaspawner.naming import server_key
from acaspawner.sealing import parse_keys
from local.procs import free_port
from local.stack import Stack, StackOptions

CULL_TIMEOUT = 30  # seconds idle before the culler stops a server
CULL_SCHEDULE = "*/5 * * * * *"  # NCRONTAB, seconds first: every 5 s
RECONCILE_SCHEDULE = "0 0 0 1 1 *"  # once a year: the reconciler stays out of this test
SPAWN_WAIT = 240  # both servers ready and both apps present (the demo's start_timeout is 180 s)
CULL_WAIT = 120  # from both ready to the idle server stopped and its app gone
IDLE = "idle-ida"
ACTIVE = "busy-bo"
SUMMARY_OK_RE = re.compile(rf"INFO functions\.culler: {re.escape(SERVICE_NAME)}: culled=\d+ .* errors=0 ")


@pytest.fixture
def stack(tmp_path_factory):
    options = StackOptions(
        port=free_port(),
        state_dir=tmp_path_factory.mktemp("culler-stack"),
        test_admin_token=secrets.token_hex(16),
        function_settings={
            "ACA_CULL_SCHEDULE": CULL_SCHEDULE,
            "ACA_CULL_TIMEOUT": str(CULL_TIMEOUT),
            "ACA_RECONCILE_SCHEDULE": RECONCILE_SCHEDULE,
        },
    )
    with Stack(options) as running:
        yield running


def _hub_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _inactive_seconds(hhmmss: str) -> int:
    h, m, s = (int(part) for part in hhmmss.split(":"))
    return h * 3600 + m * 60 + s


@pytest.mark.timeout(720)
def test_idle_server_is_culled_through_the_hub_and_its_app_removed_active_one_kept(stack: Stack):
    hub = HubAdmin(stack)
    hub_id = stack.options.hub_id
    apps = {user: server_key(hub_id, user, "") for user in (IDLE, ACTIVE)}
    assert apps[IDLE] != apps[ACTIVE]

    def functions_log() -> str:
        return read_log(stack, "functions")

    def situation() -> str:
        stack.check_alive()
        return (
            f"emulator apps: {sorted(stack.emulator_apps())}; expected {apps}\n"
            f"hub {IDLE}: {hub.user(IDLE).get('servers')}\nhub {ACTIVE}: {hub.user(ACTIVE).get('servers')}\n"
            f"{keeper.describe()}\n--- functions.log (tail)\n{tail(functions_log())}\n"
            f"--- hub.log (tail)\n{tail(read_log(stack, 'hub'))}"
        )

    # -- two users, two default servers, started through the hub's REST API ---------------------------
    hub.expect("POST", "/users", {"usernames": [IDLE, ACTIVE]}, ok=(201,))
    for user in (IDLE, ACTIVE):
        hub.expect("POST", f"/users/{user}/server", ok=(201, 202))

    keeper = ActivityKeeper(hub, ACTIVE, interval=2.0)
    with keeper:  # the active user "works" from now on; the idle one never does
        seen_ready: dict[str, float] = {}
        seen_app: set[str] = set()

        def both_up() -> bool:
            stack.check_alive()
            present = stack.emulator_apps()
            for user in (IDLE, ACTIVE):
                server = hub.default_server(user)
                if server is None and user not in seen_ready:
                    raise AssertionError(f"the server of {user} ended before it was ready (spawn failed?)\n"
                                         f"{situation()}")
                if server and server.get("ready"):
                    seen_ready.setdefault(user, time.monotonic())
                if apps[user] in present:
                    seen_app.add(user)
            return len(seen_ready) == 2 and len(seen_app) == 2

        wait_until(both_up, timeout=SPAWN_WAIT, interval=1.0, what="both servers ready and both apps present",
                   describe=situation)
        assert keeper.posted > 0, keeper.describe()

        # -- the culler stops the idle server through the hub; the lifecycle deletes its app -----------
        def idle_gone_active_kept() -> bool:
            stack.check_alive()
            present = stack.emulator_apps()
            active = hub.default_server(ACTIVE)
            # the active server must stay up all along, not just at the end
            assert active and active.get("ready") and not active.get("pending"), (
                f"the active server of {ACTIVE} was stopped: {active}\n{situation()}")
            assert apps[ACTIVE] in present, f"the app of the active server is gone\n{situation()}"
            return hub.default_server(IDLE) is None and apps[IDLE] not in present

        wait_until(idle_gone_active_kept, timeout=CULL_WAIT, interval=1.0,
                   what=f"the idle server of {IDLE} stopped on the hub and its app {apps[IDLE]} deleted",
                   describe=situation)
        # not culled at first sight: it was left idle for (about) the timeout; the log below has the exact figure
        assert time.monotonic() - seen_ready[IDLE] >= CULL_TIMEOUT / 2, "culled long before the timeout"

        # -- a few more culler runs: the active server (older than the timeout by now) is still kept -------
        runs_at_cull = len(culler_summaries(functions_log()))
        wait_until(lambda: len(culler_summaries(functions_log())) >= runs_at_cull + 3, timeout=60, interval=1.0,
                   what="three more culler runs", describe=situation)
        idle_gone_active_kept()
        assert hub.user(IDLE).get("servers") == {}, situation()
        # kept because of its activity, not its age: it started longer ago than the timeout
        active = hub.default_server(ACTIVE)
        now = datetime.now(UTC)
        assert (now - _hub_time(active["started"])).total_seconds() > CULL_TIMEOUT, active
        assert (now - _hub_time(active["last_activity"])).total_seconds() < CULL_TIMEOUT / 2, active
        assert keeper.failures == [] or keeper.posted > len(keeper.failures), keeper.describe()

    # -- the functions' log: one summary line per run, the idle server culled once, the active never ----
    text = functions_log()
    summaries = culler_summaries(text)
    assert summaries, f"no culler summary line in functions.log\n{tail(text)}"
    assert sum(s["culled"] for s in summaries) == 1, summaries
    # the stack starts the hub (and waits for it to be healthy) before the functions, so no run should
    # find it unreachable; any run before the first successful one may only have failed that way,
    # and from the first successful run on, none may fail
    first_ok = SUMMARY_OK_RE.search(text)
    assert first_ok, f"no successful culler run\n{tail(text, 80)}"
    before, after = text[: first_ok.start()], text[first_ok.start():]
    early_failures = re.findall(r"CullerError: .*", before)
    assert all("is unreachable" in line for line in early_failures), early_failures
    assert all(s["errors"] == 0 for s in culler_summaries(after)), culler_summaries(after)
    assert "Executed 'Functions.culler' (Failed" not in after, tail(after, 80)
    culling = re.findall(r"Culling server (\S+) \(inactive for (\d\d:\d\d:\d\d)\)", text)
    assert [user for user, _ in culling] == [IDLE], culling
    assert _inactive_seconds(culling[0][1]) >= CULL_TIMEOUT, culling
    # the culler's stop went the hub's and the spawner's way: the culler service's DELETE on the hub,
    # then a stop request applied by the lifecycle function, for the idle server only
    hub_log = read_log(stack, "hub")
    assert re.search(rf" (202|204) DELETE /hub/api/users/{IDLE}/server \({re.escape(SERVICE_NAME)}@", hub_log), tail(hub_log)
    assert f"DELETE /hub/api/users/{ACTIVE}/" not in hub_log
    # a stop is applied by its request (no app) or by the follow-up that saw its app gone
    stops = re.findall(r"functions\.lifecycle: (?:Request|FollowUp)\(op=stop, (?:step=\w+, )?server_key=([a-z0-9-]+),.*\): "
                       r"applied", text)
    assert stops == [apps[IDLE]], stops

    # -- no secret in any log of the stack ------------------------------------------------------------
    logs = stack_log_files(stack)
    assert any(p.name == "functions.log" for p in logs), logs
    assert files_containing(logs, stack.culler_token) == []
    for key in parse_keys(stack.sealing_key):
        assert files_containing(logs, key) == []
