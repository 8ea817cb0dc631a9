"""The reconciler's delete says whether there was an app: ARM answers 204, not 404, when there was none."""

from __future__ import annotations

import sys

from azure.mgmt.appcontainers import models

from functions.reconciler import ReconcileSummary, _Arm


def _app(emulator) -> models.ContainerApp:
    container = models.Container(name="main", image="busybox:latest", resources=models.ContainerResources(cpu=0.25, memory="0.5Gi"),
                                 command=[sys.executable, "-c", "import time; time.sleep(600)"])
    return models.ContainerApp(location=emulator.location, managed_environment_id=emulator.environment_id,
                               template=models.Template(containers=[container]))


def test_delete_is_true_for_an_app_and_false_when_arm_answers_204(aca_emulator, aca_client):
    rg = aca_emulator.resource_group
    aca_client.container_apps.begin_create_or_update(rg, "there", _app(aca_emulator)).result(timeout=30)
    summary = ReconcileSummary()
    arm = _Arm(aca_client.container_apps, rg, budget=10, summary=summary)
    before = aca_emulator.stats["requests_by_method"].get("DELETE", 0)

    assert arm.delete("there") is True
    assert arm.delete("never-was") is False
    # one DELETE each, nothing followed: the 204 itself says there was nothing to delete
    assert aca_emulator.stats["requests_by_method"]["DELETE"] - before == 2
    assert summary.arm_calls == 2
