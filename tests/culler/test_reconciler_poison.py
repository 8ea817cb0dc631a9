"""The reconciler drains the lifecycle's poison queue (real Azurite, the ACA emulator for the ARM part).

Poison messages hold sealed requests with JupyterHub API tokens inside. Each
run logs every message's id, insertion time, dequeue count and why it was
poisoned, never its body, and deletes those older than the sealing maximum
age. Azurite stamps insertion times with its own (real) clock, so "older"
is reached by running the core with a clock an hour ahead (``now=...``), and
"sealed long ago" by sealing with ``now=time.time() - 3600``.
"""

from __future__ import annotations

import base64
import logging
import time

import pytest
from reconciler_support import HUB, reconciler_settings

from acaspawner import wire
from acaspawner.contract import Op, Request, ServerSpec
from acaspawner.naming import server_key
from acaspawner.sealing import DEFAULT_MAX_AGE, Sealer, generate_key
from acaspawner.storage_config import StorageConfig
from functions.followup import FollowUp, Keyring, Step
from functions.poison_drain import NO_KEYS, classify_poison
from functions.reconcile_run import ReconcileOptions
from functions.reconciler import reconcile, run_reconciler
from functions.storage import FunctionStorage

TOKEN = "poison-test-token-7c1e9a0b5d"  # the JupyterHub API token inside every start request
HOUR_AHEAD = 3600.0


def request(user: str = "alice", hub: str = HUB, generation: int = 7) -> Request:
    """A start request whose spec carries :data:`TOKEN` (like tests/functions/fn_support.request)."""
    return Request(
        op=Op.START,
        hub_id=hub,
        server_key=server_key(hub, user, ""),
        user=user,
        server_name="",
        generation=generation,
        spec=ServerSpec(image="example.org/notebook:1", env={"JUPYTERHUB_USER": user},
                        secret_env={"JUPYTERHUB_API_TOKEN": TOKEN}),
    )


@pytest.fixture
def store(storage_connection_string, unique_name) -> FunctionStorage:
    """Storage with a lifecycle queue (hence a poison queue) of its own."""
    config = StorageConfig(queue_name=unique_name("q"), table_name=unique_name("t"),
                           connection_string=storage_connection_string)
    return FunctionStorage(config)


def options(emulator, **changes) -> ReconcileOptions:
    return ReconcileOptions(hub_id=HUB, resource_group=emulator.resource_group, **changes)


def poison(store: FunctionStorage, body: str) -> str:
    """Put ``body`` on the poison queue as the host or the lifecycle would; returns the message id."""
    store.send_to_poison(body)
    return store.poison.peek_messages(max_messages=32)[-1].id


def visible(store: FunctionStorage) -> dict[str, str]:
    """Id → body of the messages visible on the poison queue now."""
    return {m.id: m.content for m in store.poison.peek_messages(max_messages=32)}


def poison_lines(caplog) -> dict[str, str]:
    """Message id → the reconciler's log line about it."""
    lines = {}
    for record in caplog.records:
        text = record.getMessage()
        if text.startswith("Poison message id="):
            lines[text.split("id=", 1)[1].split(" ", 1)[0]] = text
    return lines


def summary_line(caplog) -> str:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("aca-reconciler:")]
    assert len(lines) == 1
    return lines[0]


def assert_nothing_leaked(caplog, bodies: list[str]) -> None:
    """No log record holds the token, nor any run of a body's characters."""
    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert TOKEN not in text
    for body in bodies:
        for start in range(0, max(len(body) - 12, 1), 12):
            assert body[start:start + 12] not in text


