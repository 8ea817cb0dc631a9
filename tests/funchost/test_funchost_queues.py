"""Queue triggers from a real Azurite, with the Functions host's semantics."""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import time

import azure.functions as func
import pytest
from funchost_support import FAST_HOST_JSON
from waiting import wait_until

from local.funchost import FunctionsHost

RECORDING_APP = """
import os

import azure.functions as func

app = func.FunctionApp()
CALLS = []


@app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="Storage")
def handler(msg: func.QueueMessage) -> None:
    CALLS.append(msg)
    if os.environ.get("FAIL") == "1":
        raise RuntimeError("boom")
"""


def settings(conn: str, queue: str, **more: str) -> dict[str, str]:
    return {"Storage": conn, "QUEUE": queue, "FAIL": "0", **more}


def host_json(**queues) -> dict:
    data = copy.deepcopy(FAST_HOST_JSON)
    data["extensions"]["queues"].update(queues)
    return data


def test_base64_message_is_decoded_and_deleted(make_app, storage_connection_string, unique_name, raw_queue):
    queue = unique_name("q")
    payload = b"\x00\xff sealed \xfe bytes"
    app = make_app(RECORDING_APP, FAST_HOST_JSON)
    with FunctionsHost(app, settings(storage_connection_string, queue)).start(listen=False) as host:
        sent = raw_queue(queue).send_message(base64.b64encode(payload).decode())
        host.drain(timeout=10)
        [msg] = host.module.CALLS
        assert type(msg) is func.queue.QueueMessage
        assert msg.get_body() == payload
        assert msg.id == sent.id
        assert msg.dequeue_count == 1
        assert msg.pop_receipt and msg.insertion_time is not None and msg.expiration_time is not None
        assert host.stats["handler"].succeeded == 1 and host.totals.failed == 0
        assert host.queue_lengths() == {queue: 0}
        assert raw_queue(f"{queue}-poison").get_queue_properties().approximate_message_count == 0


def test_failing_message_is_retried_then_poisoned(make_app, storage_connection_string, unique_name, raw_queue, caplog):
    caplog.set_level(logging.DEBUG)
    queue = unique_name("q")
    body = base64.b64encode(b"will fail").decode()
    app = make_app(RECORDING_APP, host_json(maxDequeueCount=3, visibilityTimeout="00:00:01"))
    with FunctionsHost(app, settings(storage_connection_string, queue, FAIL="1")) as host:  # background polling
        started = time.monotonic()
        raw_queue(queue).send_message(body)
        host.drain(timeout=20)
        # three tries, each but the last followed by a 1 s visibility timeout
        assert time.monotonic() - started >= 2
        assert [m.dequeue_count for m in host.module.CALLS] == [1, 2, 3]
        stats = host.stats["handler"]
        assert (stats.invocations, stats.failed, stats.succeeded, stats.poisoned) == (3, 3, 0, 1)
        assert host.queue_lengths() == {queue: 0}
    [poisoned] = raw_queue(f"{queue}-poison").receive_messages(max_messages=5)
    assert poisoned.content == body  # the original stored body
    assert "will fail" not in caplog.text and body not in caplog.text  # bodies are never logged
    assert "Functions.handler" in caplog.text and host.module.CALLS[0].id in caplog.text


def test_non_base64_body_goes_to_poison_without_invocation(
    make_app, storage_connection_string, unique_name, raw_queue, caplog
):
    caplog.set_level(logging.DEBUG)
    queue = unique_name("q")
    body = '{"op": "start"}'  # JSON sent without base64: the host cannot decode it
    app = make_app(RECORDING_APP, FAST_HOST_JSON)
    with FunctionsHost(app, settings(storage_connection_string, queue)).start(listen=False) as host:
        raw_queue(queue).send_message(body)
        host.drain(timeout=10)
        assert host.module.CALLS == []
        assert host.stats["handler"].invocations == 0 and host.stats["handler"].poisoned == 1
    [poisoned] = raw_queue(f"{queue}-poison").receive_messages(max_messages=5)
    assert poisoned.content == body
    assert "not valid base64" in caplog.text and body not in caplog.text


