"""Fault drill: every failed spawn tells the user why, through the hub's own progress stream.

One stack with a short start timeout (25 s). Each cause is provoked from
outside, as an operator would meet it, and a user's start is followed through
``GET /hub/api/users/{name}/server/progress``, the stream the spawn page reads:

* the Function App is not running (its host killed): "No function picked up ...";
* Azure keeps provisioning (the emulator's provisioning delay): "Azure was still working ...";
* the storage account freezes after the start was sent: "The status table could not be read ...";
* the storage account is frozen before the start is sent: "... could not be sent in time ...";
* the image cannot be pulled: ARM's code and message, and the request's id, which the drill then
  follows through the hub's log, the functions' log and the emulator's ARM request log (what the
  Azure activity log would show).

The same reason reaches the hub log with the server's key and generation, and
no app is left behind once the parts are back.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import threading
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from culler_stack_support import HubAdmin, quote, read_log, tail
from waiting import wait_until

from acaspawner.naming import server_key
from local.procs import free_port
from local.stack import Stack, StackOptions

# the hub's; the spawner answers a little before it. Long enough for a freeze 2-3 s after a start to make
# the status table stale (3 × 0.25 s + 10 s without a read) before the spawner's budget runs out.
START_TIMEOUT = 25
BUDGET = round(max(START_TIMEOUT - 5, 0.9 * START_TIMEOUT))  # what the spawner waits (its _start_budget)


@pytest.fixture
def stack(tmp_path_factory):
    options = StackOptions(
        port=free_port(),
        state_dir=tmp_path_factory.mktemp("reasons-drill"),
        test_admin_token=secrets.token_hex(16),
        start_timeout=START_TIMEOUT,
        function_settings={"ACA_CULL_SCHEDULE": "0 0 0 1 1 *", "ACA_RECONCILE_SCHEDULE": "0 0 0 1 1 *"},
    )
    with Stack(options) as running:
        yield running


class ProgressReader:
    """Reads a user's spawn progress stream in a thread, as the spawn page's EventSource does."""

    def __init__(self, hub: HubAdmin, user: str):
        self.url = f"{hub.base}/users/{quote(user)}/server/progress"
        self.token = hub.token
        self.events: list[dict] = []
        self.error: str = ""
        self.answer: Future | None = None  # the hub's answer to the POST that started the spawn
        self._thread = threading.Thread(target=self._read, name=f"progress-{user}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        request = urllib.request.Request(self.url, headers={"Authorization": f"token {self.token}",
                                                            "Accept": "text/event-stream"})
        try:
            with urllib.request.urlopen(request, timeout=START_TIMEOUT + 60) as stream:
                for raw in stream:
                    line = raw.decode().strip()
                    if line.startswith("data:"):
                        self.events.append(json.loads(line[5:]))
        except Exception as e:  # reported by last() when no final event came
            self.error = f"{type(e).__name__}: {e}"

    def last(self, timeout: float) -> dict:
        """The stream's final event (the one with ``failed`` or ``ready``)."""
        self._thread.join(timeout)
        final = [e for e in self.events if e.get("failed") or e.get("ready")]
        assert final, f"no final event on {self.url}: events {self.events}, error {self.error!r}"
        return final[-1]


def start_and_follow(hub: HubAdmin, user: str, pool: ThreadPoolExecutor) -> ProgressReader:
    """POST the start and open its progress stream as soon as the spawn is pending.

    The hub answers the POST only once the spawn takes longer than its slow_spawn_timeout (10 s, then
    202); the stream is followed from the start, so what the drill does next happens seconds after it.
    """
    answer = pool.submit(hub.call, "POST", f"/users/{quote(user)}/server")
    wait_until(lambda: answer.done() or (hub.default_server(user) or {}).get("pending") == "spawn",
               timeout=30, interval=0.1, what=f"the spawn of {user} to begin")
    reader = ProgressReader(hub, user)
    reader.answer = answer
    return reader


def failure_of(reader: ProgressReader) -> str:
    final = reader.last(timeout=START_TIMEOUT + 60)
    status, answer = reader.answer.result(timeout=60)
    assert status == 202, f"the start's POST: {status} {answer}"
    assert final.get("failed"), f"expected a failed spawn, got {final}"
    return final["message"]


def hub_log_names(stack: Stack, user: str, reason: str) -> None:
    """The hub log has the reason on the line that names the server's key and a generation."""
    key = server_key(stack.options.hub_id, user, "")
    log = read_log(stack, "hub")
    lines = [line for line in log.splitlines() if reason in line and key in line and "generation" in line]
    assert lines, f"no hub log line with {reason!r} and {key}:\n{tail(log, 30)}"


