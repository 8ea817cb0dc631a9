"""``python -m local.funchost`` as a command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from waiting import wait_until

REPO = Path(__file__).resolve().parents[2]

APP = """
import os
from pathlib import Path

import azure.functions as func

app = func.FunctionApp()


@app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="")
def handler(msg: func.QueueMessage) -> None:
    pass


@app.timer_trigger(arg_name="timer", schedule="*/1 * * * * *")
def ticker(timer: func.TimerRequest) -> None:
    with open(os.environ["TICKS_FILE"], "a") as f:
        f.write("tick\\n")
"""


def run_cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "local.funchost", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_cli_indexes_without_listening(make_app, tmp_path):
    app = make_app(APP)
    local_settings = tmp_path / "local.settings.json"
    local_settings.write_text(
        json.dumps({"IsEncrypted": False, "Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}})
    )
    proc = run_cli("--app", str(app), "--settings", str(local_settings), "--set", "QUEUE=jobs", "--no-listen")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "queue_name='jobs'" in out and "schedule='*/1 * * * * *'" in out
    assert "UseDevelopmentStorage" not in out  # connection strings are not printed


def test_cli_runs_until_interrupted(make_app, tmp_path, storage_connection_string):
    app = make_app(APP)
    ticks = tmp_path / "ticks"
    proc = run_cli(
        "--app",
        str(app),
        "--dev-storage",
        storage_connection_string,
        "--set",
        "AzureWebJobsStorage=UseDevelopmentStorage=true",
        "--set",
        "QUEUE=cli-jobs",
        "--set",
        f"TICKS_FILE={ticks}",
    )

    def ticked() -> bool:
        assert proc.poll() is None, proc.stdout.read()
        return ticks.exists() and ticks.read_text().count("tick") >= 1

    try:
        wait_until(ticked, timeout=15, what="the timer to fire")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "Executed 'Functions.ticker' (Succeeded" in out
    assert "Stopping the functions host" in out
