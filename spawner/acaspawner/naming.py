"""Container app names for users' servers.

The server key is the container app's name: deterministic from
(hub id, user name, server name), valid under ACA's rules and unique thanks to
a hash suffix of 65 bits (13 base32 characters), so nobody can search for a
server name whose key equals another user's. ``jupyterhub.slugs`` is not used
here because its multi-part slugs join with ``---`` (ACA forbids ``--``) and
this module must import without JupyterHub (the functions use it to validate
keys).

Servers recorded before the 65-bit suffix keep their key (a 32-bit hex
suffix, :func:`legacy_server_key`): it is in their saved state. New servers
never get one.

A user's home folder in the shared Azure Files storage is named here too
(:func:`home_folder`), so the functions, which alone decide which folder a
server mounts, and the hub agree on it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata

MIN_LENGTH = 2
MAX_LENGTH = 32
HASH_LENGTH = 13  # base32 characters: 65 bits
LEGACY_HASH_LENGTH = 8  # hex characters: 32 bits
HOME_HASH_LENGTH = 32  # hex characters: 128 bits
LEGACY_HOME_HASH_LENGTH = 12  # hex characters: 48 bits
HOME_SLUG_LENGTH = 40

_APP_NAME = re.compile(r"^[a-z](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def is_valid_app_name(name: str) -> bool:
    """True when ``name`` is a valid container app name."""
    return (
        isinstance(name, str)
        and MIN_LENGTH <= len(name) <= MAX_LENGTH
        and bool(_APP_NAME.match(name))
    )


def _readable(text: str) -> str:
    """Lower-case ASCII letters and digits of ``text``, accents folded (É → e)."""
    folded = unicodedata.normalize("NFKD", text)
    ascii_only = folded.encode("ascii", "ignore").decode("ascii").lower()
    return _NOT_ALNUM.sub("", ascii_only)


def _digest(hub_id: str, user: str, server_name: str) -> bytes:
    # the exact, unnormalised triple: names that differ only in case, accents or punctuation differ
    return hashlib.sha256("\x00".join((hub_id, user, server_name)).encode("utf-8", "surrogatepass")).digest()


def _key(prefix: str, user: str, server_name: str, suffix: str) -> str:
    prefix = _readable(prefix)
    if not prefix or not prefix[0].isalpha() or len(prefix) > 8:
        raise ValueError(f"prefix must be 1-8 letters/digits starting with a letter: {prefix!r}")
    budget = MAX_LENGTH - len(prefix) - len(suffix) - 2  # two separators
    user_part = _readable(user)
    server_part = _readable(server_name)
    if server_part:
        # keep the user more recognisable than the server name
        server_part = server_part[: max(budget // 3, 1)]
        user_part = user_part[: max(budget - len(server_part) - 1, 0)]
    else:
        user_part = user_part[:budget]
    key = "-".join(p for p in (prefix, user_part, server_part, suffix) if p)
    assert is_valid_app_name(key), key
    return key


def server_key(hub_id: str, user: str, server_name: str = "", prefix: str = "jl") -> str:
    """The container app name of ``user``'s server ``server_name`` on hub ``hub_id``.

    Layout: ``<prefix>-<user>[-<server>]-<hash>``, readable parts truncated to
    fit 32 characters; the hash is 65 bits of SHA-256 over the exact triple,
    in lower-case base32.
    """
    suffix = base64.b32encode(_digest(hub_id, user, server_name)).decode("ascii").lower()[:HASH_LENGTH]
    return _key(prefix, user, server_name, suffix)


def legacy_server_key(hub_id: str, user: str, server_name: str = "", prefix: str = "jl") -> str:
    """The key servers were given before the 65-bit suffix (32 bits of hex); only ever read, never made anew."""
    return _key(prefix, user, server_name, _digest(hub_id, user, server_name).hex()[:LEGACY_HASH_LENGTH])


def _home(user_name: str, hash_length: int) -> str:
    folded = unicodedata.normalize("NFKD", user_name).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:HOME_SLUG_LENGTH].strip("-") or "user"
    digest = hashlib.sha256(user_name.encode("utf-8", "surrogatepass")).hexdigest()[:hash_length]
    return f"{slug}-{digest}"


def home_folder(user_name: str) -> str:
    """The folder of ``user_name``'s home: ``<slug>-<128 bits of SHA-256 of the exact name, hex>``.

    Made only of ``[a-z0-9-]``, so no ``..``, slash, NUL or unicode trick in a
    name reaches another folder; many names share a slug (``bob``, ``Bob.``,
    ``böb``), so the hash alone tells them apart, and at 128 bits nobody can
    search for a name whose folder is another user's.
    """
    return _home(user_name, HOME_HASH_LENGTH)


def legacy_home_folder(user_name: str) -> str:
    """The folder homes were given before :func:`home_folder` (48 bits of hex): kept for the users who have one."""
    return _home(user_name, LEGACY_HOME_HASH_LENGTH)
