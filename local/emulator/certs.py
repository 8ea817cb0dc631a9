"""TLS for the emulator's ARM endpoint: a local test CA (``trustme``) and a server certificate.

ARM is only ever spoken over HTTPS (the SDK's bearer-token policy refuses plain HTTP), so the
emulator serves a certificate for ``127.0.0.1``/``localhost`` issued by a throw-away CA whose
certificate is written to ``ca.pem``: pass that file as ``connection_verify`` (or set
``REQUESTS_CA_BUNDLE``) and the unchanged client trusts the emulator.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"


def load_or_create_ca(state_dir: Path) -> trustme.CA:
    """The CA kept in ``state_dir`` (so a restarted emulator stays trusted), created if missing."""
    cert_path, key_path = state_dir / CA_CERT_FILE, state_dir / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        return trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
    ca = trustme.CA(organization_name="ACA emulator test CA")
    ca.cert_pem.write_to_path(str(cert_path))
    key_path.touch(mode=0o600)
    ca.private_key_pem.write_to_path(str(key_path))
    return ca


def server_ssl_context(state_dir: Path, *identities: str) -> tuple[ssl.SSLContext, Path]:
    """An SSL context for the ARM server and the path of the CA bundle clients must trust."""
    ca = load_or_create_ca(state_dir)
    leaf = ca.issue_cert(*(identities or ("127.0.0.1", "localhost")))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    return ctx, state_dir / CA_CERT_FILE
