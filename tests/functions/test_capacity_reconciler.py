"""The reconciler timer's capacity step against the emulator (two environments) and Azurite: its summary line."""

from __future__ import annotations

import logging
import time

from capacity_support import counted, pool_setting
from fn_support import HUB, base_env

from acaspawner.contract import Phase, Status
from acaspawner.naming import server_key
from functions.capacity import CapacityLedger
from functions.footprint import Footprint
from functions.reconciler import run_reconciler
from functions.settings import Settings
from functions.storage import FunctionStorage
from local.emulator import make_client, pytest_fixtures

aca_emulator_factory = pytest_fixtures.aca_emulator_factory
HOUR_AHEAD = 3600.0


def create_app(client, emulator, name: str, environment: str, cpu: float) -> None:
    body = {
        "location": emulator.location,
        "tags": {"aca-hub": HUB, "aca-user": name, "aca-server": "", "aca-generation": "1"},
        "properties": {
            "environmentId": environment,
            "template": {"containers": [{"name": "main", "image": "test/sleeper", "command": ["sleep", "600"],
                                         "resources": {"cpu": cpu, "memory": f"{2 * cpu}Gi"}}]},
        },
    }
    client.container_apps.begin_create_or_update(emulator.resource_group, name, body).result()


def test_the_summary_line_reports_each_environment_after_repairing_the_ledger(
        aca_emulator_factory, storage_connection_string, unique_name, caplog):
    emulator = aca_emulator_factory(more_environments=["cae-b"])
    first, second = emulator.environment_ids
    settings = base_env(
        AcaStorage=storage_connection_string, ACA_STATUS_TABLE=unique_name("t"), ACA_LIFECYCLE_QUEUE=unique_name("q"),
        ACA_SUBSCRIPTION_ID=emulator.subscription_id, ACA_RESOURCE_GROUP=emulator.resource_group,
        ACA_ENVIRONMENT_ID=first, ACA_LOCATION=emulator.location, ACA_ARM_ENDPOINT=emulator.arm_endpoint,
        ACA_ARM_CA_BUNDLE=str(emulator.ca_bundle), ACA_ARM_TOKEN="emulator-token",
        ACA_ENVIRONMENTS=pool_setting([first, second], 8),
    )
    config = Settings.from_environ(settings)
    storage = FunctionStorage(config.storage)
    storage.ensure_table()
    ledger = CapacityLedger(storage.table, HUB, config.environments)
    # two servers whose apps run without a reservation (made before placement existed) ...
    client = make_client(emulator)
    try:
        for user, environment, cpu in (("ann", first, 1.0), ("ben", second, 2.0)):
            key = server_key(HUB, user, "")
            create_app(client, emulator, key, environment, cpu)
            storage.write_status(Status(hub_id=HUB, server_key=key, phase=Phase.RUNNING, generation=1, user=user))
    finally:
        client.close()
    # ... and one whose start died after it reserved, its status long failed and no app
    ledger.reserve(server_key(HUB, "cat", ""), 1, Footprint(1.0, 2.0), pinned=second)
    storage.write_status(Status(hub_id=HUB, server_key=server_key(HUB, "cat", ""), phase=Phase.FAILED, generation=1,
                                user="cat"))
    caplog.set_level(logging.INFO, logger="functions")

    summary = run_reconciler(settings, now=time.time() + HOUR_AHEAD)

    assert summary.capacity is not None
    assert sorted(summary.capacity.adopted) == sorted(server_key(HUB, u, "") for u in ("ann", "ben"))
    assert summary.capacity.released == [server_key(HUB, "cat", "")]
    assert counted(ledger) == {"cae-emulator": (1.0, 1), "cae-b": (2.0, 1)}
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("aca-reconciler:"))
    assert ("capacity: adopted=2 released=1 forgotten=0 recounted=0 environments: cae-emulator servers=1 cores=1/8 "
            "cores_left=7; cae-b servers=1 cores=2/8 cores_left=6") in line
    assert summary.errors == []
