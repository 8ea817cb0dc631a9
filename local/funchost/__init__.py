"""Functions dev host: runs the Python v2 function app locally with the Azure Functions host's semantics.

It indexes ``function_app.py`` through ``azure.functions`` itself, reads host.json and
``local.settings.json``, and drives queue triggers from Azure Storage (Azurite) and timer
triggers on their NCRONTAB schedules. ``func start`` (Core Tools) remains the reference where
it can be installed; this host exists for machines and CI where it cannot.

Run it with ``python -m local.funchost``; use ``FunctionsHost`` from tests and the local stack.
"""

from .host import DEFAULT_APP_PATH, FunctionsHost
from .hostjson import HostConfig, HostConfigError, QueueOptions, load_host_json, parse_timespan
from .invoke import FunctionStats, FunctionTimeoutError, InvocationContext
from .loader import (
    AppIndex,
    AppLoadError,
    FunctionInfo,
    LoadedApp,
    QueueFunction,
    TimerFunction,
    index_functions,
    load_function_app,
)
from .queues import MessageDecodeError, decode_body, encode_body
from .settings import SettingsError, merge_settings, read_local_settings, resolve_connection, resolve_expression
from .timers import CronSchedule, IntervalSchedule, ScheduleError, parse_schedule

__all__ = [
    "DEFAULT_APP_PATH",
    "AppIndex",
    "AppLoadError",
    "CronSchedule",
    "FunctionInfo",
    "FunctionStats",
    "FunctionTimeoutError",
    "FunctionsHost",
    "HostConfig",
    "HostConfigError",
    "IntervalSchedule",
    "InvocationContext",
    "LoadedApp",
    "MessageDecodeError",
    "QueueFunction",
    "QueueOptions",
    "ScheduleError",
    "SettingsError",
    "TimerFunction",
    "decode_body",
    "encode_body",
    "index_functions",
    "load_function_app",
    "load_host_json",
    "merge_settings",
    "parse_schedule",
    "parse_timespan",
    "read_local_settings",
    "resolve_connection",
    "resolve_expression",
]
