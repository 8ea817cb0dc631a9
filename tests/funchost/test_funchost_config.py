"""host.json, settings, body encoding and schedule parsing of the functions dev host."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime

import pytest

from local.funchost import (
    CronSchedule,
    HostConfigError,
    IntervalSchedule,
    MessageDecodeError,
    ScheduleError,
    SettingsError,
    decode_body,
    encode_body,
    load_host_json,
    merge_settings,
    parse_schedule,
    parse_timespan,
    read_local_settings,
    resolve_connection,
    resolve_expression,
)
from local.funchost.settings import EnvironmentPatch


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("00:00:02", 2), ("00:01:00", 60), ("1.02:00:00", 93600), ("00:00:00.500", 0.5), ("00:10", 600), (1500, 1.5)],
)
def test_timespans(value, seconds):
    assert parse_timespan(value, numbers_are_ms=True) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["2s", "00:61:00", "", "1:2:3:4", True])
def test_bad_timespans(value):
    with pytest.raises(HostConfigError):
        parse_timespan(value, numbers_are_ms=True)


def test_host_json_defaults_are_the_hosts():
    q = load_host_json({"version": "2.0"}).queues
    assert (q.max_polling_interval, q.visibility_timeout, q.batch_size, q.max_dequeue_count) == (60, 0, 16, 5)
    assert q.new_batch_threshold == 8
    assert q.message_encoding == "base64"
    assert load_host_json(None).function_timeout is None


def test_repo_host_json_parses():
    config = load_host_json(os.path.join(os.path.dirname(__file__), "..", "..", "host.json"))
    assert config.queues.max_polling_interval <= 10  # a spawn must not wait a minute for the queue
    assert config.queues.message_encoding == "base64"


def test_host_json_values():
    config = load_host_json(
        {
            "version": "2.0",
            "functionTimeout": "00:10:00",
            "extensions": {
                "queues": {
                    "maxPollingInterval": 2000,
                    "visibilityTimeout": "00:00:15",
                    "batchSize": 8,
                    "newBatchThreshold": 4,
                    "maxDequeueCount": 3,
                    "messageEncoding": "None",
                }
            },
        }
    )
    q = config.queues
    assert (q.max_polling_interval, q.visibility_timeout, q.batch_size, q.new_batch_threshold) == (2, 15, 8, 4)
    assert (q.max_dequeue_count, q.message_encoding, config.function_timeout) == (3, "none", 600)
    assert load_host_json({"functionTimeout": "-1"}).function_timeout is None


@pytest.mark.parametrize(
    "queues",
    [
        {"batchSize": 33},
        {"batchSize": 0},
        {"maxDequeueCount": 0},
        {"messageEncoding": "utf8"},
        {"maxPollingInterval": 50},
    ],
)
def test_host_json_rejects_what_the_host_rejects(queues):
    with pytest.raises(HostConfigError):
        load_host_json({"extensions": {"queues": queues}})


def test_local_settings_file(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text('{"IsEncrypted": false, "Values": {"A": "1", "N": 5, "B": true}, "ConnectionStrings": {}}')
    assert read_local_settings(path) == {"A": "1", "N": "5", "B": "true"}
    path.write_text('{"IsEncrypted": true, "Values": {}}')
    with pytest.raises(SettingsError, match="encrypted"):
        read_local_settings(path)


def test_settings_precedence():
    merged = merge_settings({"A": "file", "B": "file"}, {"B": "env", "C": "env"}, {"C": "explicit"})
    assert merged == {"A": "file", "B": "env", "C": "explicit"}


def test_binding_expressions():
    settings = {"Q": "lifecycle", "S": "0 */5 * * * *"}
    assert resolve_expression("%Q%", settings) == "lifecycle"
    assert resolve_expression("aca-%Q%-x", settings) == "aca-lifecycle-x"
    assert resolve_expression("plain", settings) == "plain"
    with pytest.raises(SettingsError, match="MISSING"):
        resolve_expression("%MISSING%", settings)


def test_connections():
    conn = f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={secrets.token_hex(8)};QueueEndpoint=http://127.0.0.1:1/a;"
    assert resolve_connection("", {"AzureWebJobsStorage": conn}) == ("AzureWebJobsStorage", conn)
    assert resolve_connection("MyStorage", {"MyStorage": conn}) == ("MyStorage", conn)
    assert resolve_connection("Other", {"AzureWebJobsOther": conn}) == ("AzureWebJobsOther", conn)
    dev = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    assert resolve_connection(None, dev, conn) == ("AzureWebJobsStorage", conn)
    assert resolve_connection(None, dev) == ("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    with pytest.raises(SettingsError, match="identity-based"):
        resolve_connection("Ident", {"Ident__queueServiceUri": "https://x"})
    with pytest.raises(SettingsError, match="no app setting"):
        resolve_connection("Nope", {})


def test_environment_patch_restores():
    os.environ["FUNCHOST_TEST_KEEP"] = "old"
    patch = EnvironmentPatch({"FUNCHOST_TEST_KEEP": "new", "FUNCHOST_TEST_NEW": "x"})
    patch.apply()
    assert os.environ["FUNCHOST_TEST_KEEP"] == "new" and os.environ["FUNCHOST_TEST_NEW"] == "x"
    patch.restore()
    assert os.environ.pop("FUNCHOST_TEST_KEEP") == "old" and "FUNCHOST_TEST_NEW" not in os.environ


def test_bodies():
    data = bytes(range(256))
    assert decode_body(encode_body(data, "base64"), "base64") == data
    assert decode_body("aGVs\nbG8=", "base64") == b"hello"  # whitespace is skipped, as by .NET
    assert decode_body("not base64!", "none") == b"not base64!"
    for bad in ("not base64!", "aGVsbG8", '{"op": "start"}'):
        with pytest.raises(MessageDecodeError):
            decode_body(bad, "base64")


def test_ncrontab_is_seconds_first():
    start = datetime(2025, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)
    every_5s = parse_schedule("*/5 * * * * *")
    assert isinstance(every_5s, CronSchedule)
    assert every_5s.next_after(start) == datetime(2025, 1, 1, 12, 0, 5, tzinfo=UTC)
    assert parse_schedule("0 */5 * * * *").next_after(start) == datetime(2025, 1, 1, 12, 5, tzinfo=UTC)


def test_ncrontab_day_fields_must_both_match():
    # NCRONTAB: the 13th AND a Friday (classic cron would take either)
    nxt = parse_schedule("0 0 0 13 * Fri").next_after(datetime(2025, 1, 1, tzinfo=UTC))
    assert nxt == datetime(2025, 6, 13, tzinfo=UTC)


def test_schedule_forms():
    assert parse_schedule("00:00:30") == IntervalSchedule(30)
    for bad in ("*/5 * * * *", "* * * * * * * *", "61 * * * * *", "00:00:00"):
        with pytest.raises(ScheduleError):
            parse_schedule(bad)
