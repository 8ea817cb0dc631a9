"""Shared fixtures (a real Azurite for every test session that needs storage) and the two tiers.

The tiers: ``make test`` runs every test. ``make test-quick`` (``pytest --quick``) runs the unit and
contract tests only: it leaves out every test marked ``slow``, and nobody marks a test ``slow`` by hand.
A test is slow when it starts a stack or a part of one: a ``local.stack.Stack``, a functions dev
host (``FunctionsHost``, in process or as ``python -m local.funchost``), a JupyterHub or its proxy,
the benchmark or a browser; when it runs the spawner end to end with the functions' stand-in
(``FakeWorker``); when it tests the ACA emulator itself (its apps are processes); or when it builds
the distribution or collects the whole suite again. It is
recognised at collection (``pytest_collection_modifyitems``), so a new stack test is slow without
anyone remembering it:

* it lies in a slow folder or file (``SLOW_PATHS``), or
* its module's source, or the source of one of this repository's fixtures it uses (directly or
  through other fixtures), names a way to start a stack (``STARTS_A_STACK``).

``pytest -m slow --collect-only`` lists them; each carries the reason (``item.get_closest_marker("slow")``).
A stack started in a way these rules miss does not silently slow the quick tier down: under
``--quick`` each of those ways fails the test, saying to teach the rules about it (``tests/test_tiers.py``
checks both the selection and this guard).
"""

from __future__ import annotations

import functools
import inspect
import re
import uuid
from pathlib import Path

import pytest

from local.azurite import start_azurite

TESTS = Path(__file__).resolve().parent

#: paths (under tests/) whose every test is slow, and why
SLOW_PATHS = {
    "integration/": "the spawner against the functions in a dev host",
    "integration_culler/": "a whole local stack",
    "e2e/": "a whole local stack and a browser",
    "bench/": "the benchmark, with its own stack",
    "packaging/": "builds the distribution and installs it into fresh virtual environments from the registry",
    "emulator/": "the local ACA emulator's own tests: it runs their container apps as processes",
    "test_tiers.py": "collects the whole suite in a subprocess",
}

#: source text that starts a stack or a part of one
STARTS_A_STACK = re.compile(
    r"\bStack\("  # the whole local system (local.stack)
    r"|\bFunctionsHost\(|\bmake_stack\b"  # the functions dev host in process (make_stack: tests/functions')
    r"|[\"']local\.(?:funchost|bench|demo)[\"']"  # python -m: the dev host, the benchmark, the demo
    r"|\bstart_hub\(|\bMockHub\b"  # a JupyterHub and its proxy (tests/culler/hubprocess.py; JupyterHub's own)
    r"|NODE_BIN\s*/\s*[\"']configurable-http-proxy"  # the hub's proxy on its own
    r"|\bsync_playwright\b|\blaunch_persistent_context\b"  # a browser
    r"|\bFakeWorker\("  # the functions' stand-in for the spawner: queue, table and spawner end to end, in real time
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--quick", action="store_true", default=False,
        help="the quick tier: leave out the tests marked slow (those that start a stack) and fail any "
             "other test that starts one (make test-quick)",
    )


@functools.cache
def _stack_in_file(source_file: str) -> str | None:
    try:
        found = STARTS_A_STACK.search(Path(source_file).read_text(encoding="utf-8"))
    except OSError:
        return None
    return found[0] if found else None


@functools.cache
def _stack_in_fixture(func) -> str | None:
    """What a fixture of this repository (not a library's) starts a stack with, if it does."""
    try:
        source = Path(inspect.getsourcefile(func) or "").resolve()
        if not (source.is_relative_to(TESTS) or source.is_relative_to(TESTS.parent / "local")):
            return None
        found = STARTS_A_STACK.search(inspect.getsource(func))
    except (OSError, TypeError):
        return None
    return found[0] if found else None


def slow_reason(item: pytest.Item) -> str | None:
    """Why ``item`` belongs to the slow tier, or None."""
    path = Path(str(item.path))
    if path.is_relative_to(TESTS):
        relative = path.relative_to(TESTS).as_posix()
        for prefix, why in SLOW_PATHS.items():
            if relative == prefix or (prefix.endswith("/") and relative.startswith(prefix)):
                return f"tests/{prefix}: {why}"
    found = _stack_in_file(str(path))
    if found:
        return f"{path.name} has {found!r}"
    info = getattr(item, "_fixtureinfo", None)
    for name, definitions in (info.name2fixturedefs.items() if info is not None else ()):
        for definition in definitions:
            found = _stack_in_fixture(definition.func)
            if found:
                return f"its fixture {name!r} has {found!r}"
    return None


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = slow_reason(item)
        if reason is not None:
            item.add_marker(pytest.mark.slow(reason=reason))  # why, for whoever wonders
    if config.getoption("--quick"):
        kept = [item for item in items if item.get_closest_marker("slow") is None]
        left_out = [item for item in items if item.get_closest_marker("slow") is not None]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
        items[:] = kept


# -- the guard of the quick tier ------------------------------------------------------------------

class StackInQuickTier(RuntimeError):
    """A test of the quick tier started a stack: the collection rules above missed how."""


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise StackInQuickTier(
            f"this test starts {what} but is in the quick tier (pytest --quick): teach tests/conftest.py's "
            "SLOW_PATHS or STARTS_A_STACK how it starts it, so that it is marked slow"
        )

    return refuse


#: ``python -m <module>`` (or ``bin/<name>``) commands that start a stack or a part of one
STACK_COMMANDS = ("local.funchost", "local.bench", "local.demo", "jupyterhub", "configurable-http-proxy")


def pytest_configure(config: pytest.Config) -> None:
    """Under ``--quick``, for the whole session: starting a stack raises instead."""
    if not config.getoption("--quick"):
        return
    import subprocess

    import local.stack
    from local.funchost import host as funchost

    patch = pytest.MonkeyPatch()
    config.add_cleanup(patch.undo)
    patch.setattr(local.stack.Stack, "start", _refuse("a local.stack.Stack"))
    patch.setattr(funchost.FunctionsHost, "start", _refuse("a functions dev host (FunctionsHost)"))
    patch.setattr(funchost.FunctionsHost, "astart", _refuse("a functions dev host (FunctionsHost)"))
    import playwright.sync_api

    patch.setattr(playwright.sync_api, "sync_playwright", _refuse("a browser (Playwright)"))
    popen_init = subprocess.Popen.__init__

    def guarded_popen_init(self, args, *rest, **kwargs):
        argv = [str(a) for a in args] if isinstance(args, list | tuple) else str(args).split()
        for command in STACK_COMMANDS:
            if command in argv or Path(argv[0]).name == command:
                _refuse(f"`{command}`")()
        popen_init(self, args, *rest, **kwargs)

    patch.setattr(subprocess.Popen, "__init__", guarded_popen_init)


# -- shared fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """A running Azurite (installed from npm if missing)."""
    instance = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def storage_connection_string(azurite) -> str:
    return azurite.connection_string


@pytest.fixture
def unique_name():
    """Names for queues and tables that no other test uses (letters and digits only)."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}{uuid.uuid4().hex[:12]}"

    return make
