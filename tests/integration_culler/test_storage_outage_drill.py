"""Fault drill: the storage account (queue and table) is unreachable for a while.

Servers run; Azurite is frozen (SIGSTOP) for 30 s and, later on the same
stack, for 75 s. During each outage one user starts a server and one stops
theirs. After each: the running servers still run in the hub, the start has
either come up or failed with a reason (it never hangs), and the stop went
through once storage was back (the spawner kept sending it), so its app is gone.
The second outage also shows that the stack recovers from one outage into the next.
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

RUNNING = ["ana", "ben"]  # run through both outages
# (seconds Azurite is frozen, a user who runs before the outage and stops during it, a user who starts during it)
ROUNDS = [(30, "cleo", "dana"), (75, "erin", "fay")]
# what the spawner says of a start it could not send (spawner/acaspawner/spawner.py)
NOT_SENT = ("The start request could not be sent in time", "The server could not be requested right now")


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


@pytest.mark.timeout(1200)
def test_servers_survive_storage_outages_and_requests_made_during_them_end_clearly(stack: Stack):
    hub = HubAdmin(stack, timeout=120)
    users = [*RUNNING, *(user for _, stopper, late in ROUNDS for user in (stopper, late))]
    hub.expect("POST", "/users", {"usernames": users}, ok=(201,))
    for outage, stopper, late in ROUNDS:
        survive_an_outage(stack, hub, outage, running=[*RUNNING, stopper], stopper=stopper, late=late)


def survive_an_outage(stack: Stack, hub: HubAdmin, outage: int, *, running: list[str], stopper: str,
                      late: str) -> None:
    keys = {u: server_key(stack.options.hub_id, u, "") for u in [*running, late]}
    starting = [u for u in running if not ready(hub, u)]
    with ThreadPoolExecutor(len(starting)) as pool:
        list(pool.map(lambda u: hub.expect("POST", f"/users/{quote(u)}/server", None, (201, 202)), starting))
    wait_until(lambda: all(ready(hub, u) for u in running), timeout=180, interval=2,
               what=f"{', '.join(running)} ready before the {outage} s outage")

    def situation() -> str:
        return (f"{outage} s outage; hub: { {u: hub.default_server(u) for u in [*running, late]} }\n"
                f"apps: {sorted(stack.emulator_apps())}\nhub log:\n{tail(read_log(stack, 'hub'), 30)}")

    azurite = stack.azurite.process
    os.killpg(azurite.pid, signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        with ThreadPoolExecutor(2) as pool:  # the hub may answer slowly while its sends time out
            late_start = pool.submit(hub.call, "POST", f"/users/{quote(late)}/server")
            stop = pool.submit(hub.call, "DELETE", f"/users/{quote(stopper)}/server")
            time.sleep(max(0.0, outage - (time.monotonic() - frozen)))
    finally:
        os.killpg(azurite.pid, signal.SIGCONT)
    assert stop.result()[0] in (202, 204), stop.result()
    # the hub took the start (it answers once the spawn is slow); a failure comes later, with a reason
    assert late_start.result()[0] in (201, 202), late_start.result()

    # the running servers were never given up by the hub
    for user in running:
        if user != stopper:
            assert ready(hub, user), situation()
    # the stop reached the functions once storage was back: the app is gone
    wait_until(lambda: keys[stopper] not in stack.emulator_apps(), timeout=180, interval=2,
               what="the stopped server's app to be removed", describe=situation)
    # the start made during the outage ended: running, or failed with a reason (not pending forever)
    wait_until(lambda: not (hub.default_server(late) or {}).get("pending"), timeout=240, interval=2,
               what="the start made during the outage to end", describe=situation)
    if ready(hub, late):
        assert keys[late] in stack.emulator_apps()
    else:
        # the reason is on a line about this very server (the watcher's own timeouts name no server)
        hub_log = read_log(stack, "hub")
        lines = [line for line in hub_log.splitlines() if keys[late] in line and any(r in line for r in NOT_SENT)]
        assert lines, f"no hub log line gives {keys[late]}'s reason:\n{tail(hub_log, 40)}"
    for user in running:
        if user != stopper:
            assert keys[user] in stack.emulator_apps()
