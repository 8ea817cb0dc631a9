"""Functions in worker processes of their own, apart from the host's queue and timer work (as on Azure)."""

from __future__ import annotations

import json
import logging
import os
import re

from funchost_support import FAST_HOST_JSON

from local.funchost import FunctionsHost

APP = """
import json
import os
import time

import azure.functions as func

app = func.FunctionApp()


def record(what, context):
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(json.dumps({"what": what, "pid": os.getpid(), "invocation": context.invocation_id}) + "\\n")


@app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="Storage")
def handler(msg: func.QueueMessage, context: func.Context) -> None:
    body = msg.get_body().decode()
    if body == "exit":
        os._exit(3)
    if body == "fail":
        raise RuntimeError("boom in the worker")
    time.sleep(0.2)  # long enough for a batch to spread over the workers
    record(body, context)


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *")
def ticker(timer: func.TimerRequest, context: func.Context) -> None:
    record("tick" + (" past due" if timer.past_due else ""), context)
"""


def _settings(conn: str, queue: str, record_file, **more: str) -> dict[str, str]:
    return {"Storage": conn, "QUEUE": queue, "RECORD_FILE": str(record_file), **more}


def _one_try(**more: str) -> dict:
    """The fast host.json with a single delivery per message (a failure is poisoned at once)."""
    return {**FAST_HOST_JSON, **more,
            "extensions": {"queues": {**FAST_HOST_JSON["extensions"]["queues"], "maxDequeueCount": 1}}}


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_functions_run_in_the_worker_processes_the_setting_asks_for(make_app, storage_connection_string,
                                                                    unique_name, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="local.funchost")
    queue, record_file = unique_name("q"), tmp_path / "calls"
    app = make_app(APP, FAST_HOST_JSON)
    settings = _settings(storage_connection_string, queue, record_file, FUNCTIONS_WORKER_PROCESS_COUNT="2")
    with FunctionsHost(app, settings, worker_processes=None).start(listen=False) as host:
        for i in range(8):
            host.send(queue, f"m{i}")
        host.drain(timeout=30)
        host.run_timer("ticker", past_due=True)
        stats = host.stats["handler"]
        assert (stats.invocations, stats.succeeded, stats.failed) == (8, 8, 0)
        assert stats.busy_s >= 8 * 0.2  # measured in the workers, counted by the host
    calls = _records(record_file)
    assert sorted(c["what"] for c in calls) == [*(f"m{i}" for i in range(8)), "tick past due"]
    pids = {c["pid"] for c in calls}
    assert len(pids) == 2 and os.getpid() not in pids
    # the context's invocation id is the one the host logged for the invocation
    logged = set(re.findall(r"Executing 'Functions\.\w+' \(Reason=.*, Id=([0-9a-f-]+)\)", caplog.text))
    assert {c["invocation"] for c in calls} <= logged and len(logged) == 9


def test_a_failure_in_a_worker_is_retried_then_poisoned_with_the_workers_traceback(
        make_app, storage_connection_string, unique_name, tmp_path, raw_queue, caplog):
    queue = unique_name("q")
    app = make_app(APP, FAST_HOST_JSON)  # maxDequeueCount 2
    with FunctionsHost(app, _settings(storage_connection_string, queue, tmp_path / "calls"),
                       worker_processes=1) as host:
        host.send(queue, "fail")
        host.drain(timeout=30)
        stats = host.stats["handler"]
        assert (stats.invocations, stats.failed, stats.poisoned) == (2, 2, 1)
    assert "RuntimeError: boom in the worker" in caplog.text
    assert raw_queue(f"{queue}-poison").get_queue_properties().approximate_message_count == 1


def test_a_worker_process_that_exits_fails_its_invocation_and_is_started_again(
        make_app, storage_connection_string, unique_name, tmp_path, caplog):
    queue, record_file = unique_name("q"), tmp_path / "calls"
    app = make_app(APP, _one_try())
    with FunctionsHost(app, _settings(storage_connection_string, queue, record_file),
                       worker_processes=1).start(listen=False) as host:
        host.send(queue, "exit")
        host.drain(timeout=30)
        host.send(queue, "after")
        host.drain(timeout=30)
        stats = host.stats["handler"]
        assert (stats.invocations, stats.failed, stats.succeeded, stats.poisoned) == (2, 1, 1, 1)
    assert "the worker process exited during the invocation" in caplog.text
    assert "starting it again" in caplog.text
    [after] = _records(record_file)
    assert after["what"] == "after" and after["pid"] != os.getpid()


ASYNC_APP = """
import asyncio
import json
import os

import azure.functions as func

app = func.FunctionApp()


@app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="Storage")
async def handler(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode()
    if body == "sleep":
        await asyncio.sleep(30)
    if body == "own timeout":
        raise TimeoutError("the function's own")
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(json.dumps({"what": body, "pid": os.getpid()}) + "\\n")
"""


def test_async_functions_in_a_worker_are_cut_off_at_the_function_timeout(make_app, storage_connection_string,
                                                                         unique_name, tmp_path, caplog):
    queue, record_file = unique_name("q"), tmp_path / "calls"
    app = make_app(ASYNC_APP, _one_try(functionTimeout="00:00:01"))
    with FunctionsHost(app, _settings(storage_connection_string, queue, record_file),
                       worker_processes=1).start(listen=False) as host:
        for body in ("sleep", "own timeout", "ok"):
            host.send(queue, body)
        host.drain(timeout=30)
        stats = host.stats["handler"]
        assert (stats.invocations, stats.succeeded, stats.failed, stats.timed_out) == (3, 1, 2, 1)
    assert "Timeout value of 1.0s exceeded by function 'handler'" in caplog.text
    assert "TimeoutError: the function's own" in caplog.text
    [ok] = _records(record_file)
    assert ok["what"] == "ok" and ok["pid"] != os.getpid()
