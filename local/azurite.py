"""Azurite (queues and tables) in memory on free loopback ports.

Always with ``--disableTelemetry`` (Azurite reports usage otherwise) and
``--skipApiVersionCheck`` (the newest storage SDKs speak an API version
Azurite does not list yet).
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .procs import NODE_BIN, ensure_node_tools, free_port, stop_process_group, wait_for_port

ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key (not a secret)
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class Azurite:
    queue_port: int
    table_port: int
    blob_port: int
    process: subprocess.Popen | None = None
    host: str = "127.0.0.1"

    @property
    def connection_string(self) -> str:
        base = f"http://{self.host}"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT};"
        )

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)
            self.process = None


def start_azurite(workdir: Path | None = None, log_path: Path | None = None) -> Azurite:
    """Start Azurite in memory; installs it from npm into the repo first if missing."""
    ensure_node_tools()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="azurite-"))
    ports = {name: free_port() for name in ("blob", "queue", "table")}
    log = open(log_path or workdir / "azurite.log", "ab")  # noqa: SIM115 - owned by the child
    cmd = [
        str(NODE_BIN / "azurite"),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
    ]
    for name, port in ports.items():
        cmd += [f"--{name}Host", "127.0.0.1", f"--{name}Port", str(port)]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    azurite = Azurite(queue_port=ports["queue"], table_port=ports["table"], blob_port=ports["blob"], process=proc)
    try:
        for port in ports.values():
            wait_for_port(port, proc=proc)
    except Exception:
        azurite.stop()
        raise
    return azurite


if __name__ == "__main__":
    import time

    a = start_azurite()
    print(a.connection_string, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        a.stop()
