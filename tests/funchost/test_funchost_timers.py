"""Timer triggers on NCRONTAB schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from waiting import wait_until

from local.funchost import FunctionsHost

TIMER_APP = """
import azure.functions as func

app = func.FunctionApp()
FIRED = []


@app.timer_trigger(arg_name="timer", schedule="%EVERY_SECOND%")
def ticker(timer: func.TimerRequest) -> None:
    FIRED.append(timer)


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
async def at_startup(timer: func.TimerRequest) -> None:
    FIRED.append("startup")


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *")
def failing(timer: func.TimerRequest) -> None:
    raise ValueError("timer failed")
"""


def test_six_field_schedule_fires(make_app):
    with FunctionsHost(make_app(TIMER_APP), {"EVERY_SECOND": "*/1 * * * * *"}) as host:
        assert host.functions["ticker"].schedule == "*/1 * * * * *"  # resolved from the setting
        module = host.module
        wait_until(lambda: len([t for t in module.FIRED if t != "startup"]) >= 2, timeout=20)
        ticks = [t for t in module.FIRED if t != "startup"]
        assert all(isinstance(t, func.TimerRequest) and t.past_due is False for t in ticks)
        assert {"Last", "Next", "LastUpdated"} <= set(ticks[0].schedule_status)
    assert host.stats["ticker"].failed == 0


def test_run_on_startup_fires_once(make_app):
    with FunctionsHost(make_app(TIMER_APP), {"EVERY_SECOND": "0 0 0 1 1 *"}) as host:
        module = host.module
        # every runner is waiting for its next occurrence: at_startup only once its startup run is over
        timers = ("ticker", "at_startup", "failing")
        wait_until(lambda: all(host.timer_next_due(name) for name in timers), timeout=20,
                   what="every timer to wait for its next occurrence")
        # that is next January for all three: nothing else can fire before it
        soon = datetime.now(UTC) + timedelta(minutes=10)
        assert all(host.timer_next_due(name) > soon for name in timers), {n: host.timer_next_due(n) for n in timers}
        assert module.FIRED == ["startup"]
        assert host.stats["at_startup"].succeeded == 1
        assert host.stats["at_startup"].invocations == 1


def test_run_timer_now(make_app):
    with FunctionsHost(make_app(TIMER_APP), {"EVERY_SECOND": "0 0 0 1 1 *"}).start(listen=False) as host:
        host.run_timer("ticker", past_due=True)
        [request] = host.module.FIRED  # without listening, run_on_startup does not fire either
        assert isinstance(request, func.TimerRequest) and request.past_due is True
        with pytest.raises(ValueError, match="timer failed"):
            host.run_timer("failing")
        assert host.stats["failing"].failed == 1
        with pytest.raises(KeyError):
            host.run_timer("nope")


async def test_run_timer_from_async_code(make_app):
    async with FunctionsHost(make_app(TIMER_APP), {"EVERY_SECOND": "0 0 0 1 1 *"}) as host:
        await host.arun_timer("ticker")
        assert host.stats["ticker"].succeeded == 1


def test_invalid_schedule_is_rejected_at_load(make_app):
    host = FunctionsHost(make_app(TIMER_APP), {"EVERY_SECOND": "*/5 * * * *"})  # five fields: cron, not NCRONTAB
    with pytest.raises(ValueError, match="six fields"):
        host.load()
    host.close()
