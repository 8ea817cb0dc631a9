"""The functions' telemetry through OpenTelemetry: to Application Insights in Azure, nowhere locally.

:func:`configure` runs once per worker (``function_app.py``). With
``APPLICATIONINSIGHTS_CONNECTION_STRING`` set and the Azure Monitor distro
installed (``requirements.txt``), logs, traces and the metrics below go to
Application Insights, signed in with the functions' identity when
``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` names one (the resource accepts
no keys). Without it the instruments are OpenTelemetry's no-ops.

Metrics (Application Insights' ``customMetrics``, named as here; the
workbook in ``infra/modules/workbook.bicep`` reads exactly these):

- ``aca.start.duration`` (s, histogram; ``outcome``: ``running`` or
  ``failed``, ``code``): from a start being taken to its outcome.
- ``aca.start.failures`` (counter; ``code``): failed starts by error code.
- ``aca.timer.runs`` (counter; ``timer``, ``result``: ``ok`` or ``errors``)
  and ``aca.timer.duration`` (s, histogram; ``timer``): the culler's,
  reconciler's and warm pool's runs.
- ``aca.timer.items`` (counter; ``timer``, ``figure``): what a run did, by
  its summary's figures (``culled``, ``deleted``, ``marked_failed``,
  ``created`` …).
- ``aca.environment.cores`` (gauge; ``environment``, ``kind``: ``used`` or
  ``budget``) and ``aca.environment.servers`` (gauge; ``environment``): each
  environment as the reconciler counted it.

Every log line about a request carries its id as the ``request_id``
attribute (Application Insights: ``customDimensions.request_id``), and so
does the invocation's span: :func:`request_context` sets it.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import metrics, trace

from acaspawner.contract import Phase, Status

log = logging.getLogger(__name__)

METER = "acaspawner.functions"
START_DURATION = "aca.start.duration"
START_FAILURES = "aca.start.failures"
TIMER_RUNS = "aca.timer.runs"
TIMER_DURATION = "aca.timer.duration"
TIMER_ITEMS = "aca.timer.items"
ENVIRONMENT_CORES = "aca.environment.cores"
ENVIRONMENT_SERVERS = "aca.environment.servers"
#: every metric name the functions emit (the workbook's test holds its queries to these)
METRIC_NAMES = (START_DURATION, START_FAILURES, TIMER_RUNS, TIMER_DURATION, TIMER_ITEMS, ENVIRONMENT_CORES,
                ENVIRONMENT_SERVERS)
REQUEST_ID = "request_id"
_WAITING = (Phase.QUEUED.value, Phase.PROVISIONING.value)

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("aca_request_id", default="")
_instruments: dict[str, Any] = {}


def _instrument(name: str) -> Any:
    """The instrument ``name`` of the current meter provider (made at first use, after :func:`configure`)."""
    if name not in _instruments:
        meter = metrics.get_meter(METER)
        make = {START_DURATION: lambda: meter.create_histogram(name, unit="s", description="Seconds from a start "
                                                                "taken to its outcome"),
                START_FAILURES: lambda: meter.create_counter(name, description="Failed starts, by error code"),
                TIMER_RUNS: lambda: meter.create_counter(name, description="Timer runs, by timer and result"),
                TIMER_DURATION: lambda: meter.create_histogram(name, unit="s", description="Seconds of a timer run"),
                TIMER_ITEMS: lambda: meter.create_counter(name, description="What timer runs did, by figure"),
                ENVIRONMENT_CORES: lambda: meter.create_gauge(name, unit="{core}",
                                                              description="Cores held and budgeted per environment"),
                ENVIRONMENT_SERVERS: lambda: meter.create_gauge(name, description="Servers held per environment")}
        _instruments[name] = make[name]()
    return _instruments[name]


def reset() -> None:
    """Forget the instruments (tests that install their own meter provider)."""
    _instruments.clear()


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (``record.request_id``; "" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, REQUEST_ID):
            record.request_id = _request_id.get()
        return True


@contextlib.contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Within it, log records and the current span name ``request_id``."""
    token = _request_id.set(request_id)
    try:
        if request_id:
            trace.get_current_span().set_attribute("aca.request_id", request_id)
        yield
    finally:
        _request_id.reset(token)


