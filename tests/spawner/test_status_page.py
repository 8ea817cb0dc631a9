"""The admins' status page: what it shows of a snapshot, that users' names cannot inject markup, and how it reads."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from acaspawner import status_page
from acaspawner.contract import Phase, Status
from acaspawner.report import EnvironmentUse, FailedStart, Report, RunReport, WarmProfileUse
from acaspawner.sealing import generate_key
from acaspawner.status_page import Snapshot, StatusSource, render, storage_from_environ
from acaspawner.status_service import status_service

NOW = 1_800_000_000.0
HOSTILE = '<script>alert("x")</script>'


def snapshot() -> Snapshot:
    env = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/managedEnvironments/cae-a"
    report = Report(
        environments={env: EnvironmentUse(env, cores=9.5, servers=19, cores_budget=10.0, memory_gib_budget=20.0)},
        warm={"small": WarmProfileUse("small", ready=3, bound=2, wanted=5, updated=NOW - 20)},
        runs={"aca-idle-culler": RunReport("aca-idle-culler", NOW - 90, 1.2, 0, "aca-idle-culler: culled=4", {}),
              "aca-reconciler": RunReport("aca-reconciler", NOW - 700, 3.0, 2, "aca-reconciler: errors=2", {})},
        failed={"k1": FailedStart("k1", HOSTILE, "", "ContainerAppOperationError", "MANIFEST_UNKNOWN <b>",
                                  "0b8e3f2c-0000-4000-8000-000000000001", NOW - 30),
                "k2": FailedStart("k2", "old", "", "NoCapacity", "full", "id-old", NOW - 2 * 86400)},
    )
    waiting = Status(hub_id="h", server_key="k3", phase=Phase.PROVISIONING, generation=1, user="ann",
                     server_name="gpu", message="Creating container app", request_id="rid-3", updated=NOW - 12)
    running = Status(hub_id="h", server_key="k4", phase=Phase.RUNNING, generation=1, user="bob")
    return Snapshot({"k3": waiting, "k4": running}, report, NOW - 2)


def test_the_page_shows_capacity_progress_failures_the_pool_and_the_timers():
    page = render(snapshot(), "admin", now=NOW)
    assert "cae-a</td><td>19</td><td>9.5</td><td>10</td><td>0.5</td>" in page
    assert 'class="bar full"' in page  # 95 % used
    assert "ann/gpu</td><td>provisioning</td><td>Creating container app" in page and "rid-3" in page
    assert "ContainerAppOperationError" in page and "0b8e3f2c-0000-4000-8000-000000000001" in page
    assert "id-old" not in page  # a failure older than a day is not listed
    assert "small</td><td>3</td><td>2</td><td>5</td>" in page
    assert "aca-idle-culler" in page and "2 errors" in page and "90 s ago" in page and "12 min ago" in page
    assert "provisioning 1 · running 1" in page and "Signed in as admin" in page


def test_user_names_and_reasons_cannot_inject_markup():
    page = render(snapshot(), HOSTILE, now=NOW)
    assert "<script>" not in page and "&lt;script&gt;" in page and "MANIFEST_UNKNOWN &lt;b&gt;" in page


def test_an_empty_hub_says_so():
    page = render(Snapshot(read_at=NOW), "admin", now=NOW)
    assert "no servers" in page and "no environment has held a server yet" in page and "no run reported yet" in page


class FlakyStorage:
    def __init__(self):
        self.reads = 0
        self.fail = False

    async def read_statuses(self, hub_id):
        self.reads += 1
        if self.fail:
            raise ConnectionError("refused")

        class Read:
            statuses = {"k": Status(hub_id=hub_id, server_key="k", phase=Phase.RUNNING, generation=1)}

        return Read()

    async def read_report(self, hub_id):
        return Report(read_at=NOW)


def test_the_source_shares_one_read_among_requests_and_shows_a_failed_read(monkeypatch):
    storage = FlakyStorage()
    source = StatusSource(storage, "h")

    async def burst():
        return await asyncio.gather(*(source.snapshot() for _ in range(20)))

    shots = asyncio.run(burst())
    assert storage.reads == 1 and all(s.statuses == shots[0].statuses for s in shots)
    monkeypatch.setattr(status_page, "CACHE_SECONDS", 0.0)
    storage.fail = True
    failed = asyncio.run(source.snapshot())
    assert failed.error == "the status table could not be read (ConnectionError)"
    assert failed.statuses == shots[0].statuses  # the last good read stays on the page
    assert "the status table could not be read" in render(failed, "admin")


def test_the_service_is_given_storage_settings_only():
    storage = f"UseDevelopmentStorage=true;Marker={secrets.token_hex(8)}"  # made here: no real account
    service = status_service({"ACA_HUB_ID": "hub1", "ACA_STORAGE_CONNECTION_STRING": storage,
                              "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32), "ACA_SEALING_KEYS": generate_key()},
                             port=12345)
    assert service["environment"] == {"ACA_HUB_ID": "hub1", "ACA_STORAGE_CONNECTION_STRING": storage}
    assert service["url"] == "http://127.0.0.1:12345"
    config, hub_id = storage_from_environ(service["environment"])
    assert hub_id == "hub1" and config.connection_string == storage
    with pytest.raises(ValueError, match="ACA_HUB_ID"):
        status_service({"ACA_STORAGE_CONNECTION_STRING": "x"})
    with pytest.raises(ValueError, match="ACA_TABLE_ACCOUNT_URL"):
        status_service({"ACA_HUB_ID": "hub1"})
