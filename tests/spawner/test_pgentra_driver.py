"""acaspawner.pgentra through a real SQLAlchemy engine: what the PostgreSQL driver is handed when it connects.

No PostgreSQL server: the engine's DB-API module is a stub ``psycopg2`` (the
driver the hub image installs) that records the arguments of every
``connect()`` and answers the few statements SQLAlchemy's PostgreSQL dialect
sends on a first connection. The URLs name the driver
(``postgresql+psycopg2://``): since SQLAlchemy 2.1 a bare ``postgresql://``
selects psycopg 3 instead.
"""

from __future__ import annotations

import sys
import types
import uuid
from typing import Any

import pytest
import sqlalchemy
from identity_support import FakeManagedIdentity, UserAssignedIdentity, set_azure_environment
from sqlalchemy import event
from sqlalchemy.engine import Engine

from acaspawner import pgentra

CLIENT_ID = str(uuid.uuid4())

# what the dialect asks a new connection before using it, and a plausible server's answers
ANSWERS = {
    "select pg_catalog.version()": "PostgreSQL 16.4 on x86_64-pc-linux-gnu, compiled by gcc, 64-bit",
    "select current_schema()": "public",
    "show standard_conforming_strings": "on",
    "show transaction isolation level": "read committed",
    "select 1": 1,
}


class StubCursor:
    """A DB-API cursor that answers the statements of :data:`ANSWERS` with one row."""

    def __init__(self, connection: StubConnection) -> None:
        self.connection = connection
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, statement: str, parameters: Any = None) -> None:
        self.connection.statements.append(statement)
        key = " ".join(statement.split()).lower()
        if key in ANSWERS:
            self._rows = [(ANSWERS[key],)]
            self.description = [("value", 25, None, None, None, None, None)]
        else:
            self._rows, self.description = [], None

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    def close(self) -> None:
        pass


class StubConnection:
    """A DB-API connection that remembers what it was opened with and what it ran."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args, self.kwargs = args, kwargs
        self.statements: list[str] = []
        self.notices: list[str] = []  # server notices psycopg2 collects; the dialect logs them
        self.autocommit = False
        self.closed = 0
        self.status = 1

    def cursor(self, *args: Any, **kwargs: Any) -> StubCursor:
        return StubCursor(self)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self.closed = 1

    def set_isolation_level(self, level: int) -> None:
        pass


def stub_psycopg2() -> types.ModuleType:
    """A ``psycopg2`` module with what SQLAlchemy's psycopg2 dialect reads from it; ``connections`` records."""
    module = types.ModuleType("psycopg2")
    module.__version__ = "2.9.10 (dt dec pq3 ext lo64)"
    module.apilevel, module.threadsafety, module.paramstyle = "2.0", 2, "pyformat"
    module.connections = []

    class Error(Exception):
        pass

    module.Error = Error
    for name in ("Warning", "InterfaceError", "DatabaseError"):
        setattr(module, name, type(name, (Error,), {}))
    for name in ("OperationalError", "ProgrammingError", "IntegrityError", "DataError", "NotSupportedError",
                 "InternalError"):
        setattr(module, name, type(name, (module.DatabaseError,), {}))

    def connect(*args: Any, **kwargs: Any) -> StubConnection:
        connection = StubConnection(args, kwargs)
        module.connections.append(connection)
        return connection

    module.connect = connect
    # the dialect imports these as psycopg2.extras and psycopg2.extensions
    module.extras = types.SimpleNamespace(
        register_uuid=lambda *args, **kwargs: None,
        register_default_json=lambda *args, **kwargs: None,
        register_default_jsonb=lambda *args, **kwargs: None,
        HstoreAdapter=types.SimpleNamespace(get_oids=lambda connection: None),  # no hstore extension
    )
    module.extensions = types.SimpleNamespace(
        ISOLATION_LEVEL_AUTOCOMMIT=0, ISOLATION_LEVEL_READ_UNCOMMITTED=4, ISOLATION_LEVEL_READ_COMMITTED=1,
        ISOLATION_LEVEL_REPEATABLE_READ=2, ISOLATION_LEVEL_SERIALIZABLE=3, STATUS_READY=1,
    )
    return module


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The stub, also installed as ``sys.modules["psycopg2"]`` for the dialect's ``from psycopg2 import extras``."""
    module = stub_psycopg2()
    monkeypatch.setitem(sys.modules, "psycopg2", module)
    return module


