"""The reconciler's deletes go through the functions' one ARM gateway: one call each, counted against the run's
budget; ARM answers 204, not 404, when there was nothing to delete."""

from __future__ import annotations

import sys

import pytest
from azure.mgmt.appcontainers import models

from functions.arm import ArmApps, BudgetExhausted, CallBudget


def _app(emulator) -> models.ContainerApp:
    container = models.Container(name="main", image="busybox:latest", resources=models.ContainerResources(cpu=0.25, memory="0.5Gi"),
                                 command=[sys.executable, "-c", "import time; time.sleep(600)"])
    return models.ContainerApp(location=emulator.location, managed_environment_id=emulator.environment_id,
                               template=models.Template(containers=[container]))


def test_a_delete_says_whether_there_was_an_app_and_spends_one_call(aca_emulator, aca_client):
    rg = aca_emulator.resource_group
    aca_client.container_apps.begin_create_or_update(rg, "there", _app(aca_emulator)).result(timeout=30)
    budget = CallBudget(2)
    arm = ArmApps(aca_client, rg, "", budget)
    before = aca_emulator.stats["requests_by_method"].get("DELETE", 0)

    assert arm.send_delete("there").done is False  # accepted: the app is on its way out
    assert arm.send_delete("never-was").done is True  # 204: nothing to delete
    # one DELETE each, nothing followed: the 204 itself says there was nothing to delete
    assert aca_emulator.stats["requests_by_method"]["DELETE"] - before == 2
    assert budget.spent == 2
    with pytest.raises(BudgetExhausted):
        arm.send_delete("one-too-many")
    assert aca_emulator.stats["requests_by_method"]["DELETE"] - before == 2  # the spent budget sent nothing