def configure(environ: Mapping[str, str]) -> bool:
    """Send telemetry to Application Insights when it is configured; True when it is. Never raises: telemetry must
    not stop a function."""
    _name_requests(logging.getLogger())
    connection = environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
    if not connection:
        return False
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor

        options: dict[str, Any] = {"connection_string": connection, "logger_name": "functions"}
        client_id = _client_id(environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""))
        if client_id:
            from azure.identity import ManagedIdentityCredential

            options["credential"] = ManagedIdentityCredential(client_id=client_id)
        configure_azure_monitor(**options)
    except Exception as e:  # a missing package or a bad string: the functions run on without telemetry
        log.warning("telemetry to Application Insights is off: %s", type(e).__name__)
        return False
    # the distro's handler sits on the "functions" logger; a logger's own filter would miss its children's records
    _name_requests(logging.getLogger("functions"))
    reset()
    return True


def _name_requests(logger: logging.Logger) -> None:
    """Give each handler of ``logger`` the :class:`RequestIdFilter` (once)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())


def _client_id(authentication: str) -> str:
    """``ClientId`` of ``Authorization=AAD;ClientId=…`` (the host's own setting), else ""."""
    parts = dict(p.split("=", 1) for p in authentication.split(";") if "=" in p)
    return parts.get("ClientId", "").strip() if parts.get("Authorization", "").upper() == "AAD" else ""


def status_written(status: Status) -> str:
    """Count a start's outcome when ``status`` is the write that ended it (running or failed, after waiting); the
    outcome (``running``, ``failed``), or "" when ``status`` ended no start."""
    events = status.events
    if len(events) < 2 or events[-1].get("phase") not in (Phase.RUNNING.value, Phase.FAILED.value):
        return ""
    waited = _waiting_before(events)
    if not waited:  # not the end of a start: a repeat of the outcome, or a stop's failure
        return ""
    outcome = "running" if events[-1]["phase"] == Phase.RUNNING.value else "failed"
    code = status.error_code or ""
    seconds = float(events[-1].get("time", 0.0)) - float(waited[-1].get("time", 0.0))
    _instrument(START_DURATION).record(max(seconds, 0.0), {"outcome": outcome, "code": code})
    if outcome == "failed":
        _instrument(START_FAILURES).add(1, {"code": code or "unknown"})
    return outcome


def _waiting_before(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The queued/provisioning events right before the last one, newest first."""
    found = []
    for event in reversed(events[:-1]):
        if event.get("phase") not in _WAITING or not isinstance(event.get("time"), int | float):
            break
        found.append(event)
    return found


def run_ended(timer: str, seconds: float, errors: int, figures: Mapping[str, float]) -> None:
    """Count a timer's run and what it did."""
    _instrument(TIMER_RUNS).add(1, {"timer": timer, "result": "errors" if errors else "ok"})
    _instrument(TIMER_DURATION).record(max(seconds, 0.0), {"timer": timer})
    for figure, value in figures.items():
        if figure != "seconds" and value > 0:
            _instrument(TIMER_ITEMS).add(value, {"timer": timer, "figure": figure})


def environment_counted(name: str, used: float, budget: float, servers: int) -> None:
    """One environment as the reconciler counted it."""
    _instrument(ENVIRONMENT_CORES).set(used, {"environment": name, "kind": "used"})
    _instrument(ENVIRONMENT_CORES).set(budget, {"environment": name, "kind": "budget"})
    _instrument(ENVIRONMENT_SERVERS).set(servers, {"environment": name})
