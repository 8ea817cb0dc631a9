"""The hub's part of a warm start: hand the user's claim to the warm server the functions bound to the start.

When the functions serve a start with a warm server (``functions.slot_binding``),
the status row records the server ``running`` at the warm server's address,
with the warm server's own key sealed with the hub's sealing key. The hub
(which alone holds the user's token, and alone reaches the server's internal
address) sends the warm server's launcher one claim: the user's environment and
the server's arguments, sealed with that key, valid for a minute. The launcher
accepts exactly one claim and becomes the user's ``jupyterhub-singleuser``.
"""

from __future__ import annotations

import json
import time
import uuid

from cryptography.fernet import Fernet
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .contract import ServerSpec, Status
from .errors import SpawnException
from .sealing import Sealer, SealError

#: a claim is good for this long (the launcher also refuses an older Fernet token)
CLAIM_LIFETIME = 60.0
CLAIM_TIMEOUT = 20.0


def launcher_args(args: list[str] | tuple[str, ...]) -> list[str]:
    """The server's arguments without where it listens: the warm server already listens, and keeps its address."""
    return [arg for arg in args if not arg.startswith(("--ip=", "--port="))]


def claim_body(status: Status, spec: ServerSpec, sealer: Sealer, server_key: str, now: float | None = None) -> bytes:
    """The sealed claim for the warm server of ``status``: the whole environment (token included) and the args."""
    key = sealer.open_bytes_of_any_age(status.claim_key)  # sealed by the functions when they made the warm server
    now = time.time() if now is None else now
    claim = {"nonce": uuid.uuid4().hex, "expires": now + CLAIM_LIFETIME, "server_key": server_key,
             "env": {**spec.env, **spec.secret_env}, "args": launcher_args(spec.args)}
    return Fernet(key).encrypt_at_time(json.dumps(claim).encode("utf-8"), int(now))


async def claim(status: Status, spec: ServerSpec, sealer: Sealer, server_key: str) -> None:
    """Send the claim to the warm server; :class:`SpawnException` (reason ``failed``) when it is refused."""
    try:
        body = claim_body(status, spec, sealer, server_key)
    except (SealError, ValueError) as e:
        raise SpawnException("The warm server could not be handed over (its key could not be read); "
                             "please start again", reason="failed", log_message=f"warm claim key: {e}") from None
    request = HTTPRequest(f"{status.url.rstrip('/')}/slot/claim", method="POST", body=body,
                          headers={"Content-Type": "application/octet-stream"}, request_timeout=CLAIM_TIMEOUT,
                          connect_timeout=CLAIM_TIMEOUT)
    try:
        await AsyncHTTPClient().fetch(request)
    except HTTPClientError as e:
        raise SpawnException("The warm server refused to be handed over; please start again", reason="failed",
                             log_message=f"warm claim of {status.slot} answered {e.code}") from None
    except OSError as e:
        raise SpawnException("The warm server could not be reached; please start again", reason="failed",
                             log_message=f"warm claim of {status.slot}: {e}") from None
