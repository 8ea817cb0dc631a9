"""The Function App (Python v2 programming model): registers the handlers that live in ``functions/``.

Kept thin on purpose: importing it must work without any app setting,
because the worker indexes the functions before settings exist; each handler
reads and validates its settings at its first invocation.
"""

from __future__ import annotations

import azure.functions as func

from functions import lifecycle, runtime

app = func.FunctionApp()


@app.function_name("lifecycle")
@app.queue_trigger(arg_name="msg", queue_name="%ACA_LIFECYCLE_QUEUE%", connection="AcaStorage")
def lifecycle_handler(msg: func.QueueMessage) -> None:
    """Start, stop or delete one user's container app (a sealed request from the hub)."""
    lifecycle.handle_message(msg.get_body(), runtime.get_deps(), dequeue_count=msg.dequeue_count or 1)


# The culler and reconciler timers register below (functions/culler.py, functions/reconciler.py).