class NumberedTokens:
    """A credential that hands out a new token at each call and records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.scopes.append(scopes)
        return types.SimpleNamespace(token=f"entra-token-{len(self.scopes)}", expires_on=0)


@pytest.fixture
def installed() -> Any:
    """``install(credential=None, **kwargs)`` → sign_in_with_entra's hook; removed again after the test."""
    hooks = []

    def install(credential: Any = None, **kwargs: Any) -> pgentra.ConnectHook:
        hook = pgentra.sign_in_with_entra(credential, **kwargs)
        hooks.append(hook)
        return hook

    yield install
    for hook in hooks:
        if event.contains(Engine, "do_connect", hook):
            event.remove(Engine, "do_connect", hook)
        for key, value in list(pgentra._installed.items()):
            if value is hook:
                del pgentra._installed[key]


def test_each_new_connection_gets_a_fresh_token_as_its_only_password(driver, installed):
    credential = NumberedTokens()
    installed(credential, environ={})  # PGPASSWORD takes the first token
    engine = sqlalchemy.create_engine("postgresql+psycopg2://id-hub@psql.example.org/jupyterhub", module=driver)
    assert engine.dialect.driver == "psycopg2"
    with engine.connect() as first, engine.connect() as second:  # two connections open at once: two connects
        assert first.exec_driver_sql("select 1").scalar() == 1
        assert second.exec_driver_sql("select 1").scalar() == 1
    engine.dispose()

    assert [c.kwargs for c in driver.connections] == [
        {"host": "psql.example.org", "dbname": "jupyterhub", "user": "id-hub", "password": "entra-token-2"},
        {"host": "psql.example.org", "dbname": "jupyterhub", "user": "id-hub", "password": "entra-token-3"},
    ]
    assert [c.args for c in driver.connections] == [(), ()]  # no DSN string that could carry another password
    assert credential.scopes == [(pgentra.SCOPE,)] * 3
    # the connections were really used: the dialect set itself up on the first one
    assert "select pg_catalog.version()" in driver.connections[0].statements


def test_a_url_with_its_own_password_keeps_it(driver, installed):
    credential = NumberedTokens()
    installed(credential, environ={})
    engine = sqlalchemy.create_engine("postgresql+psycopg2://id-hub:given@psql.example.org/jupyterhub", module=driver)
    with engine.connect():
        pass
    engine.dispose()
    assert driver.connections[0].kwargs["password"] == "given"
    assert len(credential.scopes) == 1  # only the one for PGPASSWORD


def test_the_hubs_identity_signs_in_through_the_managed_identity_endpoint(driver, installed, monkeypatch):
    """sign_in_with_entra(client_id=...) without a credential: DefaultAzureCredential, the hub's identity."""
    with FakeManagedIdentity((UserAssignedIdentity(CLIENT_ID, str(uuid.uuid4()), "id-hub"),)) as identity:
        set_azure_environment(monkeypatch, identity, CLIENT_ID)
        environ: dict[str, str] = {}
        installed(client_id=CLIENT_ID, environ=environ)
        engine = sqlalchemy.create_engine("postgresql+psycopg2://id-hub@psql.example.org/jupyterhub", module=driver)
        with engine.connect():
            pass
        engine.dispose()

    resource = pgentra.SCOPE.removesuffix("/.default")
    assert identity.asked_for() == {(resource, CLIENT_ID)}
    password = driver.connections[0].kwargs["password"]
    assert password in identity.issued and environ["PGPASSWORD"] in identity.issued
    claims = identity.claims(password)
    assert claims["aud"] == resource and claims["tid"] == identity.tenant_id
    assert claims["oid"] == identity.identities[CLIENT_ID].object_id