def follow_request_id(stack: Stack, request_id: str) -> None:
    """An admin given ``request_id`` by a user finds the request in every log: the hub's, the functions' (its
    request and each follow-up), and ARM's (the client request id of the write it caused)."""
    hub_lines = [line for line in read_log(stack, "hub").splitlines() if f"request id {request_id}" in line]
    assert any("Sent start for bad-image" in line for line in hub_lines), tail(read_log(stack, "hub"), 30)
    functions_lines = [line for line in read_log(stack, "functions").splitlines()
                       if f"request_id={request_id}" in line]
    assert any("Request(op=start" in line for line in functions_lines), tail(read_log(stack, "functions"), 30)
    assert any("FollowUp(op=start" in line for line in functions_lines), tail(read_log(stack, "functions"), 30)
    arm_log = Path(stack.emulator_info["arm_request_log"]).read_text()
    writes = [line for line in arm_log.splitlines() if line.endswith(f"client-request-id={request_id}")]
    key = server_key(stack.options.hub_id, "bad-image", "")
    assert any(" PUT " in line and line.split()[2].lower().endswith(f"/containerapps/{key}") for line in writes), \
        tail(arm_log, 20)


@pytest.mark.timeout(900)
def test_each_cause_of_a_failed_spawn_is_named_on_the_progress_stream(stack: Stack):
    hub = HubAdmin(stack, timeout=120)
    users = ["no-functions", "slow-azure", "table-frozen", "queue-frozen", "bad-image"]
    hub.expect("POST", "/users", {"usernames": users}, ok=(201,))
    with ThreadPoolExecutor(2) as pool:  # the POSTs, answered only once a spawn is slow
        # 1. the Function App is down: the start waits on the queue, nobody answers
        stack.kill_functions()
        message = failure_of(start_and_follow(hub, "no-functions", pool))
        assert f"No function picked up the start request within {BUDGET} s" in message, message
        assert "Function App running" in message, message
        hub_log_names(stack, "no-functions", "No function picked up the start request")
        stack.start_functions()

        # 2. Azure takes longer than the start timeout to provision
        stack.set_emulator_faults(provisioning_delay=START_TIMEOUT + 30)
        message = failure_of(start_and_follow(hub, "slow-azure", pool))
        assert f"Azure was still working on the server after {BUDGET} s (last status: provisioning" in message, message
        hub_log_names(stack, "slow-azure", "Azure was still working on the server")

        # 3 and 4. storage freezes: after one start was sent, and before another one could be
        reader = start_and_follow(hub, "table-frozen", pool)
        key = server_key(stack.options.hub_id, "table-frozen", "")
        wait_until(lambda: key in stack.emulator_apps(), timeout=30, interval=0.2, what="the create to reach ARM")
        azurite = stack.azurite.process
        os.killpg(azurite.pid, signal.SIGSTOP)
        try:
            frozen_start = start_and_follow(hub, "queue-frozen", pool)
            message = failure_of(reader)
            assert "The status table could not be read for the last" in message, message
            assert re.search(r"\((no answer yet|timed out after \d+ s)\)", message), message
            message = failure_of(frozen_start)
            assert "could not be sent in time (is the storage queue reachable?)" in message, message
        finally:
            os.killpg(azurite.pid, signal.SIGCONT)
        hub_log_names(stack, "table-frozen", "The status table could not be read")
        hub_log_names(stack, "queue-frozen", "The start request could not be sent in time")

        # 5. the image cannot be pulled: ARM's reason at once, and the id of the request it happened to
        stack.set_emulator_faults(provisioning_delay=0, fail_images=["*"])
        try:
            # ARM fails it within the hub's slow_spawn_timeout: the POST itself answers with the reason
            status, answer = hub.call("POST", f"/users/{quote('bad-image')}/server")
        finally:
            stack.set_emulator_faults(fail_images=[])
        assert status == 500, (status, answer)
        message = answer["message"]
        assert "MANIFEST_UNKNOWN" in message, message
        found = re.search(r"\(ContainerAppOperationError; request id ([0-9a-f-]{36})\)", message)
        assert found, message
        follow_request_id(stack, found[1])

    # what Prometheus scrapes from the hub: each failure counted by its code (the functions') or reason (the hub's)
    request = urllib.request.Request(f"{stack.public_url}/hub/metrics",
                                     headers={"Authorization": f"token {stack.options.test_admin_token}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        scraped = r.read().decode()
    assert 'jupyterhub_aca_spawn_failures_total{code="timeout"} 4.0' in scraped, scraped[-3000:]
    assert 'jupyterhub_aca_spawn_failures_total{code="ContainerAppOperationError"} 1.0' in scraped, scraped[-3000:]

    # nothing outlives its failed spawn: each timeout sent a stop, and the parts are back
    stack.set_emulator_faults(provisioning_delay=0)
    wait_until(lambda: not stack.emulator_apps(), timeout=180, interval=2,
               what="every app of a failed spawn to be removed",
               describe=lambda: f"apps: {sorted(stack.emulator_apps())}\n{tail(read_log(stack, 'functions'), 30)}")
    for user in users:
        assert not (hub.default_server(user) or {}).get("pending"), hub.user(user)
