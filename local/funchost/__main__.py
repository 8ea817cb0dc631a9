"""``python -m local.funchost``: run the function app until Ctrl-C (or SIGTERM).

Examples::

    python -m local.funchost
    python -m local.funchost --app function_app.py --settings local.settings.json --host-json host.json \\
        --dev-storage "$AZURITE_CONNECTION_STRING" --set ACA_LIFECYCLE_QUEUE=aca-lifecycle
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .host import DEFAULT_APP_PATH, FunctionsHost


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.funchost", description=__doc__.splitlines()[0])
    parser.add_argument("--app", type=Path, default=DEFAULT_APP_PATH, help="function app file (default: %(default)s)")
    parser.add_argument(
        "--settings", type=Path, default=None, help="local.settings.json (default: the one next to the app, if any)"
    )
    parser.add_argument("--host-json", type=Path, default=None, help="host.json (default: the one next to the app)")
    parser.add_argument(
        "--dev-storage",
        default=os.environ.get("FUNCHOST_DEV_STORAGE"),
        help="connection string used where a setting says UseDevelopmentStorage=true "
        "(default: $FUNCHOST_DEV_STORAGE, else Azurite's default ports)",
    )
    parser.add_argument(
        "--set", dest="values", action="append", default=[], metavar="NAME=VALUE", help="an app setting (repeatable)"
    )
    parser.add_argument("--worker-processes", type=int, default=None, metavar="N",
                        help="Python worker processes the functions run in, apart from the host's queue and timer "
                        "work as on Azure (default: FUNCTIONS_WORKER_PROCESS_COUNT, else 1; 0: in the host's process)")
    parser.add_argument("--no-listen", action="store_true", help="index and validate the app, then exit")
    parser.add_argument("--stats-file", type=Path, default=None,
                        help="keep the host's invocation counters here as JSON, rewritten as they change (benchmarks)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The SDK's HTTP logging is noise at INFO (one record per poll).
    logging.getLogger("azure").setLevel(logging.WARNING)
    if args.settings is not None and not args.settings.is_file():
        print(f"settings file not found: {args.settings}", file=sys.stderr)
        return 2
    values = {}
    for item in args.values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"--set expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        values[name] = value
    host = FunctionsHost(
        args.app,
        settings=values,
        host_json=args.host_json,
        local_settings=args.settings,
        dev_storage_connection_string=args.dev_storage,
        worker_processes=args.worker_processes,
    )
    if args.no_listen:
        try:
            index = host.load()
            for name, fn in index.functions.items():
                print(f"{name}: {fn!r}")
            for name, reason in index.skipped.items():
                print(f"{name}: skipped ({reason})")
        finally:
            host.close()
        return 0

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    written = ""
    with host:
        while not stop.wait(STATS_EVERY if args.stats_file else None):
            written = _write_stats(host, args.stats_file, written)
        logging.getLogger("local.funchost").info("Stopping the functions host")
    if args.stats_file:
        _write_stats(host, args.stats_file, written)
    return 0


#: how often --stats-file is brought up to date (seconds)
STATS_EVERY = 0.1


def _write_stats(host: FunctionsHost, path: Path, written: str) -> str:
    """The host's summed counters to ``path`` unless they are still ``written`` (replaced whole, so a reader
    never sees half a file); what the file holds now."""
    text = json.dumps(dataclasses.asdict(host.totals))
    if text != written:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text)
        os.replace(partial, path)
    return text


if __name__ == "__main__":
    sys.exit(main())
