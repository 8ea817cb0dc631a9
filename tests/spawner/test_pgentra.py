"""acaspawner.pgentra: PostgreSQL sign-in with an Entra token in place of a password."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import pytest
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine

from acaspawner import pgentra


class FakeCredential:
    """Hands out numbered tokens and records the scopes asked for (the real one is Azure's)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.append(scopes)
        return SimpleNamespace(token=f"token-{len(self.scopes)}", expires_on=0)


POSTGRES = SimpleNamespace(name="postgresql")
SQLITE = SimpleNamespace(name="sqlite")


def test_a_postgres_connection_without_password_gets_a_fresh_token_each_time():
    credential = FakeCredential()
    supply = pgentra.password_supplier(credential)
    first, second = {"user": "id-hub", "host": "psql"}, {"user": "id-hub", "host": "psql"}
    supply(POSTGRES, None, [], first)
    supply(POSTGRES, None, [], second)
    assert (first["password"], second["password"]) == ("token-1", "token-2")
    assert credential.scopes == [(pgentra.SCOPE,), (pgentra.SCOPE,)]
    assert pgentra.SCOPE == "https://ossrdbms-aad.database.windows.net/.default"


@pytest.mark.parametrize("dialect, params", [(SQLITE, {"database": "x"}), (POSTGRES, {"password": "given"})])
def test_other_databases_and_explicit_passwords_are_left_alone(dialect, params):
    credential = FakeCredential()
    before = dict(params)
    pgentra.password_supplier(credential)(dialect, None, [], params)
    assert params == before
    assert credential.scopes == []


def test_sign_in_installs_one_listener_and_gives_the_schema_upgrade_a_token(monkeypatch):
    credential, environ = FakeCredential(), {}
    hook = pgentra.sign_in_with_entra(credential, environ=environ)
    try:
        assert pgentra.sign_in_with_entra(credential, environ=environ) is hook  # a second load adds nothing
        assert event.contains(Engine, "do_connect", hook)
        assert environ["PGPASSWORD"].startswith("token-")  # libpq in JupyterHub's alembic subprocess reads it
        # a real engine of another kind connects as before, the listener in place
        engine = sqlalchemy.create_engine("sqlite://")
        with engine.connect() as connection:
            assert connection.exec_driver_sql("select 1").scalar() == 1
        assert isinstance(engine.raw_connection().driver_connection, sqlite3.Connection)
    finally:
        event.remove(Engine, "do_connect", hook)
        pgentra._installed.pop(id(credential), None)
