"""``python -m local.bench``: what the queue costs a spawn, and how class-size bursts behave in ACA-like time.

Runs the whole system on this machine (Azurite, the ACA emulator, the functions dev
host running the real ``function_app.py`` with the committed host.json) and measures,
in one run:

* **latency**, with an instant emulator (no provisioning delay, Retry-After 1 s), one
  spawn at a time (p50/p95 over ``--spawns`` each), side by side:
  **direct**: the ARM calls alone, as a spawner calling ARM itself would make them
  (``begin_create_or_update`` followed to its end, with the functions' own client and
  body); **queue**: ``AcaSpawner.start()`` until it returns the URL: sealed request →
  Azurite queue → lifecycle function → emulator → follow-up → status table → watcher.
* **bursts** of ``--burst`` concurrent ``start()`` calls (default 100 and 500) with
  ACA-like pacing: every operation takes ``--provisioning-delay`` s (default 20),
  long-running operations answer ``Retry-After: --retry-after`` (default 5), and ARM's
  throttling buckets apply (writes 200, +10/s; reads 250, +25/s). Next to each wall
  time stands the lower bound that ARM's write bucket and the provisioning delay
  imply; per spawn, ARM reads and writes, 429s, function invocations and the seconds
  they kept a worker busy. Then every server is stopped and the emulator is watched
  until no app is left. The functions place the bursts' servers across every emulated
  environment (``--environments``), ``--burst-environment-cores`` each, capacity ledger on.
  Each burst runs ``--burst-repeats`` times (default 3): how the last apps' completions fall
  between the functions' looks moves a burst's wall time by a second or more from run to
  run, so the table shows the run of median wall time, every run's wall time beside it,
  and whether every run had all servers running, none failed and no duplicate app.
* **scale**: the same burst (``--scale-burst``) with no other server and with
  ``--scale-running`` servers already running (:mod:`local.bench_scale`): the status rows
  the hub reads per second, its event-loop lag, and a restart's poll of every server.
* **restart**: a real ``jupyterhub`` (the demo's configuration and proxy) launched with
  ``--restart-running`` running servers in its database and status table, and with none:
  the seconds until it runs (:mod:`local.bench_restart`).
* **capacity**: a second functions host places servers across a pool of
  ``--environments`` emulated environments of ``--environment-cores`` cores each
  (the emulator enforces that quota itself), with the same ACA-like pacing;
  ``--capacity-starts`` concurrent 1-core starts, more than the pool holds: where
  they were placed, how long a placed start took, how fast a start beyond the
  pool was refused (``NoCapacity``), and the cores each environment holds then.
* **resume**: ``--resume-users`` users with homes start, stop and start again, once with
  ``ACA_STOP_MODE=stop`` (the app is parked, then updated with the new token and started)
  and once with the default ``delete`` (the app is deleted, then created again), with the
  same ACA-like pacing; starts and stops of an existing app take ``--start-delay`` and
  ``--stop-delay`` (guesses: no published figure was found).
* **warm pool**: ``--warm-pool`` warm servers are made ready, then ``--warm-pool`` +
  ``--warm-extra`` users start at once with the same ACA-like pacing: the first are bound
  to warm servers, the rest create apps; and the pool's refill (:mod:`local.bench_pool`).

Apps run a tiny socket server (``local/tinyapp.py``) as OS processes, so they start in
milliseconds. This is a measurement, not a test: nothing is asserted about timings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import platform
import random
import resource
import secrets
import shutil
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
from azure.functions.decorators.timer import TimerTrigger
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import User

from acaspawner.contract import Op
from acaspawner.hub_storage import HubStorage, close_shared
from acaspawner.naming import server_key
from acaspawner.sealing import generate_key
from acaspawner.spawner import AcaSpawner
from acaspawner.spec import build_request, next_generation
from acaspawner.storage_config import DEFAULT_QUEUE, DEFAULT_TABLE
from acaspawner.watcher import close_watchers
from functions import runtime
from functions.app_body import build_container_app
from functions.arm import app_fqdn
from functions.settings import Settings
from functions.warm_pool import SLOT_PREFIX
from local.azurite import start_azurite
from local.bench_functions import FunctionInstances
from local.bench_pool import IMAGE_MAP, WARM_IMAGE, PoolSection, pool_settings
from local.bench_restart import render_restart, run_restart
from local.bench_scale import render_scale, timed_starts
from local.emulator import start_in_thread
from local.funchost import FunctionsHost, load_function_app, load_host_json
from local.homes import provision_homes
from local.procs import REPO
from local.stats import median_run, percentile, summary
from local.tinyapp import APP_COMMAND

HUB_ID = "bench"
PUBLIC_URL = "https://hub.bench.test/"
IMAGE = "bench/app:1"
SPAWN_TIMEOUT = 300  # seconds for one spawn (AcaSpawner.start_timeout, ARM budget of a direct create)
# the latency comparison runs on an instant emulator: what is left is the queue path's own cost
INSTANT = {"provisioning_delay": 0.0, "retry_after": 1}


# --- measuring --------------------------------------------------------------------------------------


def machine() -> dict[str, str | int]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# --- the parts --------------------------------------------------------------------------------------


def function_settings(azurite, emulator, cores_each: float) -> dict[str, str]:
    """App settings of the functions against the emulator (as local/stack.py sets them); servers are placed in
    every environment of the emulator, ``cores_each`` cores each (the capacity ledger on)."""
    return {
        "AcaStorage": azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "ACA_LIFECYCLE_QUEUE": DEFAULT_QUEUE,
        "ACA_STATUS_TABLE": DEFAULT_TABLE,
        "ACA_HUB_ID": HUB_ID,
        "ACA_SEALING_KEYS": generate_key(),
        "ACA_FOLLOWUP_KEYS": generate_key(),
        "ACA_SUBSCRIPTION_ID": emulator.subscription_id,
        "ACA_RESOURCE_GROUP": emulator.resource_group,
        "ACA_ENVIRONMENT_ID": emulator.environment_id,
        "ACA_ENVIRONMENTS": json.dumps([{"id": env, "cores": cores_each} for env in emulator.environment_ids]),
        "ACA_LOCATION": emulator.location,
        "ACA_ALLOWED_IMAGES": "bench/*",
        "ACA_ARM_ENDPOINT": emulator.arm_endpoint,
        "ACA_ARM_CA_BUNDLE": str(emulator.ca_bundle),
        "ACA_ARM_TOKEN": "local-emulator",
    }


def timer_functions(app_path: Path) -> list[str]:
    """Names of the app's timer functions (the benchmark runs the lifecycle function only)."""
    loaded = load_function_app(app_path)
    try:
        return [f.get_function_name() for f in loaded.app.get_functions() if isinstance(f.get_trigger(), TimerTrigger)]
    finally:
        loaded.unload()


