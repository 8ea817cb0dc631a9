"""The Function App (Python v2 programming model): registers the handlers that live in ``functions/``.

Kept thin on purpose: importing it must work without any app setting,
because the worker indexes the functions before settings exist; each handler
reads and validates its settings at its first invocation.
"""

from __future__ import annotations

import os

import azure.functions as func

from functions import culler, lifecycle, pool_timer, reconcile_run, reconciler, reporting, runtime, settings, telemetry

# Application Insights through OpenTelemetry when APPLICATIONINSIGHTS_CONNECTION_STRING is set (never raises)
telemetry.configure(os.environ)
app = func.FunctionApp()


@app.function_name("lifecycle")
@app.queue_trigger(arg_name="msg", queue_name="%ACA_LIFECYCLE_QUEUE%", connection=settings.CONNECTION)
def lifecycle_handler(msg: func.QueueMessage) -> None:
    """Start, stop or delete one user's container app (a sealed request from the hub)."""
    lifecycle.handle_message(msg.get_body(), runtime.get_deps(), dequeue_count=msg.dequeue_count or 1)


@app.function_name("culler")
@app.timer_trigger(arg_name="timer", schedule="%ACA_CULL_SCHEDULE%")
def culler_timer(timer: func.TimerRequest) -> None:
    """Stop idle servers through the hub's REST API (the hub stays the source of truth)."""
    reporting.reported_run(os.environ, culler.SERVICE_NAME, lambda: culler.run_culler(os.environ))


@app.function_name("reconciler")
@app.timer_trigger(arg_name="timer", schedule="%ACA_RECONCILE_SCHEDULE%")
def reconciler_timer(timer: func.TimerRequest) -> None:
    """Delete orphaned apps, fail stuck statuses, report servers whose app is gone."""
    reporting.reported_run(os.environ, reconcile_run.NAME, lambda: reconciler.run_reconciler(os.environ), tidy=True)


@app.function_name("warm_pool")
@app.timer_trigger(arg_name="timer", schedule="%ACA_WARM_POOL_SCHEDULE%")
def warm_pool_timer(timer: func.TimerRequest) -> None:
    """Keep the warm pool's servers ready (ACA_WARM_POOL); nothing when no pool is configured."""
    if os.environ.get("ACA_WARM_POOL", "").strip():
        reporting.reported_run(os.environ, pool_timer.NAME, lambda: pool_timer.run_pool(os.environ))
