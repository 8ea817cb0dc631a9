"""``python -m local.bench_warm``: seconds from a start to a server that answers, with and without a warm server.

Runs the whole demo system (Azurite, the ACA emulator, the functions, the real
JupyterHub and configurable-http-proxy, servers running the real
``jupyterhub-singleuser``) with a warm pool of ``--pool`` servers. Once the pool
is ready, the emulator is given ACA-like pacing (``--provisioning-delay`` s per
create, ``Retry-After: --retry-after``) and ``2 × --pool`` users start at once
through the hub's REST API, as a class clicking together: the first ones are
served by the warm servers, the rest get new apps. Each user's time runs from the
``POST /users/<name>/server`` to the hub calling the server ready (JupyterHub
has seen it answer) and its ``/api`` answering through the proxy. Then every
server stops. The table also says how long the pool took to be full again.

Nothing is asserted: the machine decides the numbers; the table reports them.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.data.tables import TableClient

from local.procs import free_port
from local.stack import Stack, StackOptions
from local.stats import percentile


class Hub:
    """The hub's REST API as the benchmark's admin service."""

    def __init__(self, stack: Stack):
        self.stack = stack

    def call(self, path: str, method: str = "GET") -> dict:
        request = urllib.request.Request(f"{self.stack.public_url}/hub/api{path}", method=method,
                                         headers={"Authorization": f"token {self.stack.options.test_admin_token}"})
        with urllib.request.urlopen(request, timeout=30) as r:
            body = r.read()
            return json.loads(body) if body else {}

    def server(self, user: str) -> dict | None:
        return self.call(f"/users/{user}").get("servers", {}).get("")

    def answers(self, user: str) -> bool:
        try:
            with urllib.request.urlopen(f"{self.stack.public_url}/user/{user}/api", timeout=10) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False


def slots(stack: Stack) -> dict[str, str]:
    """Warm server → state, from the functions' rows."""
    with TableClient.from_connection_string(stack.azurite.connection_string, "acaservers") as table:
        try:
            return {row["RowKey"]: row["state"] for row in table.query_entities(
                "PartitionKey eq @p", parameters={"p": f"{stack.options.hub_id}~slots"})}
        except Exception:  # noqa: BLE001 - no table before the functions' first run
            return {}


def served_by_slot(stack: Stack) -> dict[str, bool]:
    """User → whether their default server is a warm server."""
    with TableClient.from_connection_string(stack.azurite.connection_string, "acaservers") as table:
        rows = table.query_entities("PartitionKey eq @p", parameters={"p": stack.options.hub_id})
        return {row["user"]: bool(row.get("slot")) for row in rows if not row.get("server_name")}


def wait(what: str, check, timeout: float) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - began


def refill_time(stack: Stack, size: int, clicked: float) -> float:
    """Seconds from the class's click until the pool, emptied by it, has ``size`` ready servers again."""
    wait("the pool to be taken", lambda: list(slots(stack).values()).count("ready") < size, 120)
    wait("the pool to be full again", lambda: list(slots(stack).values()).count("ready") >= size, 600)
    return time.monotonic() - clicked


def start_one(hub: Hub, user: str, timeout: float) -> float:
    began = time.monotonic()
    hub.call(f"/users/{user}/server", method="POST")
    wait(f"{user}'s server", lambda: (hub.server(user) or {}).get("ready") and hub.answers(user), timeout)
    return time.monotonic() - began


def run(args: argparse.Namespace, state: Path) -> dict:
    options = StackOptions(port=free_port(), state_dir=state, test_admin_token=secrets.token_hex(16),
                           warm_pool_size=args.pool, start_timeout=300)
    with Stack(options) as stack:
        hub = Hub(stack)
        fill = wait("the warm pool", lambda: list(slots(stack).values()).count("ready") >= args.pool, 300)
        stack.set_emulator_faults(provisioning_delay=args.provisioning_delay, retry_after=args.retry_after)
        users = [f"class-{i:02d}" for i in range(2 * args.pool)]
        for user in users:
            hub.call(f"/users/{user}", method="POST")
        clicked = time.monotonic()
        with ThreadPoolExecutor(len(users) + 1) as threads:
            refilled = threads.submit(refill_time, stack, args.pool, clicked)
            times = dict(zip(users, threads.map(lambda u: start_one(hub, u, 400), users), strict=True))
            refill = refilled.result()
        warm = served_by_slot(stack)
        for user in users:
            hub.call(f"/users/{user}/server", method="DELETE")
        return {"pool": args.pool, "fill_s": fill, "refill_s": refill,
                "warm_s": [t for u, t in times.items() if warm.get(u)],
                "cold_s": [t for u, t in times.items() if not warm.get(u)],
                "provisioning_delay_s": args.provisioning_delay, "retry_after_s": args.retry_after}


def render(result: dict) -> str:
    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{len(values)} | {percentile(values, 0.5):.1f} | {max(values):.1f}"

    return "\n".join([
        f"start → server answering, {2 * result['pool']} users at once, {result['pool']} warm servers ready "
        f"(ACA-like: {result['provisioning_delay_s']:g} s per create, Retry-After {result['retry_after_s']} s; "
        "real jupyterhub-singleuser)",
        "",
        "| served by | users | p50 (s) | max (s) |",
        "|---|---|---|---|",
        f"| a warm server | {cell(result['warm_s'])} |",
        f"| a new app | {cell(result['cold_s'])} |",
        "",
        f"pool ready at first (emulator without pacing): {result['fill_s']:.1f} s; "
        f"full again, from the class's click (paced): {result['refill_s']:.1f} s",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local.bench_warm", description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=3, help="warm servers kept ready (default 3; twice as many users)")
    p.add_argument("--provisioning-delay", type=float, default=20.0, help="emulator seconds per create (default 20)")
    p.add_argument("--retry-after", type=int, default=5, help="Retry-After of ARM operations (default 5)")
    p.add_argument("--state-dir", type=Path, help="keep logs and state here (default: a temporary directory)")
    args = p.parse_args(argv)
    if args.pool < 1:
        p.error("--pool must be at least 1")
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="aca-bench-warm-"))
    print(f"warm-start benchmark: {args.pool} warm servers, {2 * args.pool} users; state in {state}", file=sys.stderr)
    print(render(run(args, state)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