class Hubside:
    """Spawners built as JupyterHub builds them (``User._new_spawner``), on an in-memory hub database."""

    def __init__(self, db, settings: dict[str, str]):
        self.db = db
        self.hub = Hub(base_url="/hub/", bind_url="http://127.0.0.1:8081/hub/", public_host=PUBLIC_URL.rstrip("/"))
        self.hub.connect_url = "http://hub-app/hub/"
        self.traits = {
            "storage_connection_string": settings["AcaStorage"], "sealing_keys": settings["ACA_SEALING_KEYS"],
            "hub_id": HUB_ID, "queue_name": settings["ACA_LIFECYCLE_QUEUE"], "table_name": settings["ACA_STATUS_TABLE"],
            "image": IMAGE, "cmd": APP_COMMAND, "cpu": 0.5, "memory": "1Gi",
            "start_timeout": SPAWN_TIMEOUT, "stop_timeout": SPAWN_TIMEOUT,
        }

    def spawner(self, user_name: str) -> AcaSpawner:
        orm_user = orm.User(name=user_name)
        self.db.add(orm_user)
        self.db.commit()
        user = User(orm_user, {"public_url": urlparse(PUBLIC_URL), "hub": self.hub})
        return user._new_spawner("", spawner_class=AcaSpawner, api_token=secrets.token_hex(16),
                                 oauth_client_id=f"jupyterhub-user-{user_name}", **self.traits)


