"""local/func_smoke.py, the script CI runs against Core Tools' ``func start``, checked here against the dev host."""

from __future__ import annotations

import asyncio
import json

from acaspawner.contract import Op
from acaspawner.sealing import Sealer, generate_key
from functions.settings import Settings
from local.emulator import pytest_fixtures
from local.func_smoke import EXAMPLE_SETTINGS, NEVER, lifecycle_request, main, run, smoke_settings
from local.funchost import FunctionsHost
from local.procs import REPO

aca_emulator_factory = pytest_fixtures.aca_emulator_factory
aca_emulator = pytest_fixtures.aca_emulator


def _values(emulator, connection_string: str, unique_name) -> dict[str, str]:
    example = json.loads(EXAMPLE_SETTINGS.read_text())
    values = smoke_settings(example, emulator.info(), connection_string, generate_key())["Values"]
    # this Azurite is shared by the session's tests: names of their own
    return {**values, "ACA_LIFECYCLE_QUEUE": unique_name("q"), "ACA_STATUS_TABLE": unique_name("t")}


def test_the_smoke_settings_are_complete_and_quiet(aca_emulator, storage_connection_string, unique_name):
    values = _values(aca_emulator, storage_connection_string, unique_name)
    settings = Settings.from_environ(values)  # raises on anything missing or malformed
    assert settings.arm_endpoint == aca_emulator.arm_endpoint and settings.location == aca_emulator.location
    assert values["ACA_CULL_SCHEDULE"] == values["ACA_RECONCILE_SCHEDULE"] == NEVER
    start = lifecycle_request(values, Op.START, 7)
    start.spec.validate()
    assert Sealer(values["ACA_SEALING_KEYS"]).open(Sealer(values["ACA_SEALING_KEYS"]).seal(start)) == start
    assert lifecycle_request(values, Op.STOP, 8).spec is None


def test_the_settings_command_writes_a_local_settings_file(aca_emulator, tmp_path):
    info = tmp_path / "emulator.json"
    info.write_text(json.dumps(aca_emulator.info()) + "\n")
    out = tmp_path / "local.settings.json"
    assert main(["settings", "--emulator-info", str(info), "--out", str(out)]) == 0
    values = json.loads(out.read_text())["Values"]
    assert values["ACA_ARM_CA_BUNDLE"] == str(aca_emulator.ca_bundle) and "<" not in values["ACA_SEALING_KEYS"]


def test_a_start_and_a_stop_pass_through_the_dev_host(aca_emulator, storage_connection_string, unique_name):
    values = _values(aca_emulator, storage_connection_string, unique_name)
    host = FunctionsHost(REPO / "function_app.py", settings=values, host_json=REPO / "host.json",
                         local_settings=REPO / "no-local-settings.json")
    host.start()
    try:
        asyncio.run(run(values, step_seconds=60))
    finally:
        host.stop()
    stats = aca_emulator.stats
    assert stats["creates"] == 1 and stats["deletes"] == 1 and aca_emulator.apps == {}
