"""``python -m local.demo`` (``make demo``): the whole system on this machine, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from local.stack import Stack, StackOptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8000)),
                        help="hub port on 127.0.0.1 (default 8000, or $DEMO_PORT)")
    parser.add_argument("--password", default=os.environ.get("DEMO_PASSWORD", "aca-demo"),
                        help="the password every user name logs in with (default aca-demo)")
    parser.add_argument("--state-dir", type=Path, default=None, help="logs and state (default: a temporary folder)")
    parser.add_argument("--warm", type=int, default=int(os.environ.get("DEMO_WARM", 2)),
                        help="warm servers kept ready, so a start takes seconds (default 2, or $DEMO_WARM; 0: none)")
    args = parser.parse_args(argv)

    # SIGTERM ends the demo like Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    stack = Stack(StackOptions(port=args.port, password=args.password, state_dir=args.state_dir,
                               warm_pool_size=args.warm))
    print("Starting Azurite, the ACA emulator, the functions and the hub ...", flush=True)
    try:
        stack.start()
        info = stack.emulator_info
        print(
            f"""
  JupyterHub      {stack.public_url}
  log in with     any user name, password: {args.password}
  status page     {stack.public_url}/services/aca-status/  (log in as "admin")
  ARM emulator    {info['arm_endpoint']}  (CA bundle {info['ca_bundle']})
  environment     {info['environment_id']}
  homes share     {stack.home_share}
  logs            {stack.logs}

Open the hub in a browser, log in and start your server: the spawn page shows the
functions' progress, then JupyterLab opens in a container app of the emulator.
Press Ctrl-C to stop everything.""",
            flush=True,
        )
        while True:
            stack.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
        return 0
    except Exception as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