class Bench:
    """One benchmark run: :meth:`run` starts the parts, measures, and always stops everything."""

    def __init__(self, args: argparse.Namespace, db):
        self.args = args
        self.db = db
        self.rng = random.Random(0)
        self.result: dict = {"machine": machine(), "command": " ".join(["python -m local.bench", *sys.argv[1:]]),
                             "bursts": []}
        self.azurite = self.emulator = self.host = None

    # -- setup and teardown --------------------------------------------------------------------------

    def run(self, state: Path) -> dict:
        args = self.args
        self.state_dir = state
        try:
            (state / "azurite").mkdir(exist_ok=True)
            self.azurite = start_azurite(state / "azurite", log_path=state / "azurite.log")
            faults = {"provisioning_delay": args.provisioning_delay, "write_bucket": args.write_bucket,
                      "write_refill": args.write_refill, "retry_after": args.retry_after or None}
            extra = [f"cae-pool-{i}" for i in range(2, args.environments + 1)]
            self.emulator = start_in_thread(state_dir=state / "aca", more_environments=extra, image_map=IMAGE_MAP,
                                            **INSTANT)
            self.settings = function_settings(self.azurite, self.emulator, args.burst_environment_cores)
            app_path = REPO / "function_app.py"
            if args.function_threads:
                self.settings["PYTHON_THREADPOOL_THREAD_COUNT"] = str(args.function_threads)
            self.settings["FUNCTIONS_WORKER_PROCESS_COUNT"] = str(args.function_processes)
            for name in timer_functions(app_path):
                self.settings[f"AzureWebJobs.{name}.Disabled"] = "true"
            self.host = FunctionInstances(self.settings, state, args.function_instances).start()
            self.result["config"] = self.config(faults)
            asyncio.run(self.measure())
        finally:
            if self.host is not None:
                self.host.stop()
            if getattr(self, "pool_host", None) is not None:
                self.pool_host.stop()
            if self.emulator is not None:
                self.emulator.close()  # ends every app process
            if self.azurite is not None:
                self.azurite.stop()
        return self.result

    def config(self, faults: dict) -> dict:
        queues = load_host_json(REPO / "host.json").queues
        threads = self.settings.get("PYTHON_THREADPOOL_THREAD_COUNT") or min(32, (os.cpu_count() or 1) + 4)
        return {
            "host_json": {"maxPollingInterval_s": queues.max_polling_interval, "batchSize": queues.batch_size,
                          "newBatchThreshold": queues.new_batch_threshold, "source": "the committed host.json"},
            "function_worker_threads": int(threads),
            "function_instances": self.args.function_instances,
            "function_worker_processes": self.args.function_processes,
            "timer_functions_disabled": [k.split(".")[1] for k in self.settings if k.endswith(".Disabled")],
            "arm_poll_interval_s": Settings.from_environ(self.settings).arm_poll_interval,
            "emulator": faults,
            "burst_environments": {"count": len(self.emulator.environment_ids),
                                   "cores_each": self.args.burst_environment_cores},
            "emulator_latency": INSTANT,
            "spawner": {"status_poll_interval_fast_s": AcaSpawner.status_poll_interval_fast.default_value,
                        "status_poll_interval_s": AcaSpawner.status_poll_interval.default_value},
            "app": f"{IMAGE} = tiny socket server ({Path(sys.executable).name} -I -S -c ...)",
        }

    async def measure(self) -> None:
        self.hubside = Hubside(self.db, self.settings)
        self.arm_settings = Settings.from_environ(self.settings)
        self.apps = runtime.build_deps(self.arm_settings).apps  # the functions' own ARM client
        try:
            await self.latency()
            for n in self.args.burst:
                runs = []
                for run in range(self.args.burst_repeats):
                    # ACA-like pacing, full buckets: each burst starts on a quiet subscription
                    self.emulator.set_faults(**self.result["config"]["emulator"], read_bucket=250, read_refill=25.0)
                    runs.append(await self.burst(n, run))
                self.result["bursts"].append({**median_run(runs, "wall_s"), "runs": len(runs),
                                              # a run is all running only if none of its starts failed
                                              "every_run_sound": all(run["all_running"] and run["no_duplicates"]
                                                                     for run in runs)})
            if self.args.scale_running:
                self.emulator.set_faults(**self.result["config"]["emulator"], read_bucket=250, read_refill=25.0)
                self.result["scale"] = await self.scale(self.args.scale_running, self.args.scale_burst)
            if self.args.restart_running:
                self.result["restart"] = await asyncio.to_thread(run_restart, self.settings["AcaStorage"],
                                                                 self.state_dir, self.args.restart_running,
                                                                 self.args.restart_repeats)
            if self.args.resume_users:
                self.emulator.set_faults(**self.result["config"]["emulator"], read_bucket=250, read_refill=25.0,
                                         start_delay=self.args.start_delay, stop_delay=self.args.stop_delay)
                await self.resume(self.args.resume_users)
            if self.args.warm_pool:
                self.emulator.set_faults(**INSTANT)
                await self.warm_pool(self.args.warm_pool, self.args.warm_extra)
            if self.args.capacity_starts:
                self.emulator.set_faults(**self.result["config"]["emulator"], read_bucket=250, read_refill=25.0,
                                         core_quota=self.args.environment_cores)
                await self.capacity(self.args.capacity_starts)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close_watchers(), 10)
                await asyncio.wait_for(close_shared(), 10)
            self.apps.close()
        self.result["memory"] = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                 **self.result.get("memory", {})}

    # -- the two paths -------------------------------------------------------------------------------

    async def direct_spawn(self, user: str) -> float:
        """Create one app the way a spawner calling ARM would; seconds for the ARM calls."""
        spec = self.hubside.spawner(user).server_spec()
        key = server_key(HUB_ID, user, "")
        request = build_request(Op.START, hub_id=HUB_ID, server_key=key, user=user, server_name="",
                                generation=next_generation(0), spec=spec)
        body = build_container_app(request, self.arm_settings)
        client, group = self.apps.client, self.apps.resource_group

        def create() -> dict:
            # what a spawner calling ARM itself would do: follow the operation to its end
            poller = client.container_apps.begin_create_or_update(group, key, body, polling_interval=1)
            app = poller.result(timeout=SPAWN_TIMEOUT).as_dict()
            return app if app_fqdn(app) else client.container_apps.get(group, key).as_dict()

        began = time.perf_counter()
        app = await asyncio.to_thread(create)
        elapsed = time.perf_counter() - began
        if not app_fqdn(app):
            raise RuntimeError(f"direct create of {key} returned no ingress fqdn")
        return elapsed

    async def queue_spawn(self, spawner: AcaSpawner) -> tuple[float, dict[str, float]]:
        """``start()`` until the URL; seconds, and where they went (from the status events' timestamps)."""
        spawner.clear_state()  # as JupyterHub does before every spawn
        began = time.perf_counter()
        await spawner.start()
        elapsed = time.perf_counter() - began
        returned = time.time()
        status = spawner.watcher.get(spawner.server_key)
        times: dict[str, float] = {}
        for event in status.events:
            times.setdefault(event["phase"], event["time"])  # the first event of each phase
        sent = spawner.generation / 1000  # generations are the request's creation time in ms
        return elapsed, {"queue_to_function": times["provisioning"] - sent,
                         "function_and_arm": times["running"] - times["provisioning"],
                         "table_to_url": returned - times["running"]}

    async def latency(self) -> None:
        n = self.args.spawns
        await self.direct_spawn("warm-direct")  # untimed: first client connection, table creation, ...
        warm = self.hubside.spawner("warm-queue")
        await self.queue_spawn(warm)
        direct: list[float] = []
        queue: list[float] = []
        parts: dict[str, list[float]] = {}
        spawners = [warm]
        async with asyncio.timeout(30 * n + 120):
            for i in range(n):
                direct.append(await self.direct_spawn(f"direct-{i:03d}"))
                # users arrive at random moments relative to the functions' polling back-off
                await asyncio.sleep(self.rng.uniform(0, self.result["config"]["host_json"]["maxPollingInterval_s"]))
                spawner = self.hubside.spawner(f"queue-{i:03d}")
                spawners.append(spawner)
                seconds, split = await self.queue_spawn(spawner)
                queue.append(seconds)
                for name, value in split.items():
                    parts.setdefault(name, []).append(value)
                print(f"  spawn {i + 1}/{n}: direct {direct[-1]:.2f} s, queue {seconds:.2f} s", file=sys.stderr)
        self.result["latency"] = {"direct": summary(direct), "queue": summary(queue),
                                  "queue_parts": {k: summary(v) for k, v in parts.items()},
                                  "samples": {"direct": direct, "queue": queue}}
        await self.cleanup(spawners, direct_users=("warm-direct", *(f"direct-{i:03d}" for i in range(n))))

    async def cleanup(self, spawners: list[AcaSpawner], direct_users: tuple[str, ...] = ()) -> None:
        """Stop the queue path's servers (``stop()``) and delete the direct path's apps (``begin_delete``)."""
        limit = asyncio.Semaphore(8)

        async def delete(user: str) -> None:
            async with limit:
                await asyncio.to_thread(self.apps.send_delete, server_key(HUB_ID, user, ""))

        async with asyncio.timeout(2 * SPAWN_TIMEOUT + 60):
            await asyncio.gather(*(s.stop() for s in spawners), *(delete(u) for u in direct_users))

    # -- the burst -------------------------------------------------------------------------------------

    async def burst(self, n: int, run: int = 0) -> dict:
        """Run ``run`` of a burst of ``n`` starts (users of its own), then every server stopped; what it
        measured."""
        emulator, host = self.emulator, self.host
        first = "memory" not in self.result
        tracemalloc.start()  # only while the spawners are made: tracing would slow everything else down
        try:
            spawners = [self.hubside.spawner(f"b{n}-{run}-{i:03d}") for i in range(n)]
            if first:
                self.result["memory"] = {"python_kib_per_spawner": tracemalloc.get_traced_memory()[0] / 1024 / n}
        finally:
            tracemalloc.stop()
        storage = HubStorage.shared(spawners[0].storage_config)
        arm0, fn0 = emulator.stats, host.totals
        sent0, queries0 = storage.requests_sent, storage.table_queries

        print(f"  burst of {n}: starting", file=sys.stderr)
        began = time.perf_counter()
        outcomes = await timed_starts(spawners, SPAWN_TIMEOUT + 60, return_exceptions=True)
        wall = time.perf_counter() - began
        arm1, fn1 = emulator.stats, host.totals
        keys = [s.server_key for s in spawners]
        apps = {name: info for name, info in emulator.apps.items() if name in set(keys)}
        running = [k for k in keys if k in apps and apps[k].provisioning_state == "Succeeded"
                   and apps[k].running_status == "Running"]
        urls = [s.last_url for s in spawners]
        routed = sum(bool(k in apps and u == f"http://{apps[k].fqdn}") for k, u in zip(keys, urls, strict=True))
        by_method = Counter(arm1["requests_by_method"]) - Counter(arm0["requests_by_method"])
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        faults = self.result["config"]["emulator"]
        bound = max(0.0, (n - faults["write_bucket"]) / faults["write_refill"]) + faults["provisioning_delay"]
        reads = by_method.get("GET", 0)
        writes = sum(v for k, v in by_method.items() if k in ("PUT", "POST", "PATCH"))
        b = {
            "spawns": n, "wall_s": wall, "lower_bound_s": bound, "ratio": wall / bound if bound else None,
            "start": summary([o for o in outcomes if isinstance(o, float)]),
            "failed": len(errors), "errors": sorted({f"{type(e).__name__}: {e}" for e in errors})[:5],
            "failed_by_throttling": sum("429" in str(e) or "Throttl" in str(e) for e in errors),
            "arm_requests": arm1["requests"] - arm0["requests"], "arm_by_method": dict(sorted(by_method.items())),
            "arm_reads": reads, "arm_writes": writes, "arm_reads_per_s": reads / wall,
            "arm_429": arm1["throttled"] - arm0["throttled"],
            "creates": arm1["creates"] - arm0["creates"], "updates": arm1["updates"] - arm0["updates"],
            "queue_messages": storage.requests_sent - sent0, "table_queries": storage.table_queries - queries0,
            "invocations": fn1.invocations - fn0.invocations, "invocations_failed": fn1.failed - fn0.failed,
            "busy_s": fn1.busy_s - fn0.busy_s, "poisoned": fn1.poisoned - fn0.poisoned,
            "apps": len(apps), "distinct_names": len(set(keys)), "running": len(running), "urls_match_apps": routed,
            "answering_http": await self.answering(urls),
        }
        b["all_running"] = b["running"] == n == b["urls_match_apps"] == b["answering_http"] and not errors
        b["no_duplicates"] = b["apps"] == b["distinct_names"] == b["creates"] == n and b["updates"] == 0
        print(f"  burst of {n}: {b['running']} running after {wall:.1f} s; stopping", file=sys.stderr)
        stop_began = time.perf_counter()
        await self.cleanup(spawners)
        b["stop_returned_s"] = time.perf_counter() - stop_began
        for _ in range(2 * SPAWN_TIMEOUT):  # stop() returns once the table says so: watch ARM catch up
            if not any(name in emulator.apps for name in keys):
                break
            await asyncio.sleep(0.5)
        b["stop_all_gone_s"] = time.perf_counter() - stop_began
        b["apps_left_after_stop"] = sum(name in emulator.apps for name in keys)
        return b

    # -- restarting a stopped server: parked and resumed, or deleted and created again ---------------------

    async def resume(self, n: int) -> None:
        """``n`` users with homes start, stop and start again, in each stop mode."""
        homes = provision_homes(self.emulator.info())
        self.result["resume"] = {"users": n, "start_delay_s": self.args.start_delay,
                                 "stop_delay_s": self.args.stop_delay}
        for mode in ("delete", "stop"):
            settings = {**self.settings, **homes, "ACA_STOP_MODE": mode, "ACA_LIFECYCLE_QUEUE": f"bench-{mode}",
                        "ACA_STATUS_TABLE": f"bench{mode}"}
            host = FunctionsHost(REPO / "function_app.py", settings=settings, host_json=REPO / "host.json",
                                 local_settings=self.state_dir / "no-local-settings.json").start()
            try:
                hubside = Hubside(self.db, settings)
                hubside.traits["home_storage_name"] = homes["ACA_HOME_STORAGE_NAME"]
                spawners = [hubside.spawner(f"resume-{mode}-{i:03d}") for i in range(n)]
                print(f"  resume ({mode} mode): {n} users start, stop, start again", file=sys.stderr)
                first = await self.starts(spawners)
                await asyncio.gather(*(s.stop() for s in spawners))
                arm0 = self.emulator.stats
                again = await self.starts(spawners)
                arm1 = self.emulator.stats
                self.result["resume"][mode] = {
                    "first": summary(first), "again": summary(again),
                    **{k: arm1[k] - arm0[k] for k in ("creates", "updates", "starts", "deletes")},
                }
                await asyncio.gather(*(s.stop() for s in spawners))
                await asyncio.gather(*(asyncio.to_thread(self.apps.send_delete, s.server_key) for s in spawners))
            finally:
                host.stop()

    async def warm_pool(self, n: int, extra: int) -> None:
        """``n`` warm servers, ``n + extra`` users starting at once (``local.bench_pool``)."""
        homes = provision_homes(self.emulator.info())
        settings = pool_settings(self.settings, homes, n)
        hubside = Hubside(self.db, settings)
        hubside.traits.update(image=WARM_IMAGE, home_storage_name=homes["ACA_HOME_STORAGE_NAME"])

        def pacing() -> None:
            self.emulator.set_faults(**self.result["config"]["emulator"], read_bucket=250, read_refill=25.0)

        section = PoolSection(settings, self.state_dir, pacing, hubside.spawner, self.starts)
        try:
            self.result["warm_pool"] = await section.run(n, extra)
        finally:
            await self.delete_warm_servers()

    async def delete_warm_servers(self) -> None:
        """Delete the warm servers the pool keeps, and wait until they are gone: the sections after this one
        count on their environment's cores."""
        slots = [name for name in self.emulator.apps if name.startswith(SLOT_PREFIX)]
        await asyncio.gather(*(asyncio.to_thread(self.apps.send_delete, name) for name in slots))
        deadline = time.monotonic() + SPAWN_TIMEOUT
        while left := [name for name in slots if name in self.emulator.apps]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(left)} warm servers were not deleted within {SPAWN_TIMEOUT} s")
            await asyncio.sleep(0.5)

    async def scale(self, running: int, burst: int) -> dict:
        """The scale section, its spawners in a hub process of their own (:mod:`local.bench_hub`)."""
        config = {"settings": self.settings, "running": running, "burst": burst,
                  "log": str(self.state_dir / "bench-hub.log")}
        hub = await asyncio.create_subprocess_exec(sys.executable, "-m", "local.bench_hub", cwd=REPO,
                                                   stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        out, _ = await hub.communicate(json.dumps(config).encode())
        if hub.returncode != 0:
            raise RuntimeError(f"the scale section's hub process failed ({hub.returncode}); see its stderr above")
        return json.loads(out)

    async def starts(self, spawners: list[AcaSpawner]) -> list[float]:
        """Concurrent ``start()`` of every spawner; the seconds each took."""
        return await timed_starts(spawners, SPAWN_TIMEOUT + 60)

    # -- capacity across environments -------------------------------------------------------------------

    async def capacity(self, n: int) -> None:
        """``n`` concurrent 1-core starts against a pool of environments that holds fewer."""
        cores = self.args.environment_cores
        settings = {**self.settings, "ACA_LIFECYCLE_QUEUE": "bench-pool", "ACA_STATUS_TABLE": "benchpool",
                    "ACA_ENVIRONMENTS": json.dumps([{"id": i, "cores": cores} for i in self.emulator.environment_ids])}
        self.pool_host = FunctionsHost(REPO / "function_app.py", settings=settings, host_json=REPO / "host.json",
                                       local_settings=self.state_dir / "no-local-settings.json").start()
        hubside = Hubside(self.db, settings)
        hubside.traits.update(cpu=1.0, memory="2Gi")
        spawners = [hubside.spawner(f"pool-{i:03d}") for i in range(n)]
        fn0 = self.pool_host.totals

        async def timed(spawner: AcaSpawner) -> tuple[bool, float, str]:
            began = time.perf_counter()
            spawner.clear_state()
            try:
                await spawner.start()
                return True, time.perf_counter() - began, ""
            except Exception as e:  # what the spawn page would show
                return False, time.perf_counter() - began, getattr(e, "jupyterhub_message", None) or str(e)

        print(f"  capacity: {n} starts on {len(self.emulator.environment_ids)} x {cores:g} cores", file=sys.stderr)
        async with asyncio.timeout(SPAWN_TIMEOUT + 60):
            outcomes = await asyncio.gather(*(timed(s) for s in spawners))
        usage = self.emulator.environment_usage
        placed = [t for ok, t, _ in outcomes if ok]
        refused = [(t, why) for ok, t, why in outcomes if not ok]
        apps = self.emulator.apps
        per_env = Counter(apps[s.server_key].environment for s in spawners if s.server_key in apps)
        self.result["capacity"] = {
            "starts": n, "environments": len(self.emulator.environment_ids), "cores_each": cores,
            "placed": len(placed), "placed_start_s": summary(placed),
            "refused": len(refused), "refused_no_capacity": sum("no capacity" in why.lower() for _, why in refused),
            "refused_s": summary([t for t, _ in refused]), "refusal_example": refused[0][1] if refused else "",
            "apps_per_environment": dict(sorted(per_env.items())),
            "cores_in_use_per_environment": {name: u["cores_in_use"] for name, u in sorted(usage.items())},
            "quota_refusals_by_aca": sum(u["quota_refusals"] for u in usage.values()),
            "invocations": self.pool_host.totals.invocations - fn0.invocations,
        }
        print(f"  capacity: {len(placed)} placed, {len(refused)} refused; stopping", file=sys.stderr)
        await self.cleanup(spawners)

    async def answering(self, urls: list[str]) -> int:
        """How many URLs answer HTTP 200 through the emulator's ingress."""
        limit = asyncio.Semaphore(20)

        async def ok(session: aiohttp.ClientSession, url: str) -> bool:
            async with limit:
                try:
                    async with session.get(url) as response:
                        return response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    return False

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            return sum(await asyncio.gather(*(ok(session, u) for u in urls if u)))


# --- output -----------------------------------------------------------------------------------------


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def render(result: dict) -> str:
    m, c, lat = result["machine"], result["config"], result["latency"]
    d, q = lat["direct"], lat["queue"]
    f = "{:.2f}".format
    out = [f"machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, {m['date']}",
           f"command: {result['command']}", ""]
    out.append(table([
        ["path (one spawn at a time)", "spawns", "p50 (s)", "p95 (s)", "mean (s)", "max (s)"],
        ["direct: ARM create LRO + get", str(d["n"]), f(d["p50"]), f(d["p95"]), f(d["mean"]), f(d["max"])],
        ["queue: AcaSpawner.start() → URL", str(q["n"]), f(q["p50"]), f(q["p95"]), f(q["mean"]), f(q["max"])],
        ["overhead of the queue (queue − direct)", "", f(q["p50"] - d["p50"]), f(q["p95"] - d["p95"]),
         f(q["mean"] - d["mean"]), ""],
    ]))
    parts = lat["queue_parts"]
    names = {"queue_to_function": "request sent → function claimed it (queue polling)",
             "function_and_arm": "claimed → 'running' written (ARM create, follow-up)",
             "table_to_url": "'running' written → start() returned (status watcher)"}
    out += ["", table([["where the queue path's time goes", "p50 (s)", "p95 (s)", "mean (s)"],
                       *([names[k], f(v["p50"]), f(v["p95"]), f(v["mean"])] for k, v in parts.items())])]
    e = c["emulator"]
    yes = {True: "yes", False: "NO"}
    bursts = result["bursts"]

    def row(label: str, cell) -> list[str]:
        return [label, *(cell(b) for b in bursts)]

    out += ["", table([
        [f"burst, ACA-like: {e['provisioning_delay']:g} s per operation, Retry-After {e['retry_after']} s, "
         f"ARM writes {e['write_bucket']} +{e['write_refill']:g}/s, reads 250 +25/s; the run of median wall time "
         f"of {bursts[0]['runs'] if bursts else 0}", *(str(b["spawns"]) for b in bursts)],
        row("wall time until every start() returned (s)", lambda b: f(b["wall_s"])),
        row("wall time of each run, in order (s)", lambda b: ", ".join(f(w) for w in b["wall_s_each"])),
        row("lower bound: write bucket + provisioning delay (s)", lambda b: f(b["lower_bound_s"])),
        row("wall / lower bound", lambda b: f(b["ratio"]) if b["ratio"] else "-"),
        row("start() p50 / p95 / max (s)",
            lambda b: f"{f(b['start']['p50'])} / {f(b['start']['p95'])} / {f(b['start']['max'])}" if b["start"]["n"]
            else "-"),
        row("all running / URL = app fqdn / answering HTTP",
            lambda b: f"{b['running']} / {b['urls_match_apps']} / {b['answering_http']}"),
        row("failed spawns (by throttling)", lambda b: f"{b['failed']} ({b['failed_by_throttling']})"),
        row("apps / distinct names / creates / updates",
            lambda b: f"{b['apps']} / {b['distinct_names']} / {b['creates']} / {b['updates']}"),
        row("no duplicate apps", lambda b: yes[b["no_duplicates"]]),
        row("ARM requests by method", lambda b: ", ".join(f"{k} {v}" for k, v in b["arm_by_method"].items())),
        row("ARM reads averaged over the burst (per s)", lambda b: f(b["arm_reads_per_s"])),
        row("ARM reads / writes per spawn", lambda b: f"{f(b['arm_reads'] / b['spawns'])} / "
            f"{f(b['arm_writes'] / b['spawns'])}"),
        row("ARM 429s", lambda b: str(b["arm_429"])),
        row("function invocations per spawn (failed, poisoned)",
            lambda b: f"{f(b['invocations'] / b['spawns'])} ({b['invocations_failed']}, {b['poisoned']})"),
        row("function busy seconds per spawn", lambda b: f(b["busy_s"] / b["spawns"])),
        row("queue messages sent by the hub / table queries", lambda b: f"{b['queue_messages']} / {b['table_queries']}"),
        row("stop all: stop() returned / every app gone (s)",
            lambda b: f"{f(b['stop_returned_s'])} / {f(b['stop_all_gone_s'])}"),
        row("apps left after stop", lambda b: str(b["apps_left_after_stop"])),
        row("all running", lambda b: yes[b["all_running"]]),
        row("every run: all running, none failed, no duplicate app", lambda b: yes[b["every_run_sound"]]),
    ])]
    h, sp, mem = c["host_json"], c["spawner"], result["memory"]
    out += ["", table([
        ["run settings", "value"],
        ["queue trigger (the committed host.json)", f"maxPollingInterval {h['maxPollingInterval_s']:g} s, "
         f"batchSize {h['batchSize']}, newBatchThreshold {h['newBatchThreshold']}"],
        ["functions hosts (processes of their own, as instances) / Python worker processes each / threads each",
         f"{c.get('function_instances', 1)} / {c.get('function_worker_processes', 1)} / "
         f"{c['function_worker_threads']}"],
        ["environments the bursts are placed in (capacity ledger on)",
         f"{c['burst_environments']['count']} of {c['burst_environments']['cores_each']:g} cores"],
        ["timer functions (not run)", ", ".join(c["timer_functions_disabled"]) or "none"],
        ["latency pacing (instant emulator)", f"provisioning delay {c['emulator_latency']['provisioning_delay']:g} s, "
         f"Retry-After {c['emulator_latency']['retry_after']} s"],
        ["follow-up looks after the first (which waits for Retry-After)",
         f"every {c['arm_poll_interval_s']:g} s (ACA_ARM_POLL_INTERVAL)"],
        ["spawner status poll (starting / idle)", f"{sp['status_poll_interval_fast_s']:g} s / "
         f"{sp['status_poll_interval_s']:g} s"],
        ["app", c["app"]],
        ["peak RSS of the benchmark process", f"{mem['peak_rss_mib']:.0f} MiB (hub side + emulator; the functions run apart)"],
        ["Python memory per spawner", f"{mem['python_kib_per_spawner']:.0f} KiB (User, orm rows, AcaSpawner)"],
    ])]
    if result.get("scale"):
        out += render_scale(result["scale"], table, f)
    if result.get("restart"):
        out += render_restart(result["restart"], table, f)
    cap = result.get("capacity")
    if cap:
        out += ["", table([
            [f"capacity: {cap['starts']} concurrent 1-core starts, {cap['environments']} environments of "
             f"{cap['cores_each']:g} cores (ACA-like pacing as above)", "value"],
            ["placed / refused with NoCapacity / refused otherwise",
             f"{cap['placed']} / {cap['refused_no_capacity']} / {cap['refused'] - cap['refused_no_capacity']}"],
            ["apps per environment", ", ".join(f"{k} {v}" for k, v in cap["apps_per_environment"].items())],
            ["cores in use once all were placed, per environment (the emulator's count)",
             ", ".join(f"{k} {v:g}" for k, v in cap["cores_in_use_per_environment"].items())],
            ["quota refusals by the emulator (over-commit)", str(cap["quota_refusals_by_aca"])],
            ["placed start() p50 / p95 / max (s)", f"{f(cap['placed_start_s']['p50'])} / "
             f"{f(cap['placed_start_s']['p95'])} / {f(cap['placed_start_s']['max'])}" if cap["placed"] else "-"],
            ["refused start() p50 / max (s)", f"{f(cap['refused_s']['p50'])} / {f(cap['refused_s']['max'])}"
             if cap["refused"] else "-"],
            ["function invocations", str(cap["invocations"])],
        ])]
        if cap["refusal_example"]:
            out += [f"what a refused user reads: {cap['refusal_example']}"]
    res = result.get("resume")
    if res:
        def span(part: dict) -> str:
            return f"{f(part['p50'])} / {f(part['max'])}"

        d, s = res["delete"], res["stop"]
        out += ["", table([
            [f"restart after a stop, {res['users']} users at once, homes mounted (ACA-like: {e['provisioning_delay']:g} s "
             f"per create/update, start {res['start_delay_s']:g} s, stop {res['stop_delay_s']:g} s: guesses)",
             "delete mode (default)", "stop mode (parked)"],
            ["first start() p50 / max (s)", span(d["first"]), span(s["first"])],
            ["start() after a stop p50 / max (s)", span(d["again"]), span(s["again"])],
            ["ARM during the restart: creates / updates / starts / deletes",
             f"{d['creates']} / {d['updates']} / {d['starts']} / {d['deletes']}",
             f"{s['creates']} / {s['updates']} / {s['starts']} / {s['deletes']}"],
        ])]
    pool = result.get("warm_pool")
    if pool:
        def times(values: list[float]) -> str:
            if not values:
                return "-"
            return f"{len(values)}: {f(percentile(values, 0.5))} / {f(percentile(values, 0.95))} / {f(max(values))}"

        refill = pool["refill_s"]
        out += ["", table([
            [f"warm pool: {pool['pool']} warm servers, {pool['users']} users start at once (ACA-like pacing as "
             "above; warm servers run the stand-in, not the launcher)", "value"],
            ["served by a warm server: users: start() p50 / p95 / max (s)", times(pool["warm"])],
            ["served by a new app: users: start() p50 / p95 / max (s)", times(pool["cold"])],
            ["pool full again, from the click (timer every 5 s) (s)", f(refill) if refill is not None else "no"],
            ["pool filled before the class (instant emulator) (s)", f(pool["fill_instant_s"])],
        ])]
        if pool["fallback_message"]:
            out += [f"what a user beyond the pool reads: {pool['fallback_message']}"]
    for b in bursts:
        if b["errors"]:
            out += [f"burst of {b['spawns']} errors: " + "; ".join(b["errors"])]
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m local.bench", description=__doc__.splitlines()[0])
    p.add_argument("--spawns", type=int, default=20, help="spawns per path for p50/p95 (default 20)")
    p.add_argument("--burst", type=int, nargs="+", default=[100, 500],
                   help="concurrent spawns of each burst (default: 100 500)")
    p.add_argument("--burst-repeats", type=int, default=3,
                   help="bursts: runs of each burst; the run of median wall time is reported, with every run's wall "
                        "time beside it (default 3)")
    p.add_argument("--write-bucket", type=int, default=200, help="ARM write token bucket (default 200, ARM's)")
    p.add_argument("--write-refill", type=float, default=10.0, help="ARM write tokens per second (default 10, ARM's)")
    p.add_argument("--provisioning-delay", type=float, default=20.0,
                   help="bursts: emulator seconds per operation (default 20, ACA-like)")
    p.add_argument("--retry-after", type=int, default=5,
                   help="bursts: Retry-After of ARM LROs in s, 0 for none (default 5, ACA-like)")
    p.add_argument("--function-threads", type=int, default=0,
                   help="PYTHON_THREADPOOL_THREAD_COUNT of the functions (default: the worker's, min(32, CPUs + 4))")
    p.add_argument("--function-processes", type=int, default=1,
                   help="FUNCTIONS_WORKER_PROCESS_COUNT: Python worker processes of each functions host, where the "
                        "functions run apart from the host's queue work (default 1, as on Azure)")
    p.add_argument("--function-instances", type=int, default=1,
                   help="functions hosts (processes of their own) on the lifecycle queue, as a Function App scaled "
                        "out (default 1)")
    p.add_argument("--environments", type=int, default=3, help="environments in the capacity pool (default 3)")
    p.add_argument("--burst-environment-cores", type=float, default=400.0,
                   help="bursts: cores of each environment the functions place servers in (default 400: a burst of "
                        "1000 half-core servers fits 3 of them)")
    p.add_argument("--environment-cores", type=float, default=10.0,
                   help="cores of each pool environment, its quota in the emulator (default 10)")
    p.add_argument("--capacity-starts", type=int, default=35,
                   help="concurrent 1-core starts against the pool (default 35; 0 skips the section)")
    p.add_argument("--resume-users", type=int, default=10,
                   help="users restarting a stopped server, in each stop mode (default 10; 0 skips the section)")
    p.add_argument("--start-delay", type=float, default=20.0,
                   help="resume: emulator seconds to start a stopped app (default 20, a guess: as a create)")
    p.add_argument("--stop-delay", type=float, default=10.0,
                   help="resume: emulator seconds to stop an app (default 10, a guess)")
    p.add_argument("--warm-pool", type=int, default=100,
                   help="warm servers kept ready for a class (default 100; 0 skips the section)")
    p.add_argument("--warm-extra", type=int, default=5,
                   help="users beyond the warm pool in that class, who fall back to a create (default 5)")
    p.add_argument("--scale-running", type=int, default=2000,
                   help="scale: servers already running (their status rows) while a burst starts (default 2000; "
                        "0 skips the section)")
    p.add_argument("--scale-burst", type=int, default=100, help="scale: starts of that burst (default 100)")
    p.add_argument("--restart-running", type=int, default=2000,
                   help="restart: a real JupyterHub launched with this many running servers, and with none "
                        "(default 2000; 0 skips it)")
    p.add_argument("--restart-repeats", type=int, default=5,
                   help="restart: launches of each kind measured, the median reported (default 5)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--state-dir", type=Path, help="keep logs and state here (default: a temporary, removed directory)")
    args = p.parse_args(argv)
    if min(args.spawns, *args.burst, args.burst_repeats, args.restart_repeats) < 1:
        p.error("--spawns, --burst, --burst-repeats and --restart-repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="aca-bench-"))
    state.mkdir(parents=True, exist_ok=True)
    # the hub database first: its migrations (alembic) reconfigure logging, to stderr
    with contextlib.redirect_stderr(io.StringIO()):
        db = orm.new_session_factory("sqlite:///:memory:")()
    logging.basicConfig(filename=state / "bench.log", level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # every app holds ports and pipes
    print(f"benchmark: {args.spawns} spawns per path, burst of {args.burst}; log in {state / 'bench.log'}",
          file=sys.stderr)
    ok = False
    try:
        result = Bench(args, db).run(state)
        print(render(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str))
        ok = True
    except KeyboardInterrupt:
        print("interrupted; everything was stopped", file=sys.stderr)
        return 130
    finally:
        if ok and args.state_dir is None:
            shutil.rmtree(state, ignore_errors=True)
        elif not ok:
            print(f"logs kept in {state}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
