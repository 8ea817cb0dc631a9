"""cpu_limit / mem_limit / cpu_guarantee / mem_guarantee mapped onto the sizes Container Apps offers.

The Consumption table is ACA's own (docs: "Containers in Azure Container Apps",
allocations): 0.25 to 4 cores in steps of 0.25, each with twice as many GiB.
"""

from __future__ import annotations

import pytest
from spawner_support import make_spawner
from traitlets.config import Config

from acaspawner import sizes
from acaspawner.errors import SpawnException
from acaspawner.sealing import generate_key
from functions.policy import check_spec
from functions.settings import Settings

GIB = 2**30

# ACA's documented Consumption workload profile allocations (vCPUs, memory)
ACA_CONSUMPTION_TABLE = [
    (0.25, "0.5Gi"), (0.5, "1Gi"), (0.75, "1.5Gi"), (1.0, "2Gi"), (1.25, "2.5Gi"), (1.5, "3Gi"), (1.75, "3.5Gi"),
    (2.0, "4Gi"), (2.25, "4.5Gi"), (2.5, "5Gi"), (2.75, "5.5Gi"), (3.0, "6Gi"), (3.25, "6.5Gi"), (3.5, "7Gi"),
    (3.75, "7.5Gi"), (4.0, "8Gi"),
]


def choose(workload_profile: str = "", cpu: float = 1.0, memory: str = "2Gi", **bounds) -> sizes.Size:
    return sizes.choose_size(sizes.Bounds.parse(bounds), workload_profile=workload_profile, cpu=cpu, memory=memory)


def test_the_consumption_sizes_are_acas_table():
    assert [(s.cpu, s.memory) for s in sizes.consumption_sizes()] == ACA_CONSUMPTION_TABLE


def test_the_largest_consumption_size_is_the_functions_default_ceiling(db):
    """What the hub maps to never exceeds what the functions' policy allows by default (ACA_MAX_CPU/MEMORY)."""
    settings = Settings.from_environ(
        {"ACA_HUB_ID": "h", "ACA_SEALING_KEYS": generate_key(), "ACA_FOLLOWUP_KEYS": generate_key(),
         "ACA_SUBSCRIPTION_ID": "s",
         "ACA_RESOURCE_GROUP": "g", "ACA_ENVIRONMENT_ID": "/e", "ACA_LOCATION": "westeurope",
         "ACA_ALLOWED_IMAGES": "quay.io/jupyter/*", "AcaStorage": "UseDevelopmentStorage=true"}
    )
    largest = sizes.consumption_sizes()[-1]
    assert (largest.cpu, largest.memory_gi) == (settings.max_cpu, settings.max_memory_gi)
    spawner = make_spawner(db, image="quay.io/jupyter/base-notebook:latest")
    for size in sizes.consumption_sizes():
        spec = spawner.server_spec({"cpu_limit": size.cpu, "mem_limit": size.memory})
        check_spec(spec, settings)  # raises PolicyViolation if a size were above the ceilings


@pytest.mark.parametrize(
    "bounds, expected",
    [
        ({"cpu_limit": 1}, (1.0, "2Gi")),  # memory follows from the pair
        ({"mem_limit": "4G"}, (2.0, "4Gi")),  # cores follow from the pair
        ({"mem_limit": 512 * 2**20}, (0.25, "0.5Gi")),  # bytes, as JupyterHub's ByteSpecification stores them
        ({"cpu_limit": 2, "mem_limit": "4G"}, (2.0, "4Gi")),
        ({"cpu_limit": 0.5, "cpu_guarantee": 0.5, "mem_limit": "1G", "mem_guarantee": "1G"}, (0.5, "1Gi")),
        # zero-to-jupyterhub's default guarantee (singleuser.memory.guarantee: 1G) beside a profile's cpu_limit
        ({"cpu_limit": 2, "mem_guarantee": "1G"}, (2.0, "4Gi")),
        # a guarantee alone is a minimum: the smallest size that meets it
        ({"mem_guarantee": "1G"}, (0.5, "1Gi")),
        ({"cpu_guarantee": 1, "mem_guarantee": "1G"}, (1.0, "2Gi")),
        ({"cpu_guarantee": 0.3}, (0.5, "1Gi")),
        # the limit wins over the guarantee
        ({"cpu_limit": 4, "cpu_guarantee": 1}, (4.0, "8Gi")),
        ({"mem_limit": "8Gi"}, (4.0, "8Gi")),  # Kubernetes' and ACA's Gi are accepted too
    ],
)
def test_limits_and_guarantees_map_onto_consumption_sizes(bounds, expected):
    size = choose(**bounds)
    assert (size.cpu, size.memory) == expected


@pytest.mark.parametrize(
    "bounds, nearest",
    [
        ({"cpu_limit": 1, "mem_limit": "1G"}, "nearest sizes: 0.5 cpu / 1Gi, 0.75 cpu / 1.5Gi, 1 cpu / 2Gi"),
        ({"cpu_limit": 0.3}, "nearest sizes: 0.25 cpu / 0.5Gi, 0.5 cpu / 1Gi"),
        ({"cpu_limit": 8}, "nearest sizes: 3.75 cpu / 7.5Gi, 4 cpu / 8Gi"),
        ({"mem_limit": "3.2G"}, "nearest sizes: 1.5 cpu / 3Gi, 1.75 cpu / 3.5Gi"),
        ({"cpu_limit": 4, "mem_guarantee": "16G"}, "nearest sizes: 3.75 cpu / 7.5Gi, 4 cpu / 8Gi"),
    ],
)
def test_a_size_aca_does_not_offer_names_the_nearest(bounds, nearest):
    with pytest.raises(sizes.SizeError) as info:
        choose(**bounds)
    message = str(info.value)
    assert message.endswith(nearest), message
    assert "Consumption workload profile" in message
    assert message.startswith(next(iter(bounds)))  # names the setting that asked for it


