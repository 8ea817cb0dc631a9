"""The hub's PostgreSQL login with its Microsoft Entra identity: a token instead of a password.

Azure Database for PostgreSQL accepts a Microsoft Entra access token for
:data:`SCOPE` as the password of the role named after the identity, so the
database needs no password at all and a user container that can reach port
5432 has nothing to log in with.

Two things stand in the way of a fixed URL, and both are handled here:

* tokens live about an hour and JupyterHub builds its engine from a fixed
  ``db_url``: every new connection of every SQLAlchemy engine in the process
  gets a current token (the ``do_connect`` event; azure-identity caches the
  token and renews it before it expires);
* JupyterHub upgrades its schema in an ``alembic`` subprocess, which no
  event in this process reaches: ``PGPASSWORD`` (read by libpq) carries a
  token for it at start-up.

Call :func:`sign_in_with_entra` from ``jupyterhub_config.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from typing import Any

from azure.core.credentials import TokenCredential

from .identity import azure_credential

SCOPE = "https://ossrdbms-aad.database.windows.net/.default"


ConnectHook = Callable[[Any, Any, list, dict], None]
_installed: dict[int, ConnectHook] = {}


def password_supplier(credential: TokenCredential) -> ConnectHook:
    """A ``do_connect`` listener that puts a fresh token in place of a missing PostgreSQL password.

    Other databases (SQLite in tests, for example) and URLs that carry their
    own password are left alone.
    """

    def supply(dialect: Any, connection_record: Any, cargs: list, cparams: dict) -> None:
        if dialect.name != "postgresql" or cparams.get("password"):
            return
        cparams["password"] = credential.get_token(SCOPE).token

    return supply


def sign_in_with_entra(
    credential: TokenCredential | None = None,
    *,
    client_id: str = "",
    environ: MutableMapping[str, str] = os.environ,
) -> ConnectHook:
    """Make every PostgreSQL connection of this process (and its schema upgrade) sign in with a token.

    Idempotent per credential object; returns the installed listener.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    credential = credential or azure_credential(client_id)
    hook = _installed.get(id(credential))
    if hook is None:
        hook = _installed[id(credential)] = password_supplier(credential)
        event.listen(Engine, "do_connect", hook)
    environ["PGPASSWORD"] = credential.get_token(SCOPE).token
    return hook