def test_message_encoding_none_hands_raw_text(make_app, storage_connection_string, unique_name, raw_queue):
    queue = unique_name("q")
    app = make_app(RECORDING_APP, host_json(messageEncoding="none"))
    with FunctionsHost(app, settings(storage_connection_string, queue)).start(listen=False) as host:
        raw_queue(queue).send_message('{"op": "stop"}')
        host.send("handler", "sent by the host helper")  # encoded per host.json: stays raw text
        host.drain(timeout=10)
        assert sorted(m.get_body() for m in host.module.CALLS) == sorted(
            [b'{"op": "stop"}', b"sent by the host helper"]
        )
        assert all(m.dequeue_count == 1 for m in host.module.CALLS)


def test_send_encodes_base64_and_wakes_the_listener(make_app, storage_connection_string, unique_name, raw_queue,
                                                    monkeypatch):
    import local.funchost.queues as queues

    # after its first (empty) receive the listener waits at least this long before polling again: only
    # the wake that send() gives it can deliver the message within the drain's 10 s
    monkeypatch.setattr(queues, "MIN_POLL_SECONDS", 60.0)
    queue = unique_name("q")
    app = make_app(RECORDING_APP, host_json(maxPollingInterval="00:01:00"))
    with FunctionsHost(app, settings(storage_connection_string, queue)) as host:
        host.wait_for_empty_poll(queue)  # its first receive found nothing: it waits out its (minute-long) backoff
        host.send(queue, b"\x01\x02")
        host.drain(timeout=10)  # woken, not waiting for the next poll (a minute away)
        assert [m.get_body() for m in host.module.CALLS] == [b"\x01\x02"]


def test_batch_runs_concurrently(make_app, storage_connection_string, unique_name):
    queue = unique_name("q")
    app = make_app(
        """
        import threading

        import azure.functions as func

        app = func.FunctionApp()
        BARRIER = threading.Barrier(4, timeout=5)  # passes only if four invocations run at once

        @app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="Storage")
        def handler(msg: func.QueueMessage) -> None:
            BARRIER.wait()
        """,
        host_json(batchSize=4),
    )
    with FunctionsHost(app, settings(storage_connection_string, queue)).start(listen=False) as host:
        for i in range(4):
            host.send("handler", f"m{i}")
        assert host.run_once(timeout=15) == 4
        assert host.stats["handler"].succeeded == 4


def test_async_function_and_context(make_app, storage_connection_string, unique_name):
    queue = unique_name("q")
    app = make_app(
        """
        import asyncio
        import threading

        import azure.functions as func

        app = func.FunctionApp()
        SEEN = []

        @app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="Storage")
        async def handler(msg: func.QueueMessage, context: func.Context) -> None:
            await asyncio.sleep(0)
            SEEN.append((msg.get_body(), context.function_name, context.invocation_id, threading.current_thread().name))
        """,
        FAST_HOST_JSON,
    )
    with FunctionsHost(app, settings(storage_connection_string, queue)).start(listen=False) as host:
        host.send("handler", b"x")
        host.drain(timeout=10)
        [(body, name, invocation_id, thread)] = host.module.SEEN
        assert (body, name, thread) == (b"x", "handler", "funchost-loop")
        assert len(invocation_id) == 36


def test_function_timeout_cancels_coroutines(make_app, storage_connection_string, unique_name):
    queue = unique_name("q")
    app = make_app(
        """
        import asyncio

        import azure.functions as func

        app = func.FunctionApp()

        @app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="Storage")
        async def handler(msg: func.QueueMessage) -> None:
            await asyncio.sleep(30)
        """,
        {**host_json(maxDequeueCount=1), "functionTimeout": "00:00:01"},
    )
    with FunctionsHost(app, settings(storage_connection_string, queue)).start(listen=False) as host:
        host.send("handler", b"slow")
        host.drain(timeout=10)
        stats = host.stats["handler"]
        assert (stats.invocations, stats.timed_out, stats.poisoned) == (1, 1, 1)


def test_stop_is_prompt_and_releases_unfinished_messages(
    make_app, storage_connection_string, unique_name, raw_queue
):
    queue = unique_name("q")
    app = make_app(
        """
        import asyncio

        import azure.functions as func

        app = func.FunctionApp()
        STARTED = []

        @app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="Storage")
        async def handler(msg: func.QueueMessage) -> None:
            STARTED.append(msg.id)
            await asyncio.sleep(60)
        """,
        FAST_HOST_JSON,
    )
    host = FunctionsHost(app, settings(storage_connection_string, queue), shutdown_grace=0.5).start()
    module = host.module
    host.send("handler", b"long")
    wait_until(lambda: module.STARTED, timeout=10)
    started = time.monotonic()
    host.stop()
    assert time.monotonic() - started < 20  # prompt: the grace (0.5 s), not the handler's 60 s sleep
    assert host.stats["handler"].failed == 1  # cancelled
    [again] = raw_queue(queue).receive_messages(max_messages=1, visibility_timeout=5)
    assert again.id == module.STARTED[0] and again.dequeue_count == 2  # visible again at once