def test_poison_messages_are_logged_and_deleted_once_past_the_maximum_age(aca_emulator, aca_client, store, caplog):
    sealer = Sealer([generate_key()])
    other = Sealer([generate_key()])
    bodies = {
        "old": wire.encode(sealer.seal(request("old"), now=time.time() - 3600)),
        "fresh": wire.encode(sealer.seal(request("fresh"))),
        "garbage": "not base64 at all! " + TOKEN,
        "otherkey": wire.encode(other.seal(request("otherkey"))),
    }
    ids = {name: poison(store, body) for name, body in bodies.items()}
    caplog.set_level(logging.INFO)

    summary = reconcile(options(aca_emulator), store, aca_client, poison=store.poison, sealer=sealer)

    assert (summary.poison_seen, summary.poison_deleted) == (4, 1)
    assert summary.errors == [] and summary.deleted == []
    # the old one is gone; the others are kept, and visible again at once (not only after the receive's timeout)
    assert set(visible(store)) == {ids["fresh"], ids["garbage"], ids["otherkey"]}
    lines = poison_lines(caplog)
    assert set(lines) == set(ids.values())
    assert "expired (ExpiredMessage)" in lines[ids["old"]] and "; deleted: older than" in lines[ids["old"]]
    assert "not valid base64" in lines[ids["garbage"]] and "kept for now" in lines[ids["garbage"]]
    assert "(UnknownKey)" in lines[ids["otherkey"]] and "kept for now" in lines[ids["otherkey"]]
    fresh = lines[ids["fresh"]]
    assert "authentic and readable request op=start" in fresh and "kept for now" in fresh
    assert f"server_key={server_key(HUB, 'fresh', '')} generation=7" in fresh
    assert "failing 5 deliveries" in fresh
    for line in lines.values():
        assert "inserted=20" in line and "dequeue_count=1" in line
    assert "poison_seen=4 poison_deleted=1 seconds=" in summary_line(caplog)
    assert_nothing_leaked(caplog, list(bodies.values()))

    # an hour later every one of them is past the maximum age (900 s) on the poison queue
    caplog.clear()
    summary = reconcile(options(aca_emulator), store, aca_client, poison=store.poison, sealer=sealer,
                        now=time.time() + HOUR_AHEAD)
    assert (summary.poison_seen, summary.poison_deleted) == (3, 3) and summary.errors == []
    assert visible(store) == {}
    lines = poison_lines(caplog)
    assert set(lines) == {ids["fresh"], ids["garbage"], ids["otherkey"]}
    assert all("; deleted: older than the sealing maximum age of 900 s" in line for line in lines.values())
    # classified as of when it was poisoned: still "failed its deliveries", not "expired"
    assert "authentic and readable request" in lines[ids["fresh"]]
    assert "dequeue_count=2" in lines[ids["fresh"]]  # the reconciler's second look
    assert "poison_seen=3 poison_deleted=3" in summary_line(caplog)
    assert_nothing_leaked(caplog, list(bodies.values()))


def test_a_run_looks_at_a_bounded_number_of_poison_messages(aca_emulator, aca_client, store):
    sealer = Sealer([generate_key()])
    for i in range(5):
        poison(store, wire.encode(sealer.seal(request(f"u{i}"))))
    later = time.time() + HOUR_AHEAD

    summary = reconcile(options(aca_emulator, poison_max_per_run=3), store, aca_client,
                        poison=store.poison, sealer=sealer, now=later)
    assert (summary.poison_seen, summary.poison_deleted) == (3, 3)
    assert any("3 poison messages (the most per run)" in note for note in summary.notes)
    assert len(visible(store)) == 2

    summary = reconcile(options(aca_emulator, poison_max_per_run=3), store, aca_client,
                        poison=store.poison, sealer=sealer, now=later)
    assert (summary.poison_seen, summary.poison_deleted) == (2, 2) and not summary.notes
    assert visible(store) == {}


def test_the_reconciler_runs_without_sealing_keys(aca_emulator, store, caplog):
    settings = reconciler_settings(aca_emulator, store, sealing=False)
    caplog.set_level(logging.INFO)

    # nothing was ever poisoned: the poison queue does not even exist
    summary = run_reconciler(settings)
    assert (summary.poison_seen, summary.poison_deleted) == (0, 0) and summary.errors == []

    sealed = wire.encode(Sealer([generate_key()]).seal(request()))
    ids = {"sealed": poison(store, sealed), "garbage": poison(store, "%%% " + TOKEN)}
    summary = run_reconciler(settings)
    assert (summary.poison_seen, summary.poison_deleted) == (2, 0) and summary.errors == []
    lines = poison_lines(caplog)
    assert NO_KEYS in lines[ids["sealed"]] and "kept for now" in lines[ids["sealed"]]
    assert "not valid base64" in lines[ids["garbage"]]
    assert set(visible(store)) == set(ids.values())

    caplog.clear()
    summary = run_reconciler(settings, now=time.time() + HOUR_AHEAD)
    assert (summary.poison_seen, summary.poison_deleted) == (2, 2) and summary.errors == []
    assert visible(store) == {}
    assert "poison_seen=2 poison_deleted=2" in summary_line(caplog)
    assert_nothing_leaked(caplog, [sealed, "%%% " + TOKEN])


