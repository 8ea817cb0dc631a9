"""Load a Python v2 function app and index it with ``azure.functions``' own indexing.

The Python worker imports ``function_app.py`` with the app root on ``sys.path``, finds the one
``FunctionApp`` instance, and asks it for its functions (``app.get_functions()``); each function
carries its trigger and bindings. This module does the same and turns the queue and timer
triggers into resolved descriptions (``%SETTING%`` expressions replaced, connection looked up).
Functions the dev host cannot drive (HTTP and other triggers, extra input/output bindings) are
reported as skipped rather than failing the whole app.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from azure.functions.decorators.function_app import Function, FunctionRegister
from azure.functions.decorators.queue import QueueTrigger
from azure.functions.decorators.timer import TimerTrigger

from .settings import SettingsError, resolve_connection, resolve_expression

CONTEXT_PARAM = "context"  # the worker passes a func.Context to a parameter with this name


class AppLoadError(RuntimeError):
    """The function app cannot be imported or indexed."""


@dataclass(frozen=True)
class FunctionInfo:
    """An indexed function: its name, the Python callable and how to call it."""

    name: str
    func: Callable[..., Any]
    arg_name: str
    wants_context: bool
    is_async: bool
    directory: str


@dataclass(frozen=True)
class QueueFunction(FunctionInfo):
    """A queue-triggered function, with its queue name and connection resolved."""

    queue_name: str = ""
    connection_setting: str = ""
    connection_string: str = field(default="", repr=False)

    @property
    def poison_queue_name(self) -> str:
        return f"{self.queue_name}-poison"


@dataclass(frozen=True)
class TimerFunction(FunctionInfo):
    """A timer-triggered function, with its schedule resolved."""

    schedule: str = ""
    run_on_startup: bool = False
    use_monitor: bool = True


@dataclass
class AppIndex:
    """What indexing found: drivable functions by name, and skipped ones with the reason."""

    functions: dict[str, FunctionInfo] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def queue_functions(self) -> list[QueueFunction]:
        return [f for f in self.functions.values() if isinstance(f, QueueFunction)]

    @property
    def timer_functions(self) -> list[TimerFunction]:
        return [f for f in self.functions.values() if isinstance(f, TimerFunction)]


@dataclass
class LoadedApp:
    """An imported function app module and its ``FunctionApp``; ``unload()`` undoes the import."""

    path: Path
    module: ModuleType
    app: FunctionRegister
    _added_path: bool = False
    _previous_module: ModuleType | None = None

    def unload(self) -> None:
        _undo_import(self.module, self._previous_module, str(self.path.parent) if self._added_path else None)


def _undo_import(module: ModuleType, previous: ModuleType | None, added_root: str | None) -> None:
    name = module.__name__
    if sys.modules.get(name) is module:
        if previous is not None:
            sys.modules[name] = previous
        else:
            del sys.modules[name]
    if added_root is not None and added_root in sys.path:
        sys.path.remove(added_root)


def load_function_app(path: str | Path) -> LoadedApp:
    """Import the app file (fresh each time) and find its single ``FunctionApp`` instance."""
    path = Path(path).resolve()
    if not path.is_file():
        raise AppLoadError(f"function app file not found: {path}")
    root = str(path.parent)
    # The worker runs with the app root on sys.path, so `import functions.x` works from function_app.py.
    added = root not in sys.path
    if added:
        sys.path.insert(0, root)
    name = path.stem
    previous = sys.modules.get(name)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        apps = [v for v in vars(module).values() if isinstance(v, FunctionRegister)]
        if len(apps) != 1:
            found = "no FunctionApp instance" if not apps else f"{len(apps)} FunctionApp instances"
            raise AppLoadError(f"{path}: expected exactly one FunctionApp at module level, found {found}")
    except BaseException:
        _undo_import(module, previous, root if added else None)
        raise
    return LoadedApp(path, module, apps[0], added, previous)


def index_functions(
    app: FunctionRegister,
    settings: Mapping[str, str],
    *,
    dev_storage_connection_string: str | None = None,
    app_directory: str | Path = ".",
) -> AppIndex:
    """Index ``app`` like the worker does and resolve its queue and timer triggers against ``settings``.

    ``get_functions()`` may be called only once per app instance (it records names to reject
    duplicates), so index each loaded app once.
    """
    index = AppIndex()
    for function in app.get_functions():
        name = function.get_function_name()
        if _is_disabled(name, settings):
            index.skipped[name] = "disabled by app setting AzureWebJobs.<name>.Disabled"
            continue
        try:
            info = _index_one(function, name, settings, dev_storage_connection_string, str(app_directory))
        except SettingsError as exc:
            raise AppLoadError(f"function {name!r}: {exc}") from exc
        if isinstance(info, str):
            index.skipped[name] = info
        else:
            index.functions[name] = info
    return index


def _is_disabled(name: str, settings: Mapping[str, str]) -> bool:
    return settings.get(f"AzureWebJobs.{name}.Disabled", "").strip().lower() in ("true", "1")


def _index_one(
    function: Function, name: str, settings: Mapping[str, str], dev_storage: str | None, directory: str
) -> FunctionInfo | str:
    trigger = function.get_trigger()
    if not isinstance(trigger, QueueTrigger | TimerTrigger):
        kind = getattr(trigger, "type", None) or "no trigger"
        return f"trigger {kind!r} is not supported by the dev host"
    extra = [b for b in function.get_bindings() if b is not trigger]
    if extra:
        names = ", ".join(f"{b.name} ({getattr(b, 'type', '?')})" for b in extra)
        return f"bindings other than the trigger are not supported by the dev host: {names}"
    func = function.get_user_function()
    params = set(inspect.signature(func).parameters)
    unknown = params - {trigger.name, CONTEXT_PARAM}
    if unknown:
        return f"parameters without a binding: {', '.join(sorted(unknown))}"
    common = {
        "name": name,
        "func": func,
        "arg_name": trigger.name,
        "wants_context": CONTEXT_PARAM in params and trigger.name != CONTEXT_PARAM,
        "is_async": inspect.iscoroutinefunction(func),
        "directory": directory,
    }
    if isinstance(trigger, QueueTrigger):
        # The host lower-cases the resolved queue name before validating it.
        queue_name = resolve_expression(trigger.queue_name, settings).strip().lower()
        _validate_queue_name(queue_name)
        setting, conn = resolve_connection(trigger.connection, settings, dev_storage)
        return QueueFunction(**common, queue_name=queue_name, connection_setting=setting, connection_string=conn)
    schedule = resolve_expression(trigger.schedule, settings).strip()
    return TimerFunction(
        **common,
        schedule=schedule,
        run_on_startup=bool(trigger.run_on_startup),
        use_monitor=True if trigger.use_monitor is None else bool(trigger.use_monitor),
    )


def _validate_queue_name(name: str) -> None:
    # Azure Storage's queue naming rules.
    ok = 3 <= len(name) <= 63 and name[0].isalnum() and name[-1].isalnum() and "--" not in name
    if not ok or any(not (c.isdigit() or "a" <= c <= "z" or c == "-") for c in name):
        raise SettingsError(f"invalid queue name {name!r} (3-63 chars of a-z, 0-9, single '-')")
