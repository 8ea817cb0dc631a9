"""Sealing of lifecycle requests: authenticated encryption with rotation and a maximum age.

A request carries the user's JupyterHub API token, so the queue only ever sees
it sealed with a key shared by the hub and the functions. ``MultiFernet``
seals with the first key, opens with any configured key (rotation) and
enforces the maximum age. A short key id in front of the token lets the
reader tell "sealed with a key I do not have" from "altered in transit".

Sealed form: ``<key id>.<fernet token>`` (ASCII).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .contract import ContractError, Request

DEFAULT_MAX_AGE = 15 * 60


class SealError(ContractError):
    """A message that could not be opened."""


class TamperedMessage(SealError):
    """Not a sealed message, or one whose bytes were changed."""


class UnknownKey(SealError):
    """Sealed with a key that is not (or no longer) configured."""


class ExpiredMessage(SealError):
    """Sealed longer ago than the maximum age allows."""


def generate_key() -> str:
    """A new sealing key (url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(keys: str | Sequence[str]) -> list[str]:
    """Keys from a list or a comma/whitespace separated string; the first one seals."""
    if isinstance(keys, str):
        keys = keys.replace(",", " ").split()
    result = [k.strip() for k in keys if k and k.strip()]
    if not result:
        raise ValueError("no sealing key configured")
    return result


def key_id(key: str) -> str:
    """A short, non-secret identifier of ``key``."""
    return hashlib.sha256(b"acaspawner-key-id:" + key.encode("ascii")).hexdigest()[:8]


class Sealer:
    """Seals and opens requests with a rotating set of keys."""

    def __init__(self, keys: str | Sequence[str], max_age: float = DEFAULT_MAX_AGE):
        parsed = parse_keys(keys)
        try:
            fernets = [Fernet(k.encode("ascii")) for k in parsed]
        except (ValueError, UnicodeEncodeError):
            raise ValueError(
                "a sealing key is not valid (it must be 32 url-safe base64-encoded bytes); "
                "make one with: aca-sealing-key"
            ) from None
        self._kid = key_id(parsed[0])
        self._known = {key_id(k): f for k, f in zip(parsed, fernets, strict=True)}
        self._multi = MultiFernet(fernets)
        self.max_age = max_age

    def __repr__(self) -> str:
        return f"Sealer({len(self._known)} key(s), max_age={self.max_age})"

    def holds_key_of(self, sealed: bytes | str) -> bool:
        """True when ``sealed`` names one of this sealer's keys (whether or not it opens)."""
        if isinstance(sealed, str):
            sealed = sealed.encode("utf-8", "replace")
        kid, dot, _ = sealed.partition(b".")
        return bool(dot) and kid.decode("ascii", "replace") in self._known

    def seal(self, request: Request, now: float | None = None) -> bytes:
        return self.seal_bytes(request.to_json().encode("utf-8"), now)

    def seal_bytes(self, plaintext: bytes, now: float | None = None) -> bytes:
        """Seal any payload (the functions' own follow-up messages use this too)."""
        if now is None:
            token = self._multi.encrypt(plaintext)
        else:
            token = self._multi.encrypt_at_time(plaintext, int(now))
        return self._kid.encode("ascii") + b"." + token

    def open(self, sealed: bytes | str, now: float | None = None) -> Request:
        """The request inside ``sealed``; raises a :class:`SealError` subclass if it cannot be trusted."""
        return Request.from_json(self.open_bytes(sealed, now))

    def open_bytes(self, sealed: bytes | str, now: float | None = None) -> bytes:
        """The payload inside ``sealed``; raises a :class:`SealError` subclass if it cannot be trusted."""
        token = self._token(sealed)
        now = int(time.time() if now is None else now)
        try:
            plaintext = self._multi.decrypt_at_time(token, ttl=int(self.max_age), current_time=now)
        except InvalidToken:
            self._decrypt_any_age(token)  # altered (raises TamperedMessage) or just old?
            raise ExpiredMessage(f"message is older than the maximum age of {int(self.max_age)} s") from None
        return plaintext

    def open_bytes_of_any_age(self, sealed: bytes | str) -> bytes:
        """The payload inside ``sealed`` however old it is; raises :class:`TamperedMessage` or :class:`UnknownKey`.

        Only to name the server of a message that expired or cannot be read, so that
        server can be failed visibly: never to act on what the message asks for.
        """
        return self._decrypt_any_age(self._token(sealed))

    def _token(self, sealed: bytes | str) -> bytes:
        """The Fernet token of ``sealed``, once its key id names a configured key."""
        if isinstance(sealed, str):
            sealed = sealed.encode("utf-8", "replace")
        kid, dot, token = sealed.partition(b".")
        if not dot or not token:
            raise TamperedMessage("message is not a sealed request (no key id)")
        if kid.decode("ascii", "replace") not in self._known:
            raise UnknownKey("message was sealed with a key that is not configured here")
        return token

    def _decrypt_any_age(self, token: bytes) -> bytes:
        try:
            return self._multi.decrypt(token)
        except InvalidToken:
            raise TamperedMessage("message was altered or is not a sealed request") from None


def main() -> None:
    """``aca-sealing-key``: print a new sealing key (for ACA_SEALING_KEYS and c.AcaSpawner.sealing_keys)."""
    print(generate_key())


if __name__ == "__main__":
    main()
