"""Fault drill: the functions host dies while a class's creates are in flight.

Ten users start their servers through the hub's REST API. ARM throttles the
burst: its write bucket holds one token and refills only every few minutes, so
the first create goes through and the next ones are answered 429 with a
Retry-After of minutes, which the functions' ARM client waits out inside its
invocations, holding their messages' leases. Once one create has reached ARM
and one has been throttled, ARM's limits are back to normal and the functions
host is killed with SIGKILL and started again at once. The dead host's leased
messages stay invisible (in Azure for up to ten minutes), so only the spawner's
resend of a start without progress brings those servers back: the hub log must
show it. With the demo's timeouts (start_timeout 180 s) every server must come
up, each app created exactly once, nothing left over.
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
    # one write token, the next one ten minutes away (ARM's own buckets are back before the crash)
    stack.set_emulator_faults(write_bucket=1, write_refill=1 / 600)

    def create_sent_and_one_throttled() -> bool:
        stats = stack.emulator_stats()
        return stats["creates"] >= 1 and stats["throttled"] >= 1

    began = time.monotonic()
    # all at once, as a class does (the hub answers each POST only after up to 10 s of spawning)
    with ThreadPoolExecutor(len(USERS)) as pool:
        posts = [pool.submit(hub.expect, "POST", f"/users/{quote(u)}/server", None, (201, 202)) for u in USERS]
        # one create is in flight at ARM, and at least one invocation waits out a 429: it holds its lease
        wait_until(create_sent_and_one_throttled, timeout=60, interval=0.2,
                   what="one create to reach ARM and one to be throttled",
                   describe=lambda: f"emulator: {stack.emulator_stats()}")
        stack.set_emulator_faults(write_bucket=200, write_refill=10.0)
        stack.crash_functions()
        crashed = time.monotonic() - began
        for post in posts:
            post.result()

    def situation() -> str:
        ready = [u for u in USERS if (hub.default_server(u) or {}).get("ready")]
        return (f"ready: {len(ready)}/10; emulator: {stack.emulator_stats()}\n"
                f"hub log:\n{tail(read_log(stack, 'hub'), 20)}\nfunctions log:\n{tail(read_log(stack, 'functions'), 30)}")

    def all_ended() -> bool:  # ready, or no longer pending (a failed spawn): then stop waiting
        servers = [hub.default_server(u) or {} for u in USERS]
        return all(s.get("ready") or not s.get("pending") for s in servers)

    wait_until(all_ended, timeout=240, interval=2, what="all ten spawns to end", describe=situation)
    elapsed = time.monotonic() - began
    # ready means within the hub's start_timeout (180 s): a slower spawn fails and is not ready
    assert all((hub.default_server(u) or {}).get("ready") for u in USERS), situation()
    stats, apps = stack.emulator_stats(), stack.emulator_apps()
    assert set(apps) == set(keys.values()), sorted(apps)  # one app per server, no orphan
    assert stats["creates"] == len(USERS), stats  # each app created exactly once
    hub_log = read_log(stack, "hub")
    resends = hub_log.count("sending its start again")
    # the starts the dead host held leased came back only through the spawner's resend
    assert resends >= 1, tail(hub_log, 40)
    print(f"crash after {crashed:.1f} s; all ten ready after {elapsed:.1f} s; resends: {resends}; "
          f"429s: {stats['throttled']}")
