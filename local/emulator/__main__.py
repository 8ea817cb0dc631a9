"""``python -m local.emulator``: run the ACA emulator until SIGINT/SIGTERM.

Prints one JSON line on stdout (ARM endpoint, CA bundle, environment id, ...) once it serves,
so scripts can read it; on exit every app process is ended.

Example::

    python -m local.emulator --state-dir .local-state/aca --hub-host 127.0.0.1:8000=http://127.0.0.1:8000 \\
        --provisioning-delay 2 --fail-image 'example.invalid/*' --image-map 'myregistry.io/tools/*=env TOOL=1'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import shlex
import signal
import sys
from typing import Any

from .emulator import DEFAULT_ENVIRONMENT, DEFAULT_LOCATION, DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, Emulator

# flag → (Faults field, type, help); only flags given on the command line override the defaults
FAULT_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--provisioning-delay", "provisioning_delay", float, "seconds before an operation takes effect (default 0)"),
    ("--start-delay", "start_delay", float, "seconds a start of a stopped app takes (default: --provisioning-delay)"),
    ("--stop-delay", "stop_delay", float, "seconds a stop takes (default: --provisioning-delay)"),
    ("--retry-after", "retry_after", int, "Retry-After seconds on LRO responses (default 1)"),
    ("--write-bucket", "write_bucket", int, "ARM write token bucket size (default 200)"),
    ("--write-refill", "write_refill", float, "write tokens per second (default 10)"),
    ("--delete-bucket", "delete_bucket", int, "ARM delete token bucket size (default 200)"),
    ("--delete-refill", "delete_refill", float, "delete tokens per second (default 10)"),
    ("--read-bucket", "read_bucket", int, "ARM read token bucket size (default 250)"),
    ("--read-refill", "read_refill", float, "read tokens per second (default 25)"),
    ("--error-rate", "error_rate", float, "share of ARM requests answered with a 5xx (default 0)"),
    ("--error-status", "error_status", int, "status of injected errors (default 500)"),
    ("--error-seed", "error_seed", int, "random seed for injected errors (default 0)"),
    ("--fail-code", "fail_code", str, "ARM error code of a failing create"),
    ("--fail-message", "fail_message", str, "ARM error message of a failing create"),
    ("--startup-timeout", "startup_timeout", float, "seconds an app may take to listen on its port (default 60)"),
    ("--header-limit", "header_limit", int, "ingress request header limit in bytes (default 61440, envoy's)"),
    ("--page-size", "list_page_size", int, "container apps per list page (default 100)"),
    ("--core-quota", "core_quota", float, "cores per managed environment (default: not enforced)"),
]


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", help="CA, app homes and logs (default: a new temporary directory)")
    parser.add_argument("--subscription", default=DEFAULT_SUBSCRIPTION)
    parser.add_argument("--resource-group", default=DEFAULT_RESOURCE_GROUP)
    parser.add_argument("--environment", default=DEFAULT_ENVIRONMENT, help="managed environment name")
    parser.add_argument("--more-environment", action="append", default=[], metavar="NAME",
                        help="another managed environment, same region (repeatable)")
    parser.add_argument("--location", default=DEFAULT_LOCATION)
    parser.add_argument("--port", type=int, default=0, help="ARM port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--hub-host", type=_pair, action="append", default=[], metavar="HOST=UPSTREAM",
                        help="route Host HOST on every ingress port to UPSTREAM (repeatable)")
    parser.add_argument("--image-map", type=_pair, action="append", default=[], metavar="GLOB=PREFIX",
                        help="run images matching GLOB with the shell-split PREFIX before the command (repeatable)")
    parser.add_argument("--workload-profile", type=_pair, action="append", default=[], metavar="NAME=TYPE",
                        help="a workload profile of the environment besides Consumption, e.g. gpu=NC24-A100 "
                             "(repeatable)")
    faults = parser.add_argument_group("faults and pacing")
    for flag, _, kind, text in FAULT_FLAGS:
        faults.add_argument(flag, type=kind, default=None, help=text)
    faults.add_argument("--no-retry-after", action="store_true", help="send no Retry-After on LROs")
    faults.add_argument("--no-throttle", action="store_true", help="never answer 429")
    faults.add_argument("--fail-image", action="append", default=[], metavar="GLOB",
                        help="creates with an image matching GLOB end Failed (repeatable)")
    faults.add_argument("--fail-creates", action="store_true", help="every create ends Failed")
    return parser.parse_args(argv)


def emulator_from_args(args: argparse.Namespace) -> Emulator:
    settings: dict[str, Any] = {name: getattr(args, flag[2:].replace("-", "_")) for flag, name, _, _ in FAULT_FLAGS}
    settings = {k: v for k, v in settings.items() if v is not None}
    if args.no_retry_after:
        settings["retry_after"] = None
    if args.no_throttle:
        settings["throttle"] = False
    if args.fail_image:
        settings["fail_images"] = tuple(args.fail_image)
    if args.fail_creates:
        settings["fail_creates"] = True
    return Emulator(
        state_dir=args.state_dir,
        subscription_id=args.subscription,
        resource_group=args.resource_group,
        environment=args.environment,
        more_environments=args.more_environment,
        location=args.location,
        arm_port=args.port,
        hubs=dict(args.hub_host),
        image_map={glob: shlex.split(prefix) for glob, prefix in args.image_map},
        workload_profiles=[{"name": name, "workloadProfileType": kind} for name, kind in args.workload_profile],
        **settings,
    )


def _raise_fd_limit() -> None:
    # a request looping through proxies holds sockets per hop until the header limit ends it
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(emulator: Emulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await emulator.start()
    try:
        print(json.dumps(emulator.info()), flush=True)
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _raise_fd_limit()
    asyncio.run(serve(emulator_from_args(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
