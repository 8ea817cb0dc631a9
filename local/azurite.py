"""Azurite (queues and tables) in memory on free loopback ports.

Always with ``--disableTelemetry`` (Azurite reports usage otherwise) and
``--skipApiVersionCheck`` (the newest storage SDKs speak an API version
Azurite does not list yet).

By default it speaks plain HTTP and accepts the account key (the connection
string). ``start_azurite(tls=(cert, key))`` serves HTTPS with that PEM
certificate and key instead, and ``oauth=True`` adds ``--oauth basic``: bearer
tokens are then accepted too, as a storage account with Microsoft Entra
authentication accepts them (Azurite only takes them over HTTPS). In that
mode Azurite checks a token's ``nbf``/``exp``/``iat``, its issuer (a prefix
such as ``https://sts.windows.net/``) and its audience
(``https://storage.azure.com`` or the account's own service URL), not its
signature; a request with no credential at all is refused.
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
    # served over HTTPS (started with ``tls=``); clients must trust the certificate's issuer
    tls: bool = False
    # bearer tokens accepted (``--oauth basic``)
    oauth: bool = False

    @property
    def scheme(self) -> str:
        """``https`` when started with a certificate, else ``http``."""
        return "https" if self.tls else "http"

    @property
    def blob_url(self) -> str:
        """The account's blob service URL (path style: ``<scheme>://host:port/devstoreaccount1``)."""
        return f"{self.scheme}://{self.host}:{self.blob_port}/{ACCOUNT}"

    @property
    def queue_url(self) -> str:
        """The account's queue service URL, what ``<connection>__queueServiceUri`` names in Azure."""
        return f"{self.scheme}://{self.host}:{self.queue_port}/{ACCOUNT}"

    @property
    def table_url(self) -> str:
        """The account's table service URL, what ``<connection>__tableServiceUri`` names in Azure."""
        return f"{self.scheme}://{self.host}:{self.table_port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """Account key access to all three services (works in OAuth mode too)."""
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_url};"
            f"QueueEndpoint={self.queue_url};"
            f"TableEndpoint={self.table_url};"
        )

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)
            self.process = None


def start_azurite(
    workdir: Path | None = None,
    log_path: Path | None = None,
    *,
    tls: tuple[Path, Path] | None = None,
    oauth: bool = False,
) -> Azurite:
    """Start Azurite in memory; installs it from npm into the repo first if missing.

    ``tls=(cert_path, key_path)`` (PEM files; the certificate must name ``127.0.0.1``)
    serves HTTPS; ``oauth=True`` accepts bearer tokens as well, and needs ``tls``.
    """
    if oauth and tls is None:
        raise ValueError("Azurite accepts OAuth tokens over HTTPS only: pass tls=(cert_path, key_path)")
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
    if tls is not None:
        cert_path, key_path = tls
        cmd += ["--cert", str(Path(cert_path).resolve()), "--key", str(Path(key_path).resolve())]
    if oauth:
        cmd += ["--oauth", "basic"]
    for name, port in ports.items():
        cmd += [f"--{name}Host", "127.0.0.1", f"--{name}Port", str(port)]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    azurite = Azurite(queue_port=ports["queue"], table_port=ports["table"], blob_port=ports["blob"], process=proc,
                      tls=tls is not None, oauth=oauth)
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
