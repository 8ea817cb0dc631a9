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
        [sys.executable, "-m", "local.bench", "--spawns", "2", "--burst", "3", "4", "--burst-repeats", "2",
         "--provisioning-delay", "1",
         "--retry-after", "1", "--environments", "2", "--environment-cores", "2", "--capacity-starts", "5",
         "--resume-users", "2", "--start-delay", "1", "--stop-delay", "1", "--warm-pool", "3", "--warm-extra", "1",
         "--scale-running", "40", "--scale-burst", "3", "--restart-running", "10", "--restart-repeats", "2",
         "--json", str(results), "--state-dir", str(state)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=360)
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

    # the burst table, a column per burst: bounds, traffic per spawn, and the correctness verdicts
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3:
            rows[cells[0]] = cells[1:]
    burst_header = next(key for key in rows if key.startswith("burst, ACA-like"))
    assert rows[burst_header] == ["3", "4"]
    assert "1 s per operation, Retry-After 1 s" in burst_header
    # 3 spawns fit ARM's write bucket: the bound is the provisioning delay alone
    assert rows["lower bound: write bucket + provisioning delay (s)"] == ["1.00", "1.00"]
    for row in ("wall / lower bound", "ARM reads averaged over the burst (per s)", "ARM reads / writes per spawn",
                "ARM 429s", "function busy seconds per spawn", "function invocations per spawn (failed, poisoned)"):
        assert row in rows
    assert rows["all running"] == ["yes", "yes"]
    assert rows["every run: all running, none failed, no duplicate app"] == ["yes", "yes"]
    # each burst ran twice: the column is the run of median wall time (the slower of two), both walls beside it
    walls = [[float(w) for w in cell.split(", ")] for cell in rows["wall time of each run, in order (s)"]]
    assert [len(w) for w in walls] == [2, 2]
    assert rows["wall time until every start() returned (s)"] == [f"{max(w):.2f}" for w in walls]
    assert rows["no duplicate apps"] == ["yes", "yes"]
    assert rows["apps / distinct names / creates / updates"] == ["3 / 3 / 3 / 0", "4 / 4 / 4 / 0"]
    assert rows["queue messages sent by the hub / table queries"][0].startswith("3 / ")
    assert rows["apps left after stop"] == ["0", "0"]
    assert rows["failed spawns (by throttling)"] == ["0 (0)", "0 (0)"]
    assert "maxPollingInterval" in out  # the shipped host.json, reported
    assert "functions hosts (processes of their own, as instances) / Python worker processes each / threads each" in out

    data = json.loads(results.read_text())
    assert data["config"]["function_instances"] == 1 and data["config"]["function_worker_processes"] == 1
    assert data["latency"]["direct"]["n"] == data["latency"]["queue"]["n"] == 2
    assert [b["spawns"] for b in data["bursts"]] == [3, 4]
    for burst in data["bursts"]:
        assert burst["runs"] == len(burst["wall_s_each"]) == 2 and burst["every_run_sound"]
        assert burst["all_running"] and burst["no_duplicates"] and burst["failed"] == 0
        assert burst["running"] == burst["answering_http"] == burst["spawns"]
        assert burst["busy_s"] > 0 and burst["invocations"] >= 2 * burst["spawns"]  # request + follow-up each

    # the warm pool: 3 of the 4 users bound to a warm server, the fourth falls back to a create and is told so;
    # the pool's warm servers are deleted before the next section (which counts on the environment's cores)
    pool = data["warm_pool"]
    assert (len(pool["warm"]), len(pool["cold"])) == (3, 1), pool
    assert "Every warm server is in use" in pool["fallback_message"], pool
    assert pool["refill_s"] is not None, pool

    # scale: the same burst of 3 with none and with 40 other servers running; a restart polls every server
    scale = data["scale"]
    assert [run["others"] for run in scale["runs"]] == [0, 40]
    assert scale["process"] == "the hub's own (local.bench_hub)"  # its loop lag is the hub's, not the functions'
    for run in scale["runs"]:
        assert run["restart_polled"] == run["restart_running"] == run["others"] + 3
        assert run["entities_read"] > 0 and run["table_queries"] > 0 and run["loop_lag_ms"]["n"] > 0
    assert "status rows the hub read per second" in out and "restart: poll() of every server" in out

    # restart: a real JupyterHub launched with 10 running servers (and with none) comes back with each of them:
    # polled, asked whether it answers, routed, its URL as the hub had stored it
    restart = data["restart"]
    none, ten = restart["runs"]
    assert (none["servers"], ten["servers"]) == (0, 10) and none["ready_s"] > 0 and ten["ready_s"] > 0
    assert ten["spawners_initialized"] == 10 and ten["servers_asked"] >= 10
    assert ten["routes"] == none["routes"] + 10 and ten["urls_rewritten"] == 0
    assert "launch → \"JupyterHub is now running\"" in out
    # the same launches with a spawner that does nothing: JupyterHub's own floor, and what the AcaSpawner adds
    floor_none, floor_ten = restart["floor"]
    # each measured twice, the spawners in turn; the median (of two: the slower) reported with both times
    assert restart["repeats"] == 2 and "median of 2" in out
    assert all(len(run["ready_s_each"]) == 2 and run["ready_s"] == max(run["ready_s_each"])
               for run in (none, ten, floor_none, floor_ten))
    assert (floor_none["servers"], floor_ten["servers"]) == (0, 10) and floor_ten["spawners_initialized"] == 10
    assert floor_ten["routes"] == ten["routes"] and restart["floor_ratio"] > 0
    assert restart["spawner_share_s"] == ten["init_spawners_s"] - floor_ten["init_spawners_s"]
    assert "JupyterHub's own floor" in out and "what the AcaSpawner adds to init_spawners" in out

    # capacity: 5 one-core starts on 2 environments of 2 cores: 4 placed, 2 each, the fifth refused by the
    # functions (NoCapacity), never by the environment's own quota
    assert "capacity: 5 concurrent 1-core starts, 2 environments of 2 cores" in out
    cap = data["capacity"]
    assert (cap["placed"], cap["refused"], cap["refused_no_capacity"]) == (4, 1, 1)
    assert sorted(cap["apps_per_environment"].values()) == [2, 2]
    assert sorted(cap["cores_in_use_per_environment"].values()) == [2, 2]
    assert cap["quota_refusals_by_aca"] == 0
    assert cap["refusal_example"].startswith("no capacity for 1 vCPU / 2 GiB: all 2 environments are full")

    # resume: in stop mode a restart starts the parked app; in delete mode it creates a new one
    assert any(line.startswith("| restart after a stop, 2 users at once") for line in out.splitlines())
    res = data["resume"]
    assert (res["stop"]["creates"], res["stop"]["starts"], res["stop"]["deletes"]) == (0, 2, 0)
    assert (res["delete"]["creates"], res["delete"]["starts"]) == (2, 0)
    assert res["stop"]["again"]["n"] == res["delete"]["again"]["n"] == 2

    # nothing left running: no app process in the emulator's state directory
    assert _processes_under(state) == []
