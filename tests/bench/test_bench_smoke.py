"""The benchmark runs end to end with tiny numbers: its table has every row, and the burst is correct.

Correctness only (every server running in exactly one app, everything stopped
and cleaned up): timings depend on the machine and are never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from local.procs import stop_process_group

REPO = Path(__file__).resolve().parents[2]


def _processes_under(directory: Path) -> list[int]:
    """Processes whose working directory is inside ``directory`` (the emulator runs apps in their home)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(directory)):
            found.append(int(entry.name))
    return found


def test_bench_smoke(tmp_path):
    state, results = tmp_path / "state", tmp_path / "bench.json"
    # its own session, so a run that hangs is ended with everything it started (Azurite, emulator, apps)
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.bench", "--spawns", "2", "--burst", "3",
         "--json", str(results), "--state-dir", str(state)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=280)
    finally:
        stop_process_group(proc)
    assert proc.returncode == 0, err[-3000:]
    assert out.startswith("machine: ") and "Python " in out.splitlines()[0]

    # the latency table: both paths and their difference, with p50 and p95
    header = next(line for line in out.splitlines() if line.startswith("| path"))
    assert "p50 (s)" in header and "p95 (s)" in header
    for row in ("direct: ARM create LRO + get", "queue: AcaSpawner.start() → URL", "overhead of the queue"):
        assert f"| {row}" in out
    assert "request sent → function claimed it" in out

    # the burst table: traffic counters and the correctness verdicts
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    for row in ("wall time, all started (s)", "ARM requests", "ARM 429s seen", "queue messages sent by the hub",
                "table queries by the hub", "ARM write throttling (bucket / refill)"):
        assert row in rows
    assert rows["spawns"] == "3"
    assert rows["all running"] == "yes"
    assert rows["no duplicate apps"] == "yes"
    assert rows["ARM creates / updates"] == "3 / 0"
    assert rows["apps in emulator / distinct names"] == "3 / 3"
    assert rows["queue messages sent by the hub"] == "3"
    assert rows["stop all (s) / apps left"].endswith("/ 0")
    assert "maxPollingInterval 2 s" in out  # the shipped host.json, reported

    data = json.loads(results.read_text())
    assert data["latency"]["direct"]["n"] == data["latency"]["queue"]["n"] == 2
    burst = data["burst"]
    assert burst["all_running"] and burst["no_duplicates"] and burst["failed"] == 0
    assert burst["running"] == burst["answering_http"] == 3

    # nothing left running: no app process in the emulator's state directory
    assert _processes_under(state) == []