async def test_usable_from_async_code(make_app, storage_connection_string, unique_name):
    queue = unique_name("q")
    app = make_app(RECORDING_APP, FAST_HOST_JSON)
    async with FunctionsHost(app, settings(storage_connection_string, queue)) as host:
        await host.asend("handler", b"from async")
        async with asyncio.timeout(10):
            await host.adrain()
        assert [m.get_body() for m in host.module.CALLS] == [b"from async"]


def test_missing_queues_are_created(make_app, storage_connection_string, unique_name, raw_queue):
    queue = unique_name("q")
    with FunctionsHost(make_app(RECORDING_APP, FAST_HOST_JSON), settings(storage_connection_string, queue)).start(
        listen=False
    ) as host:
        assert host.queue_client("handler").get_queue_properties().name == queue
        assert host.queue_client("handler", poison=True).get_queue_properties().name == f"{queue}-poison"


@pytest.mark.parametrize("listen", [True, False])
def test_drain_times_out_while_a_message_keeps_failing(make_app, storage_connection_string, unique_name, listen):
    queue = unique_name("q")
    app = make_app(RECORDING_APP, host_json(maxDequeueCount=100, visibilityTimeout="00:00:01"))
    with FunctionsHost(app, settings(storage_connection_string, queue, FAIL="1")).start(listen=listen) as host:
        host.send("handler", b"x")
        with pytest.raises(TimeoutError, match=queue):
            host.drain(timeout=1.5)


def test_lease_is_renewed_while_a_function_runs(
    make_app, storage_connection_string, unique_name, raw_queue, monkeypatch
):
    import local.funchost.queues as queues

    # a 6 s lease, renewed every 3 s (half the lease) instead of every 5 minutes: a renewal may come
    # up to 3 s late before the message would reappear, which a busy machine does not reach
    monkeypatch.setattr(queues, "LEASE_SECONDS", 6)
    renewals = []
    renew = queues.QueueListener._renew

    async def counted_renew(self, message_id, receipt):
        renewals.append(message_id)
        return await renew(self, message_id, receipt)

    monkeypatch.setattr(queues.QueueListener, "_renew", counted_renew)
    queue = unique_name("q")
    app = make_app(
        """
        import time

        import azure.functions as func

        app = func.FunctionApp()
        CALLS = []

        @app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="Storage")
        def handler(msg: func.QueueMessage) -> None:
            CALLS.append(msg.dequeue_count)
            time.sleep(8)  # longer than the lease: without renewal the message would reappear
        """,
        FAST_HOST_JSON,
    )
    with FunctionsHost(app, settings(storage_connection_string, queue)) as host:
        sent = host.send("handler", b"slow")
        host.drain(timeout=30)
        assert host.module.CALLS == [1]
        assert host.stats["handler"].succeeded == 1
        assert renewals and set(renewals) == {sent}  # renewed while it ran
        assert host.queue_lengths() == {queue: 0}  # deleted with the renewed pop receipt


def test_function_timeout_is_reported_for_threads(make_app, storage_connection_string, unique_name, caplog):
    queue = unique_name("q")
    app = make_app(
        """
        import time

        import azure.functions as func

        app = func.FunctionApp()

        @app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="Storage")
        def handler(msg: func.QueueMessage) -> None:
            time.sleep(2.5)  # well past the 1 s timeout, so the timeout is seen before the thread ends
        """,
        {**FAST_HOST_JSON, "functionTimeout": "00:00:01"},
    )
    with FunctionsHost(app, settings(storage_connection_string, queue)).start(listen=False) as host:
        host.send("handler", b"slow")
        host.drain(timeout=10)
        # a thread cannot be stopped: it is reported, and its outcome still counts
        assert "exceeded functionTimeout" in caplog.text
        assert host.stats["handler"].succeeded == 1