def test_the_error_names_what_was_asked():
    with pytest.raises(sizes.SizeError, match=r"^cpu_limit 1 with mem_limit 1Gi is not a size"):
        choose(cpu_limit=1, mem_limit="1G")


@pytest.mark.parametrize(
    "bounds, match",
    [
        ({"cpu_guarantee": 2, "cpu_limit": 1}, "cpu_guarantee 2 is more than cpu_limit 1"),
        ({"mem_guarantee": "4G", "mem_limit": "2G"}, "mem_guarantee 4Gi is more than mem_limit 2Gi"),
        ({"cpu_limit": -1}, "cpu_limit must be a positive number"),
        ({"cpu_limit": "lots"}, "cpu_limit must be a positive number"),
        ({"mem_limit": "2GB"}, "mem_limit must be a size such as"),
        ({"mem_limit": True}, "mem_limit must be a size"),
    ],
)
def test_invalid_bounds_are_explained(bounds, match):
    with pytest.raises(sizes.SizeError, match=match):
        choose(**bounds)


def test_dedicated_profiles_take_any_two_decimal_values():
    size = choose("D8", cpu_limit=6, mem_limit="24G")
    assert (size.cpu, size.memory) == (6.0, "24Gi")
    # a resource without bounds comes from c.AcaSpawner.cpu / memory there (no pairing rule to derive it)
    size = choose("E16", cpu=2.0, memory="3Gi", mem_limit="64G")
    assert (size.cpu, size.memory) == (2.0, "64Gi")
    # a guarantee rounds up to ACA's two decimals; a limit must already have them
    assert choose("D4", cpu_guarantee=0.333).cpu == 0.34
    with pytest.raises(sizes.SizeError, match=r"mem_limit 0.976562Gi has more than two decimals.*0.97Gi or 0.98Gi"):
        choose("D4", mem_limit="1000M")
    # "Consumption" by name follows the table
    with pytest.raises(sizes.SizeError, match="nearest sizes"):
        choose("Consumption", cpu_limit=6)


def test_without_bounds_cpu_and_memory_are_sent_as_written():
    """c.AcaSpawner.cpu / memory keep their old meaning: Azure judges the pair (an integration test relies on it)."""
    assert choose(cpu=0.5, memory="3Gi") == sizes.Size(0.5, "3Gi")


# --- through the spawner ------------------------------------------------------------------------


def test_spawner_traits_reach_the_spec_and_the_environment(db):
    spawner = make_spawner(db, cpu_limit=2.0, mem_limit="4G")
    spec = spawner.server_spec()
    assert (spec.cpu, spec.memory) == (2.0, "4Gi")
    # what the server reads (jupyter-resource-usage shows MEM_LIMIT) is what the app gets
    assert spec.env["CPU_LIMIT"] == "2.0" and spec.env["MEM_LIMIT"] == str(4 * GIB)
    assert spec.env["CPU_GUARANTEE"] == "2.0" and spec.env["MEM_GUARANTEE"] == str(4 * GIB)


def test_environment_says_the_real_size_when_a_limit_implies_the_other(db):
    # JupyterHub's own get_env would say nothing about memory here; the app gets 2Gi, and says so
    spawner = make_spawner(db, cpu_limit=1.0, mem_guarantee="1G")
    assert "MEM_LIMIT" not in spawner.get_env() and spawner.get_env()["MEM_GUARANTEE"] == str(GIB)
    spec = spawner.server_spec()
    assert (spec.cpu, spec.memory) == (1.0, "2Gi")
    assert spec.env["MEM_LIMIT"] == spec.env["MEM_GUARANTEE"] == str(2 * GIB)
    assert spec.env["CPU_LIMIT"] == spec.env["CPU_GUARANTEE"] == "1.0"


def test_plain_cpu_and_memory_also_reach_the_environment(db):
    spec = make_spawner(db, cpu=0.5, memory="1Gi").server_spec()
    assert (spec.cpu, spec.memory) == (0.5, "1Gi")
    assert spec.env["CPU_LIMIT"] == "0.5" and spec.env["MEM_LIMIT"] == str(GIB)


def test_kubespawner_traits_win_over_cpu_and_memory(db):
    spec = make_spawner(db, cpu=1.0, memory="2Gi", cpu_limit=4.0, mem_limit="8G").server_spec()
    assert (spec.cpu, spec.memory) == (4.0, "8Gi")


def test_c_spawner_config_applies(db):
    """A KubeSpawner admin's c.Spawner.* lines configure AcaSpawner too (traitlets config inheritance)."""
    config = Config()
    config.Spawner.cpu_limit = 0.5
    config.Spawner.mem_limit = "1G"
    spawner = make_spawner(db, config=config)
    assert (spawner.cpu_limit, spawner.mem_limit) == (0.5, GIB)
    spec = spawner.server_spec()
    assert (spec.cpu, spec.memory) == (0.5, "1Gi")


async def test_a_size_aca_does_not_offer_fails_the_start_before_anything_is_sent(db, monkeypatch):
    sent = []

    async def send(self, sealed, time_to_live=None):
        sent.append(sealed)

    monkeypatch.setattr("acaspawner.hub_storage.HubStorage.send", send)
    spawner = make_spawner(db, cpu_limit=1.0, mem_limit="1G", sealing_keys=generate_key(),
                           storage_connection_string="UseDevelopmentStorage=true")
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert info.value.reason == "config"
    assert "nearest sizes: 0.5 cpu / 1Gi, 0.75 cpu / 1.5Gi, 1 cpu / 2Gi" in info.value.jupyterhub_message
    assert sent == [] and spawner.generation == 0
