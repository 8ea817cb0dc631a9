"""Indexing a v2 function app through azure.functions, with settings resolved like the host does."""

from __future__ import annotations

import os
import secrets

import pytest

from local.funchost import AppLoadError, FunctionsHost, QueueFunction, TimerFunction

APP = """
import os

import azure.functions as func

app = func.FunctionApp()
SEEN_AT_IMPORT = os.environ.get("MY_QUEUE")


@app.queue_trigger(arg_name="msg", queue_name="%MY_QUEUE%", connection="MyStorage")
def lifecycle(msg: func.QueueMessage, context: func.Context) -> None:
    pass


@app.timer_trigger(arg_name="timer", schedule="%MY_SCHEDULE%", run_on_startup=True, use_monitor=False)
async def culler(timer: func.TimerRequest) -> None:
    pass


@app.function_name("on_default_connection")
@app.queue_trigger(arg_name="m", queue_name="plain-queue", connection="")
def default_connection(m: func.QueueMessage) -> None:
    pass


@app.route(route="health")
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")
"""

CONN = (
    f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={secrets.token_hex(8)};"
    "QueueEndpoint=http://127.0.0.1:9/x;"
)


def test_indexing_resolves_settings(make_app):
    settings = {
        "MY_QUEUE": "Aca-Lifecycle",
        "MY_SCHEDULE": "0 */5 * * * *",
        "MyStorage": CONN,
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    }
    host = FunctionsHost(make_app(APP), settings, dev_storage_connection_string=CONN + "Dev=1;")
    try:
        index = host.load()
        assert host.module.SEEN_AT_IMPORT == "Aca-Lifecycle"  # settings are in the environment at import
        assert os.environ["MY_SCHEDULE"] == "0 */5 * * * *"
        assert set(index.functions) == {"lifecycle", "culler", "on_default_connection"}
        assert "health" in index.skipped and "http" in index.skipped["health"].lower()

        queue = index.functions["lifecycle"]
        assert isinstance(queue, QueueFunction)
        assert queue.arg_name == "msg" and queue.wants_context and not queue.is_async
        assert queue.queue_name == "aca-lifecycle"  # the host lower-cases resolved queue names
        assert queue.poison_queue_name == "aca-lifecycle-poison"
        assert (queue.connection_setting, queue.connection_string) == ("MyStorage", CONN)

        timer = index.functions["culler"]
        assert isinstance(timer, TimerFunction)
        assert timer.arg_name == "timer" and timer.is_async and not timer.wants_context
        assert timer.schedule == "0 */5 * * * *"
        assert timer.run_on_startup is True and timer.use_monitor is False

        default = index.functions["on_default_connection"]
        assert default.connection_setting == "AzureWebJobsStorage"
        assert default.connection_string == CONN + "Dev=1;"  # UseDevelopmentStorage=true -> override
    finally:
        host.close()
    assert "MY_SCHEDULE" not in os.environ and "MY_QUEUE" not in os.environ


def test_bindings_come_from_azure_functions_indexing(make_app):
    settings = {"MY_QUEUE": "q1x", "MY_SCHEDULE": "* * * * * *", "MyStorage": CONN, "AzureWebJobsStorage": CONN}
    host = FunctionsHost(make_app(APP), settings)
    try:
        host.load()
        fn = host.index.functions["lifecycle"]
        assert fn.func.__name__ == "lifecycle" and fn.func.__module__ == host.module.__name__
        assert fn.directory == str(host.app_path.parent)
    finally:
        host.close()


def test_missing_setting_fails_indexing(make_app):
    host = FunctionsHost(make_app(APP), {"MY_SCHEDULE": "* * * * * *", "MyStorage": CONN})
    with pytest.raises(AppLoadError, match="MY_QUEUE"):
        host.load()
    host.close()
    assert "MyStorage" not in os.environ


def test_disabled_function_and_unbound_parameters(make_app):
    app = make_app(
        """
        import azure.functions as func

        app = func.FunctionApp()

        @app.queue_trigger(arg_name="msg", queue_name="jobs", connection="")
        def needs_more(msg: func.QueueMessage, extra: str) -> None:
            pass

        @app.timer_trigger(arg_name="t", schedule="0 0 * * * *")
        def nightly(t: func.TimerRequest) -> None:
            pass
        """
    )
    host = FunctionsHost(app, {"AzureWebJobsStorage": CONN, "AzureWebJobs.nightly.Disabled": "true"})
    try:
        index = host.load()
        assert index.functions == {}
        assert "extra" in index.skipped["needs_more"]
        assert "disabled" in index.skipped["nightly"]
    finally:
        host.close()


def test_app_without_function_app_is_rejected(make_app):
    with pytest.raises(AppLoadError, match="no FunctionApp"):
        FunctionsHost(make_app("x = 1\n"), {}).load()
