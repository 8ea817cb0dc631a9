"""The function app in a process of its own for the benchmark, as in Azure.

On Azure the functions run on instances of their own: they share no CPU, and
no GIL, with the hub or with ARM. In one Python process with the hub's
spawners and the ARM emulator, every start invocation would also wait for
the hub's status reads and the emulator's requests. So the benchmark runs
``python -m local.funchost`` as a child process (settings in its
environment, never on its command line) and reads its invocation counters
from the file the host keeps current (``--stats-file``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from local.funchost.invoke import FunctionStats
from local.procs import REPO, stop_process_group

#: how long a counter may lag an invocation's end (the host rewrites the file every 0.1 s)
SETTLE_S = 0.3


class FunctionsProcess:
    """``python -m local.funchost`` with ``settings``, logging to ``state_dir / "functions.log"``."""

    def __init__(self, settings: dict[str, str], state_dir: Path, name: str = "functions"):
        self.settings = dict(settings)
        self.stats_file = state_dir / f"{name}-stats.json"
        self.log_path = state_dir / f"{name}.log"
        self._no_settings = state_dir / "no-local-settings.json"  # never a local.settings.json of the checkout
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> FunctionsProcess:
        """Start the host and return once it listens (it has written its first counters)."""
        self._no_settings.write_text('{"IsEncrypted": false, "Values": {}}')
        self.stats_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "local.funchost", "--app", str(REPO / "function_app.py"),
               "--host-json", str(REPO / "host.json"), "--settings", str(self._no_settings),
               "--stats-file", str(self.stats_file)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=REPO, start_new_session=True,
                                         env={**os.environ, **self.settings})
        deadline = time.monotonic() + timeout
        while not self.stats_file.is_file():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the functions host exited ({self.proc.returncode}); see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the functions host did not start in {timeout:g} s; see {self.log_path}")
            time.sleep(0.05)
        return self

    def counters(self) -> FunctionStats:
        """The host's counters, summed over its functions, as last written (at most 0.1 s behind)."""
        return FunctionStats(**json.loads(self.stats_file.read_text()))

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, timeout=30.0)
            self.proc = None


class FunctionInstances:
    """``count`` functions hosts on the same queues, as a Function App scaled out to ``count`` instances."""

    def __init__(self, settings: dict[str, str], state_dir: Path, count: int = 1):
        self.hosts = [FunctionsProcess(settings, state_dir, f"functions-{i}" if count > 1 else "functions")
                      for i in range(count)]

    def start(self) -> FunctionInstances:
        for host in self.hosts:
            host.start()
        return self

    @property
    def totals(self) -> FunctionStats:
        """Every host's counters summed, once invocations that just ended are in (``SETTLE_S``)."""
        time.sleep(SETTLE_S)
        return sum((h.counters() for h in self.hosts), FunctionStats())

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()
