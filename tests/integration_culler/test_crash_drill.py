"""Fault drill: the functions host dies while a class's creates are in flight.

Ten users start their servers through the hub's REST API; once the first
creates reach ARM, the functions host is killed with SIGKILL and started
again at once. The dead host's messages stay leased (in Azure for up to ten
minutes), so only the spawner's resend of a start without progress brings
those servers back. With the demo's timeouts (start_timeout 180 s) every
server must come up, each app created exactly once, nothing left over.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from culler_stack_support import HubAdmin, quote, read_log, tail
from waiting import wait_until

from acaspawner.naming import server_key
from local.procs import free_port
from local.stack import Stack, StackOptions

USERS = [f"student{i:02d}" for i in range(10)]
PROVISIONING = 5  # seconds ARM takes per app: the creates are in flight when the host dies


@pytest.fixture
def stack(tmp_path_factory):
    options = StackOptions(
        port=free_port(),
        state_dir=tmp_path_factory.mktemp("crash-drill"),
        test_admin_token=secrets.token_hex(16),
        emulator_args=["--provisioning-delay", str(PROVISIONING)],
        function_settings={"ACA_CULL_SCHEDULE": "0 0 0 1 1 *", "ACA_RECONCILE_SCHEDULE": "0 0 0 1 1 *"},
    )
    with Stack(options) as running:
        yield running


@pytest.mark.timeout(600)
def test_every_start_survives_a_functions_crash(stack: Stack):
    hub = HubAdmin(stack)
    keys = {user: server_key(stack.options.hub_id, user, "") for user in USERS}
    hub.expect("POST", "/users", {"usernames": USERS}, ok=(201,))
    began = time.monotonic()
    # all at once, as a class does (the hub answers each POST only after up to 10 s of spawning)
    with ThreadPoolExecutor(len(USERS)) as pool:
        posts = [pool.submit(hub.expect, "POST", f"/users/{quote(u)}/server", None, (201, 202)) for u in USERS]
        wait_until(lambda: stack.emulator_stats()["creates"] >= 1, timeout=60, interval=0.2,
                   what="the first create to reach ARM")
        stack.crash_functions()
        crashed = time.monotonic() - began
        for post in posts:
            post.result()


    def situation() -> str:
        ready = [u for u in USERS if (hub.default_server(u) or {}).get("ready")]
        return f"ready: {len(ready)}/10; functions log:\n{tail(read_log(stack, 'functions'), 30)}"

    wait_until(lambda: all((hub.default_server(u) or {}).get("ready") for u in USERS), timeout=240,
               interval=2, what="all ten servers ready", describe=situation)
    elapsed = time.monotonic() - began
    stats, apps = stack.emulator_stats(), stack.emulator_apps()
    assert set(apps) == set(keys.values()), sorted(apps)  # one app per server, no orphan
    assert stats["creates"] == len(USERS), stats  # each app created exactly once
    assert elapsed < 180, f"ready after {elapsed:.0f} s, beyond the demo's start_timeout"
    hub_log = read_log(stack, "hub")
    print(f"crash after {crashed:.1f} s; all ten ready after {elapsed:.1f} s; "
          f"resends: {hub_log.count('sending its start again')}")
