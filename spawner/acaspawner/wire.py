"""How a sealed request travels on the queue.

The Functions queue trigger reads ``extensions.queues.messageEncoding`` from
host.json (default ``base64``): with base64 it decodes the body before handing
it to the function and sends a body that is not valid base64 straight to the
poison queue. The spawner must therefore write exactly what the host expects.
"""

from __future__ import annotations

import base64
import binascii

#: the encoding committed in host.json; a test pins the two together
MESSAGE_ENCODING = "base64"


class WireError(ValueError):
    """A queue body that the Functions host would not decode."""


def encode(sealed: bytes, encoding: str = MESSAGE_ENCODING) -> str:
    """The queue message body for ``sealed`` bytes."""
    if encoding == "base64":
        return base64.b64encode(sealed).decode("ascii")
    if encoding == "none":
        return sealed.decode("utf-8")
    raise ValueError(f"unknown message encoding {encoding!r}")


def decode(body: str | bytes, encoding: str = MESSAGE_ENCODING) -> bytes:
    """What the Functions host hands the function for a queue message ``body``."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if encoding == "none":
        return body
    if encoding != "base64":
        raise ValueError(f"unknown message encoding {encoding!r}")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("queue message body is not valid base64") from None
