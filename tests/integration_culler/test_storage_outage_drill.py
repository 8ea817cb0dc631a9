"""Fault drill: the storage account (queue and table) is unreachable for a while.

Three servers run; Azurite is frozen (SIGSTOP) for 30 s and, in a second run,
75 s. Meanwhile one user starts a server and one stops theirs. Afterwards:
the running servers still run in the hub, the start has either come up or
failed with a reason (it never hangs), and the stop went through once storage
was back (the spawner kept sending it), so its app is gone.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from culler_stack_support import HubAdmin, quote, read_log, tail
from waiting import wait_until

from acaspawner.naming import server_key
from local.procs import free_port
from local.stack import Stack, StackOptions

RUNNING = ["ana", "ben", "cleo"]
LATE = "dana"  # starts during the outage
STOPPER = "cleo"  # stops during the outage


@pytest.fixture
def stack(tmp_path_factory):
    options = StackOptions(
        port=free_port(),
        state_dir=tmp_path_factory.mktemp("outage-drill"),
        test_admin_token=secrets.token_hex(16),
        function_settings={"ACA_CULL_SCHEDULE": "0 0 0 1 1 *", "ACA_RECONCILE_SCHEDULE": "0 0 0 1 1 *"},
    )
    with Stack(options) as running:
        yield running


def ready(hub: HubAdmin, user: str) -> bool:
    return bool((hub.default_server(user) or {}).get("ready"))


@pytest.mark.timeout(720)
@pytest.mark.parametrize("outage", [30, 75])
def test_servers_survive_a_storage_outage_and_requests_made_during_it_end_clearly(stack: Stack, outage: int):
    hub = HubAdmin(stack, timeout=120)
    keys = {u: server_key(stack.options.hub_id, u, "") for u in [*RUNNING, LATE]}
    hub.expect("POST", "/users", {"usernames": [*RUNNING, LATE]}, ok=(201,))
    with ThreadPoolExecutor(len(RUNNING)) as pool:
        list(pool.map(lambda u: hub.expect("POST", f"/users/{quote(u)}/server", None, (201, 202)), RUNNING))
    wait_until(lambda: all(ready(hub, u) for u in RUNNING), timeout=180, interval=2, what="three servers ready")

    def situation() -> str:
        return (f"hub: { {u: hub.default_server(u) for u in [*RUNNING, LATE]} }\n"
                f"apps: {sorted(stack.emulator_apps())}\nhub log:\n{tail(read_log(stack, 'hub'), 30)}")

    azurite = stack.azurite.process
    os.killpg(azurite.pid, signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        with ThreadPoolExecutor(2) as pool:  # the hub may answer slowly while its sends time out
            late = pool.submit(hub.call, "POST", f"/users/{quote(LATE)}/server")
            stop = pool.submit(hub.call, "DELETE", f"/users/{quote(STOPPER)}/server")
            time.sleep(max(0.0, outage - (time.monotonic() - frozen)))
    finally:
        os.killpg(azurite.pid, signal.SIGCONT)
    assert stop.result()[0] in (202, 204), stop.result()
    assert late.result()[0] in (201, 202, 500), late.result()

    # the running servers were never given up by the hub
    for user in RUNNING:
        if user != STOPPER:
            assert ready(hub, user), situation()
    # the stop reached the functions once storage was back: the app is gone
    wait_until(lambda: keys[STOPPER] not in stack.emulator_apps(), timeout=180, interval=2,
               what="the stopped server's app to be removed", describe=situation)
    # the start made during the outage ended: running, or failed with a reason (not pending forever)
    wait_until(lambda: not (hub.default_server(LATE) or {}).get("pending"), timeout=240, interval=2,
               what="the start made during the outage to end", describe=situation)
    if ready(hub, LATE):
        assert keys[LATE] in stack.emulator_apps()
    else:
        hub_log = read_log(stack, "hub")
        assert "could not be sent" in hub_log or "could not be requested" in hub_log or "timed out" in hub_log, \
            tail(hub_log, 40)
    for user in RUNNING:
        if user != STOPPER:
            assert keys[user] in stack.emulator_apps()