def test_the_entry_point_uses_the_sealing_settings(aca_emulator, store, caplog):
    key = generate_key()
    settings = reconciler_settings(aca_emulator, store, ACA_SEALING_KEYS=f"{generate_key()}, {key}",
                                   ACA_SEAL_MAX_AGE="60")
    # sealed two minutes ago with the second (older) key: past a 60 s maximum age, so deleted at once
    message_id = poison(store, wire.encode(Sealer([key]).seal(request(), now=time.time() - 120)))
    caplog.set_level(logging.INFO)

    summary = run_reconciler(settings)
    assert (summary.poison_seen, summary.poison_deleted) == (1, 1)
    line = poison_lines(caplog)[message_id]
    assert "expired (ExpiredMessage): sealed more than 60 s before it was poisoned" in line
    assert "older than the sealing maximum age of 60 s" in line


# -- the reasons, without storage -------------------------------------------------------------------


def test_every_reason_is_told_without_the_body():
    sealer = Sealer([generate_key()], max_age=DEFAULT_MAX_AGE)
    now = time.time()

    def why(body, at=now, hub=HUB, with_sealer=sealer):
        return classify_poison(body, with_sealer, poisoned_at=at, now=now, hub_id=hub, max_dequeue_count=5)

    good = wire.encode(sealer.seal(request()))
    assert why(good).reason.startswith("authentic and readable request op=start") and not why(good).expired
    assert why(good, with_sealer=None).reason == NO_KEYS

    # poisoned fresh, looked at long after: still "failed its deliveries", and now past the maximum age
    aged = wire.encode(sealer.seal(request(), now=now - 3600))
    verdict = why(aged, at=now - 3590)
    assert verdict.reason.startswith("authentic and readable") and verdict.expired
    verdict = why(aged)
    assert verdict.reason.startswith("expired (ExpiredMessage)") and verdict.expired

    assert "not valid base64" in why("%%" + TOKEN).reason
    assert "(TamperedMessage)" in why(base64.b64encode(b"just some bytes " + TOKEN.encode()).decode()).reason
    sealed = sealer.seal(request())
    altered = sealed[:-5] + (b"AAAAA" if not sealed.endswith(b"AAAAA") else b"BBBBB")
    assert "(TamperedMessage)" in why(wire.encode(altered)).reason
    assert "(UnknownKey)" in why(wire.encode(Sealer([generate_key()]).seal(request()))).reason

    unreadable = why(wire.encode(sealer.seal_bytes(b'{"schema": 99, "secret": "' + TOKEN.encode() + b'"}')))
    assert unreadable.reason.startswith("authentic but unreadable (UnknownSchemaVersion)")
    assert "authentic but unreadable (ContractError)" in why(wire.encode(sealer.seal_bytes(b"\xff" + TOKEN.encode()))
                                                              ).reason

    foreign = why(wire.encode(sealer.seal(request(hub="hub-b"))))
    assert "for another hub (hub-b): refused by the lifecycle" in foreign.reason
    wrong_key = request()
    wrong_key.server_key = server_key(HUB, "mallory", "")
    assert "server key is not its user's and server's" in why(wire.encode(sealer.seal(wrong_key))).reason

    # follow-ups are the functions' own: sealed with their keys, not the hub's
    functions_sealer = Sealer([generate_key()], max_age=DEFAULT_MAX_AGE)
    keyring = Keyring(sealer, functions_sealer)
    follow_up = FollowUp.first(request(), Step.CREATE, since=now, delay=1, deadline=now + 480)
    verdict = why(wire.encode(functions_sealer.seal_bytes(follow_up.to_json().encode())), with_sealer=keyring)
    assert verdict.reason.startswith("authentic and readable follow-up (create) op=start server_key=")
    assert why(good, with_sealer=keyring).reason.startswith("authentic and readable request op=start")
    for forged in (sealer.seal_bytes(follow_up.to_json().encode()), functions_sealer.seal(request())):
        assert why(wire.encode(forged), with_sealer=keyring).reason.startswith("forged: ")

    for verdict in (why(good), unreadable, foreign):
        assert TOKEN not in verdict.reason
