"""One start and one stop through the real Functions host (Core Tools' ``func start``), end to end.

CI runs it against Azurite and the ACA emulator (see the ``func-core-tools`` job in
``.github/workflows/ci.yml``); it needs Core Tools, so it cannot run where the Azure CDN is
out of reach, and local/funchost/README.md says how the dev host was compared with it.

    python -m local.func_smoke settings --emulator-info emulator.json --out local.settings.json
    func start                      # in another shell, with that local.settings.json
    python -m local.func_smoke run --settings local.settings.json

``run`` puts a sealed start on the lifecycle queue as the spawner does, waits until the status
table says ``running`` and ARM has the app, then a sealed stop, and waits until the table says
``stopped`` and the app is gone. It exits 0 on success, 1 with the reason otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from acaspawner.contract import Op, Phase, Request, ServerSpec
from acaspawner.hub_storage import HubStorage
from acaspawner.naming import server_key
from acaspawner.sealing import generate_key

from .azurite import Azurite
from .procs import REPO
from .tinyapp import APP_COMMAND

EXAMPLE_SETTINGS = REPO / "local.settings.example.json"
AZURITE_DEFAULT = Azurite(queue_port=10001, table_port=10002, blob_port=10000)  # `azurite` with no port flags
NEVER = "0 0 0 1 1 *"  # the timers stay quiet during the smoke run (once a year)
USER = "func-smoke"
IMAGE = "quay.io/jupyter/base-notebook:latest"  # allowed by the example settings; runs local/tinyapp.py here

T = TypeVar("T")


def smoke_settings(example: dict[str, Any], emulator_info: dict[str, Any], storage: str,
                   sealing_key: str) -> dict[str, Any]:
    """``local.settings.json`` for the smoke run: the example's, pointed at this Azurite and emulator."""
    values = dict(example["Values"])
    values.update({
        "AzureWebJobsStorage": storage,
        "AcaStorage": storage,
        "ACA_SEALING_KEYS": sealing_key,
        "ACA_FOLLOWUP_KEYS": generate_key(),
        "ACA_SUBSCRIPTION_ID": emulator_info["subscription_id"],
        "ACA_RESOURCE_GROUP": emulator_info["resource_group"],
        "ACA_ENVIRONMENT_ID": emulator_info["environment_id"],
        "ACA_LOCATION": emulator_info["location"],
        "ACA_ARM_ENDPOINT": emulator_info["arm_endpoint"],
        "ACA_ARM_CA_BUNDLE": emulator_info["ca_bundle"],
        "ACA_CULL_SCHEDULE": NEVER,
        "ACA_RECONCILE_SCHEDULE": NEVER,
        "ACA_WARM_POOL_SCHEDULE": NEVER,
    })
    return {**example, "Values": values}


def lifecycle_request(values: dict[str, str], op: Op, generation: int) -> Request:
    """A start (with a tiny server as the notebook) or a stop of the smoke user's server."""
    hub = values["ACA_HUB_ID"]
    spec = None
    if op is Op.START:
        spec = ServerSpec(image=IMAGE, cpu=0.25, memory="0.5Gi", target_port=8888, command=list(APP_COMMAND),
                          env={"JUPYTERHUB_USER": USER}, secret_env={"JUPYTERHUB_API_TOKEN": "smoke-token"})
    return Request(op=op, hub_id=hub, server_key=server_key(hub, USER, ""), user=USER, server_name="",
                   generation=generation, spec=spec)


async def wait_for(what: str, check: Callable[[], Awaitable[T | None]], seconds: float,
                   interval: float = 1.0) -> T:
    """Poll ``check`` until it returns a value; TimeoutError naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {seconds:.0f} s")
        await asyncio.sleep(interval)


async def run(values: dict[str, str], step_seconds: float) -> None:
    """Start, observe, stop, observe; raises with the step that did not happen."""
    from functions.arm import ArmApps, make_client
    from functions.settings import Settings

    settings = Settings.from_environ(values)
    apps = ArmApps.for_settings(make_client(settings), settings)
    storage = HubStorage(settings.storage)
    sealer = settings.sealer()
    generation = int(time.time() * 1000)
    start = lifecycle_request(values, Op.START, generation)
    key, hub = start.server_key, start.hub_id

    async def status(phase: Phase, generation: int) -> Any:
        found = await storage.get_status(hub, key)
        if found is not None and found.phase is Phase.FAILED:
            raise RuntimeError(f"the server failed: {found.error_code}: {found.message}")
        return found if found is not None and found.phase is phase and found.generation == generation else None

    async def app(present: bool) -> bool:
        exists = await asyncio.to_thread(apps.get, key) is not None
        return exists == present

    try:
        await storage.send(sealer.seal(start))
        print(f"sent a sealed start for {key}", flush=True)
        running = await wait_for("the table says running", lambda: status(Phase.RUNNING, generation), step_seconds)
        await wait_for("ARM has the app", lambda: app(True), 30)
        print(f"running at {running.url}; the container app exists", flush=True)
        await storage.send(sealer.seal(lifecycle_request(values, Op.STOP, generation + 1)))
        print("sent a sealed stop", flush=True)
        await wait_for("the table says stopped", lambda: status(Phase.STOPPED, generation + 1), step_seconds)
        await wait_for("the app is deleted", lambda: app(False), step_seconds)
        print("stopped; the container app is gone", flush=True)
    finally:
        await storage.close()
        apps.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.func_smoke", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("settings", help="write local.settings.json for the smoke run")
    make.add_argument("--emulator-info", type=Path, required=True, help="the JSON line `python -m local.emulator` printed")
    make.add_argument("--storage", default=AZURITE_DEFAULT.connection_string,
                      help="storage connection string (default: Azurite on its default ports)")
    make.add_argument("--out", type=Path, default=REPO / "local.settings.json")
    go = commands.add_parser("run", help="send a start and a stop, check the app and the table")
    go.add_argument("--settings", type=Path, default=REPO / "local.settings.json")
    go.add_argument("--timeout", type=float, default=180.0, help="seconds for each step (default 180)")
    args = parser.parse_args(argv)

    if args.command == "settings":
        info = json.loads(args.emulator_info.read_text().strip().splitlines()[0])
        example = json.loads(EXAMPLE_SETTINGS.read_text())
        args.out.write_text(json.dumps(smoke_settings(example, info, args.storage, generate_key()), indent=2) + "\n")
        print(f"wrote {args.out}")
        return 0
    from .funchost.settings import read_local_settings

    try:
        asyncio.run(run(read_local_settings(args.settings), args.timeout))
    except (TimeoutError, RuntimeError) as exc:
        print(f"func smoke failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
