"""The pool setting, footprints and the choice of an environment (pure, no storage)."""

from __future__ import annotations

import json
import random

import pytest
from capacity_support import env_ids, pool_setting
from fn_support import ENV_ID, base_env, spec

from functions.environments import DEFAULT_CORES, EnvironmentBudget, parse_environments
from functions.footprint import Footprint, app_environment, holds_cores, of_app, of_spec
from functions.placement import Usage, choose, full_message
from functions.settings import Settings, SettingsError

ONE = Footprint(1.0, 2.0)


def test_without_the_setting_the_pool_is_the_one_environment_with_acas_default_quota():
    settings = Settings.from_environ(base_env())
    assert settings.environments == (EnvironmentBudget(ENV_ID, DEFAULT_CORES, 2 * DEFAULT_CORES),)
    assert settings.environments[0].cores == 100 and settings.environments[0].name == "env"


def test_the_setting_lists_environments_with_their_budgets():
    ids = env_ids(3)
    raw = json.dumps([{"id": ids[0], "cores": 10}, {"id": ids[1], "cores": 20, "memory_gib": 30}, {"id": ids[2]}])
    settings = Settings.from_environ(base_env(ACA_ENVIRONMENTS=raw))
    assert [(b.id, b.cores, b.memory_gib) for b in settings.environments] == [
        (ids[0], 10, 20), (ids[1], 20, 30), (ids[2], 100, 200)]


@pytest.mark.parametrize("raw, says", [
    ("[", "not JSON"),
    ("[]", "non-empty"),
    ('{"id": "x"}', "non-empty JSON list"),
    (json.dumps([{"id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Web/sites/x"}]), "managed environment by resource id"),
    (json.dumps([{"id": ENV_ID, "cores": 0}]), "positive number as cores"),
    (json.dumps([{"id": ENV_ID, "cores": "ten"}]), "positive number as cores"),
    (json.dumps([{"id": ENV_ID, "memory_gib": -1}]), "positive number as memory_gib"),
    (json.dumps([{"id": ENV_ID, "core": 10}]), "unknown keys"),
    (json.dumps([{"id": ENV_ID}, {"id": ENV_ID.upper()}]), "twice"),
    (pool_setting(env_ids(3)[1:], 10), "ACA_ENVIRONMENT_ID"),
])
def test_a_bad_pool_is_named(raw, says):
    with pytest.raises(ValueError, match=says):
        parse_environments(raw, ENV_ID)
    with pytest.raises(SettingsError, match="ACA_ENVIRONMENTS"):
        Settings.from_environ(base_env(ACA_ENVIRONMENTS=raw))


def test_footprints_of_a_request_and_of_an_app():
    assert of_spec(spec(cpu=1.5, memory="3Gi")) == Footprint(1.5, 3.0)
    assert of_spec(spec(cpu=0.25, memory="512Mi")) == Footprint(0.25, 0.5)
    app = {"properties": {"environmentId": "/e/b", "provisioningState": "Succeeded", "runningStatus": "Running",
                          "template": {"containers": [{"resources": {"cpu": 1.0, "memory": "2Gi"}},
                                                      {"resources": {"cpu": 0.5, "memory": "1Gi"}}, {}]}}}
    assert of_app(app) == Footprint(2.0, 4.0)  # a container without resources gets ACA's 0.5 / 1Gi
    assert app_environment(app) == "/e/b" and holds_cores(app)
    assert app_environment({"properties": {"managedEnvironmentId": "/e/c"}}) == "/e/c"
    for state, running in (("Failed", None), ("Succeeded", "Stopped")):
        assert not holds_cores({"properties": {"provisioningState": state, "runningStatus": running}})


def pool_of(n: int, cores: float = 10) -> tuple[EnvironmentBudget, ...]:
    return tuple(EnvironmentBudget(i, cores, 2 * cores) for i in env_ids(n))


def used(pool, *cores: float) -> dict[str, Usage]:
    return {b.id.lower(): Usage(c, 2 * c, int(c)) for b, c in zip(pool, cores, strict=False)}


def test_choose_takes_the_environment_with_most_cores_free():
    pool = pool_of(3)
    assert choose(pool, used(pool, 5, 2, 8), ONE) == pool[1]
    assert choose(pool, used(pool, 10, 10, 9.5), ONE) is None  # half a core free is not room for one
    assert choose(pool, used(pool, 10, 10, 9), ONE) == pool[2]


def test_choose_prefers_the_previous_environment_while_it_has_room():
    pool = pool_of(3)
    assert choose(pool, used(pool, 8, 0, 0), ONE, preferred=pool[0].id.upper()) == pool[0]
    assert choose(pool, used(pool, 10, 0, 3), ONE, preferred=pool[0].id) == pool[1]


def test_choose_counts_memory_too():
    pool = (EnvironmentBudget(ENV_ID, 10, 4),)
    assert choose(pool, {ENV_ID.lower(): Usage(2, 2, 1)}, ONE) == pool[0]
    assert choose(pool, {ENV_ID.lower(): Usage(2, 3, 1)}, ONE) is None


def test_ties_are_broken_at_random_so_racers_spread():
    pool = pool_of(3)
    picks = {choose(pool, {}, ONE, rng=random.Random(seed)).id for seed in range(30)}
    assert picks == {b.id for b in pool}


def test_the_full_message_says_what_was_asked_and_why_not():
    pool = pool_of(3)
    text = full_message(pool, used(pool, 10, 10, 10), Footprint(2, 4))
    assert text.startswith("no capacity for 2 vCPU / 4 GiB: all 3 environments are full (30 of 30 cores in use)")
    assert "ACA_ENVIRONMENTS" in text
    one = pool_of(1)
    assert "the environment is full (10 of 10 cores in use)" in full_message(one, used(one, 10), ONE)
    assert "larger than any environment's budget" in full_message(pool_of(2, cores=1), {}, Footprint(2, 4))
    pinned = full_message(pool, used(pool, 10, 0, 0), ONE, pinned=pool[0].id)
    assert "environment env, where this server's container app is, has 0 of 10 cores free" in pinned
    assert "is not in the pool any more" in full_message(pool, {}, ONE, pinned="/x/managedEnvironments/gone")
