"""Several managed environments, and each environment's core quota, through the real ARM client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.core.exceptions import HttpResponseError
from emulator_helpers import sleeper_container_app

from local.emulator import make_client
from local.emulator.__main__ import emulator_from_args, parse_args
from local.emulator.emulator import DEFAULT_ENVIRONMENT
from local.emulator.environments import QUOTA_MESSAGE


def one_core_app(environment_id: str):
    body = sleeper_container_app(environment_id)
    body.template.containers[0].resources.cpu = 1.0
    body.template.containers[0].resources.memory = "2Gi"
    return body


@pytest.fixture
def pool(aca_emulator_factory):
    """An emulator with three environments of 2 cores each, and a client that polls quickly."""
    emulator = aca_emulator_factory(more_environments=["cae-b", "cae-c"], core_quota=2)
    client = make_client(emulator, polling_interval=0.05)
    yield emulator, client
    client.close()


def create(client, emulator, name: str, environment_id: str):
    return client.container_apps.begin_create_or_update(emulator.resource_group, name,
                                                        one_core_app(environment_id)).result(timeout=60)


def test_the_default_is_one_environment_as_before(aca_emulator, aca_client):
    assert aca_emulator.environment_ids == [aca_emulator.environment_id]
    assert aca_emulator.environment_id.endswith(f"/managedEnvironments/{DEFAULT_ENVIRONMENT}")
    info = aca_emulator.info()
    assert [e["id"] for e in info["environments"]] == [aca_emulator.environment_id]
    assert info["default_domain"] == info["environments"][0]["default_domain"]
    usage = aca_emulator.environment_usage
    assert list(usage) == [DEFAULT_ENVIRONMENT] and usage[DEFAULT_ENVIRONMENT]["core_quota"] is None


def test_each_environment_has_its_own_id_and_domain(pool):
    emulator, client = pool
    names = [eid.rsplit("/", 1)[1] for eid in emulator.environment_ids]
    assert names == [DEFAULT_ENVIRONMENT, "cae-b", "cae-c"]
    found = [client.managed_environments.get(emulator.resource_group, name) for name in names]
    assert [e.id for e in found] == emulator.environment_ids
    domains = {e.properties.default_domain for e in found}
    assert len(domains) == 3

    app = create(client, emulator, "in-b", emulator.environment_ids[1])
    assert app.properties.managed_environment_id == emulator.environment_ids[1]
    listed = {a.name: a.properties.environment_id for a in client.container_apps.list_by_resource_group(
        emulator.resource_group)}
    assert listed == {"in-b": emulator.environment_ids[1]}
    assert emulator.apps["in-b"].environment == "cae-b"


def test_an_app_cannot_move_to_another_environment(pool):
    emulator, client = pool
    create(client, emulator, "stays", emulator.environment_ids[0])
    with pytest.raises(HttpResponseError) as err:
        client.container_apps.begin_create_or_update(emulator.resource_group, "stays",
                                                     one_core_app(emulator.environment_ids[2]))
    assert err.value.status_code == 400 and err.value.error.code == "InvalidParameterValue"
    assert emulator.apps["stays"].environment == DEFAULT_ENVIRONMENT


def test_a_full_environment_refuses_the_next_replica(pool):
    emulator, client = pool
    first, second = emulator.environment_ids[:2]
    create(client, emulator, "a1", first)
    create(client, emulator, "a2", first)
    with pytest.raises(HttpResponseError) as err:
        create(client, emulator, "a3", first)
    assert err.value.error.code == "ContainerAppOperationError"
    assert QUOTA_MESSAGE in err.value.message
    assert client.container_apps.get(emulator.resource_group, "a3").properties.provisioning_state == "Failed"
    assert emulator.apps["a3"].pid is None
    # another environment has room of its own
    assert create(client, emulator, "b1", second).properties.provisioning_state == "Succeeded"

    usage = emulator.environment_usage
    assert (usage[DEFAULT_ENVIRONMENT]["cores_in_use"], usage[DEFAULT_ENVIRONMENT]["quota_refusals"]) == (2.0, 1)
    assert (usage["cae-b"]["cores_in_use"], usage["cae-b"]["apps_holding_cores"]) == (1.0, 1)
    assert emulator.stats["quota_refusals"] == 1


def test_stopping_or_deleting_frees_the_cores(pool):
    emulator, client = pool
    env = emulator.environment_ids[0]
    rg = emulator.resource_group
    create(client, emulator, "a1", env)
    create(client, emulator, "a2", env)
    client.container_apps.begin_stop(rg, "a1").result(timeout=30)
    assert emulator.environment_usage[DEFAULT_ENVIRONMENT]["cores_in_use"] == 1.0
    create(client, emulator, "a3", env)
    with pytest.raises(HttpResponseError):  # a parked app needs its cores again to start
        client.container_apps.begin_start(rg, "a1").result(timeout=30)
    client.container_apps.begin_delete(rg, "a2").result(timeout=30)
    assert emulator.environment_usage[DEFAULT_ENVIRONMENT]["cores_in_use"] == 1.0
    assert create(client, emulator, "a4", env).properties.provisioning_state == "Succeeded"


def test_concurrent_creates_never_exceed_the_quota(aca_emulator_factory):
    emulator = aca_emulator_factory(core_quota=3, provisioning_delay=0.2)
    client = make_client(emulator, polling_interval=0.05)

    def attempt(i: int) -> bool:
        try:
            create(client, emulator, f"c{i}", emulator.environment_id)
        except HttpResponseError as e:
            assert QUOTA_MESSAGE in e.message
            return False
        return True

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(attempt, range(8)))
    finally:
        client.close()
    assert results.count(True) == 3
    usage = emulator.environment_usage[DEFAULT_ENVIRONMENT]
    assert usage["peak_cores"] == usage["cores_in_use"] == 3.0 and usage["quota_refusals"] == 5


def test_the_command_line_adds_environments_and_a_quota(tmp_path):
    state = ["--state-dir", str(tmp_path)]
    emulator = emulator_from_args(parse_args([*state, "--more-environment", "cae-b", "--more-environment", "cae-c",
                                              "--core-quota", "100"]))
    assert [i.rsplit("/", 1)[1] for i in emulator.environment_ids] == [DEFAULT_ENVIRONMENT, "cae-b", "cae-c"]
    assert emulator.faults.core_quota == 100
    assert emulator_from_args(parse_args(state)).faults.core_quota is None
