"""KubeSpawner's profile_list shape works unchanged: it loads, renders, and each choice becomes the expected request.

The start requests are caught as they leave for the queue (sealed, as the
functions would receive them) and opened with the shared key, so what is
checked is what start() really sends.
"""

from __future__ import annotations

import ast
import copy
import logging
import re
import time
from pathlib import Path

import pytest
from jupyterhub.spawner import SpawnException as HubSpawnException
from kubespawner_examples import (
    ALL,
    KUBESPAWNER_DICT,
    KUBESPAWNER_LIST,
    KUBESPAWNER_TESTS,
    Z2JH_DEFAULT_IMAGE,
    Z2JH_FOUR_PROFILES,
    Z2JH_GPU,
    Z2JH_ONE_PROFILE,
)
from spawner_support import make_spawner
from traitlets.config import Config

from acaspawner import profile_config, profiles
from acaspawner.contract import Request
from acaspawner.errors import SpawnException
from acaspawner.sealing import Sealer, generate_key

GIB = 2**30


@pytest.fixture(autouse=True)
def _fresh_warnings():
    """Each test sees the once-only warnings about ignored keys afresh."""
    profile_config._warned.clear()
    yield
    profile_config._warned.clear()


class Sent(list):
    """Requests caught on their way to the queue, and the key they were sealed with."""

    sealing_key = ""


@pytest.fixture
def sent(monkeypatch) -> Sent:
    """Start requests as they leave for the queue; the send then fails, so start() goes no further."""
    requests = Sent()
    requests.sealing_key = generate_key()

    async def send(self, sealed, time_to_live=None):
        requests.append(Sealer(requests.sealing_key).open(sealed))
        raise ConnectionError("caught by the test")

    monkeypatch.setattr("acaspawner.hub_storage.HubStorage.send", send)
    return requests


def spawner_for(db, sent, profile_list, user_options=None, **traits):
    traits.setdefault("image", Z2JH_DEFAULT_IMAGE)
    return make_spawner(db, profile_list=profile_list, user_options=user_options or {},
                        sealing_keys=sent.sealing_key, storage_connection_string="UseDevelopmentStorage=true", **traits)


async def start_request(db, sent, profile_list, user_options=None, **traits) -> Request:
    """The start request the spawner sends for ``user_options``."""
    spawner = spawner_for(db, sent, profile_list, user_options, **traits)
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert info.value.reason == "queue", info.value  # it got as far as sending
    return sent[-1]


# --- loading and rendering ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL))
async def test_documented_profile_lists_load_and_render(db, name):
    profile_list = copy.deepcopy(ALL[name])
    spawner = make_spawner(db, profile_list=profile_list)
    offered = await spawner._profiles()
    form = await spawner.get_options_form()
    assert form.count('type="radio"') == len(offered) == len(profile_list)
    for profile in offered:
        assert f'value="{profile.slug}"' in form
        for option in profile.options:
            select = re.search(rf'<select[^>]* name="profile-option-{profile.slug}--{option.key}"[^>]*>(.*?)</select>',
                               form)
            assert select, (profile.slug, option.key)
            assert select.group(1).count("<option") == len(option.choices) + (option.unlisted is not None)
            if option.unlisted:
                assert f'name="profile-option-{profile.slug}--{option.key}--unlisted-choice"' in form
    assert re.search(r'<input[^>]* type="radio"[^>]* checked>', form)  # one profile preselected
    assert profile_list == ALL[name]  # the admin's config is not modified


def test_missing_slugs_are_made_from_display_names():
    offered = profile_config.parse_profiles(Z2JH_FOUR_PROFILES)
    assert [p.slug for p in offered] == [
        "minimal-environment", "datascience-environment", "spark-environment", "learning-data-science",
    ]
    assert profile_config.parse_profiles([{"display_name": "Something without a slug"}])[0].slug == "something-without-a-slug"
    assert profile_config.parse_profiles([{"display_name": "Équipe R&D: GPU (A100)"}])[0].slug == "equipe-r-d-gpu-a100"


def test_a_dict_profile_list_is_ordered_by_key_like_kubespawner():
    assert [p.slug for p in profile_config.parse_profiles({"b": {"display_name": "B"}, "a": {"display_name": "A"}})] == [
        "a", "b"]
    assert [p.slug for p in profile_config.parse_profiles(KUBESPAWNER_DICT)] == ["demo-1", "demo-2"]


async def test_the_form_shows_kubespawner_options(db):
    spawner = make_spawner(db, profile_list=KUBESPAWNER_LIST)
    form = await spawner.get_options_form()
    assert re.search(r'<option value="minimal" selected>jupyter/minimal-notebook:latest</option>', form)
    assert '<option value="unlisted-choice">Enter image manually</option>' in form
    assert re.search(r'<input class="form-control" type="text" name="profile-option-demo-1--image--unlisted-choice"'
                     r'[^>]* pattern="\^jupyter/\.\+:\.\+\$" title="Must be an image matching '
                     r'\^jupyter/&lt;name&gt;:&lt;tag&gt;\$"', form)
    assert re.search(r'value="demo-1" checked', form)


async def test_the_form_preselects_the_last_choices(db):
    spawner = make_spawner(db, profile_list=KUBESPAWNER_LIST,
                           user_options={"profile": "demo-1", "image--unlisted-choice": "jupyter/scipy-notebook:x"})
    form = await spawner.get_options_form()
    assert '<option value="unlisted-choice" selected>' in form and 'value="jupyter/scipy-notebook:x"' in form
    spawner.user_options = {"profile": "demo-1", "image": "base"}
    form = await spawner.get_options_form()
    assert '<option value="base" selected>' in form and '<option value="minimal" selected>' not in form
    spawner.user_options = {"profile": "demo-1", "image": "gone"}  # stale: falls back to the defaults
    form = await spawner.get_options_form()
    assert '<option value="minimal" selected>' in form


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_keys_without_meaning_are_logged_once_and_ignored():
    logger, collect = logging.getLogger("acaspawner.profile_config"), Collect()
    logger.addHandler(collect)
    try:
        for _ in range(3):  # the list is parsed on every form and start: the warning comes once
            offered = [p for one in (Z2JH_FOUR_PROFILES, Z2JH_GPU, Z2JH_ONE_PROFILE)
                       for p in profile_config.parse_profiles(one)]
    finally:
        logger.removeHandler(collect)
    warnings = collect.messages
    assert sorted(warnings) == sorted([
        "profile_list: profile 'learning-data-science' sets kubespawner_override.lifecycle_hooks, which has no "
        "meaning on Azure Container Apps; ignoring it",
        "profile_list: profile 'gpu-server' sets kubespawner_override.extra_resource_limits, which has no "
        "meaning on Azure Container Apps; ignoring it",
        "profile_list: profile 'name-to-be-displayed-to-users' sets kubespawner_override.your_config, which has no "
        "meaning on Azure Container Apps; ignoring it",
    ])
    learning = next(p for p in offered if p.slug == "learning-data-science")
    assert learning.overrides == {"image": "jupyter/datascience-notebook:2343e33dec46"}


def test_acaspawner_overrides_stay_strict():
    with pytest.raises(ValueError, match="profile 'x' overrides: node_selector cannot be overridden; only image, cpu, "
                                         "memory, workload_profile, cpu_limit"):
        profile_config.parse_profiles([{"display_name": "x", "overrides": {"node_selector": {"a": "b"}}}])


@pytest.mark.parametrize(
    "bad, match",
    [
        ([{"display_name": "x", "profile_options": {"image": {"display_name": "Image"}}}],
         "neither choices nor an enabled unlisted_choice"),
        ([{"display_name": "x", "profile_options": {"image": {"unlisted_choice": {"enabled": True,
                                                                                   "validation_regex": "("}}}}],
         "validation_regex '\\(' is invalid"),
        ([{"display_name": "x", "kubespawner_override": {"cpu_limit": "lots"}}], "cpu_limit must be a positive"),
        ([{"display_name": "x", "kubespawner_override": {"mem_limit": "2GB"}}], "mem_limit must be a size"),
        ([{"display_name": "x", "kubespawner_override": {"image": "has space"}}], "image must be an image name"),
        ([{"display_name": "x", "kubespawner_override": {"environment": ["A=1"]}}], "environment must be a dict"),
        ([{"display_name": "x", "profile_options": {"a--b": {"choices": {"c": {}}}}}], "option name 'a--b'"),
    ],
)
def test_mistakes_in_kubespawner_shaped_lists_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        profile_config.parse_profiles(bad)


# --- what each choice starts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "profile_list, user_options, image, cpu, memory, env",
    [
        # zero-to-jupyterhub's four profiles: the default profile runs singleuser.image
        (Z2JH_FOUR_PROFILES, {}, Z2JH_DEFAULT_IMAGE, 1.0, "2Gi", {}),
        (Z2JH_FOUR_PROFILES, {"profile": "minimal-environment"}, Z2JH_DEFAULT_IMAGE, 1.0, "2Gi", {}),
        (Z2JH_FOUR_PROFILES, {"profile": "datascience-environment"},
         "jupyter/datascience-notebook:2343e33dec46", 1.0, "2Gi", {}),
        (Z2JH_FOUR_PROFILES, {"profile": "spark-environment"}, "jupyter/all-spark-notebook:2343e33dec46", 1.0, "2Gi",
         {}),
        (Z2JH_FOUR_PROFILES, {"profile": "learning-data-science"},
         "jupyter/datascience-notebook:2343e33dec46", 1.0, "2Gi", {}),
        (Z2JH_GPU, {}, Z2JH_DEFAULT_IMAGE, 1.0, "2Gi", {}),
        # KubeSpawner's documented example: default choice, each choice, an unlisted image; default_url applies
        (KUBESPAWNER_LIST, {}, "jupyter/minimal-notebook:latest", 1.0, "2Gi", {"JUPYTERHUB_DEFAULT_URL": "/lab"}),
        (KUBESPAWNER_LIST, {"profile": "demo-1", "image": "base"}, "jupyter/base-notebook:latest", 1.0, "2Gi",
         {"JUPYTERHUB_DEFAULT_URL": "/lab"}),
        (KUBESPAWNER_LIST, {"profile": "demo-1", "image": "minimal"}, "jupyter/minimal-notebook:latest", 1.0, "2Gi",
         {"JUPYTERHUB_DEFAULT_URL": "/lab"}),
        (KUBESPAWNER_LIST, {"profile": "demo-1", "image--unlisted-choice": "jupyter/r-notebook:2024-01-01"},
         "jupyter/r-notebook:2024-01-01", 1.0, "2Gi", {"JUPYTERHUB_DEFAULT_URL": "/lab"}),
        (KUBESPAWNER_LIST, {"profile": "demo-2"}, Z2JH_DEFAULT_IMAGE, 1.0, "2Gi", {}),
        (KUBESPAWNER_DICT, {"profile": "demo-1"}, "jupyter/base-notebook:latest", 1.0, "2Gi",
         {"JUPYTERHUB_DEFAULT_URL": "/lab"}),
        # KubeSpawner's test profiles: sizes and environment
        (KUBESPAWNER_TESTS, {"profile": "training-datascience"}, "training/datascience:label", 4.0, "8Gi",
         {"CPU_LIMIT": "4.0", "MEM_LIMIT": str(8 * GIB), "CPU_GUARANTEE": "4.0", "MEM_GUARANTEE": str(8 * GIB)}),
        (KUBESPAWNER_TESTS, {"profile": "test-choices"}, "training/r:label", 1.0, "2Gi", {}),
        (KUBESPAWNER_TESTS, {"profile": "test-choices", "image": "pytorch"}, "pangeo/pytorch-notebook:master", 1.0,
         "2Gi", {}),
        (KUBESPAWNER_TESTS, {"profile": "test-choices", "image--unlisted-choice": "pangeo/test:latest"},
         "pangeo/test:latest", 1.0, "2Gi", {}),
        (KUBESPAWNER_TESTS, {"profile": "no-regex", "image--unlisted-choice": "invalid/foo:latest"},
         "invalid/foo:latest", 1.0, "2Gi", {}),
    ],
)
async def test_each_choice_starts_the_expected_container_app(db, sent, profile_list, user_options, image, cpu,
                                                             memory, env):
    request = await start_request(db, sent, profile_list, user_options)
    spec = request.spec
    assert (spec.image, spec.cpu, spec.memory) == (image, cpu, memory)
    for name, value in env.items():
        assert spec.env[name] == value, name
    assert spec.env["MEM_LIMIT"] == str(round(float(memory[:-2]) * GIB)) and spec.env["CPU_LIMIT"] == str(cpu)
    if "JUPYTERHUB_DEFAULT_URL" not in env:
        assert "JUPYTERHUB_DEFAULT_URL" not in spec.env


async def test_profile_environment_merges_and_removes(db, sent):
    profile_list = copy.deepcopy(KUBESPAWNER_TESTS)
    profile_list[2]["kubespawner_override"]["mem_limit"] = "2G"  # ACA has no 1 cpu / 0.5Gi size (see below)
    request = await start_request(db, sent, profile_list, {"profile": "training-r"},
                                  environment={"existing": "existing-value", "to-remove": "does-it-matter"})
    env = request.spec.env
    assert env["existing"] == "existing-value" and env["override"] == "override-value" and "to-remove" not in env
    assert (request.spec.image, request.spec.cpu, request.spec.memory) == ("training/r:label", 1.0, "2Gi")


async def test_a_kubespawner_size_aca_does_not_offer_is_a_clear_error(db, sent):
    # KubeSpawner's "Training Env - Python": 1 cpu with 512 MiB, which Container Apps does not offer
    spawner = spawner_for(db, sent, KUBESPAWNER_TESTS, {"profile": "training-python"})
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert info.value.reason == "config" and sent == []
    assert info.value.jupyterhub_message == (
        "The server could not be configured: cpu_limit 1 with mem_limit 0.5Gi is not a size of the Consumption "
        "workload profile (0.25 to 4 cores in steps of 0.25, with twice as many GiB of memory); "
        "nearest sizes: 0.25 cpu / 0.5Gi, 0.5 cpu / 1Gi, 0.75 cpu / 1.5Gi, 1 cpu / 2Gi"
    )


async def test_sizes_in_choices_and_typed_values(db, sent):
    profile_list = [{
        "display_name": "Pick your own",
        "kubespawner_override": {"cpu_limit": 0.5, "mem_limit": "1G"},
        "profile_options": {
            "size": {"display_name": "Size", "choices": {
                "small": {"display_name": "1 CPU, 2 GB", "kubespawner_override": {"cpu_limit": 1, "mem_limit": "2G"}},
                "large": {"display_name": "4 CPU, 8 GB", "kubespawner_override": {"cpu_limit": 4, "mem_limit": "8G"}},
            }},
            "image": {"display_name": "Image", "unlisted_choice": {
                "enabled": True, "display_name": "Image", "validation_regex": r"^quay\.io/jupyter/[a-z-]+:[\w.-]+$",
                "kubespawner_override": {"image": "{value}", "environment": {"CHOSEN_IMAGE": "{value}"}},
            }},
        },
    }]
    request = await start_request(db, sent, profile_list, {"image--unlisted-choice": "quay.io/jupyter/r-notebook:1"})
    spec = request.spec
    assert (spec.image, spec.cpu, spec.memory) == ("quay.io/jupyter/r-notebook:1", 1.0, "2Gi")  # default choice
    assert spec.env["CHOSEN_IMAGE"] == "quay.io/jupyter/r-notebook:1" and spec.env["MEM_LIMIT"] == str(2 * GIB)
    request = await start_request(db, sent, profile_list,
                                  {"size": "large", "image--unlisted-choice": "quay.io/jupyter/base-notebook:2"})
    assert (request.spec.cpu, request.spec.memory, request.spec.env["CPU_LIMIT"]) == (4.0, "8Gi", "4.0")


async def test_callable_and_async_callable_profile_lists(db, sent):
    seen = []

    def for_user(spawner):
        seen.append(spawner.user.name)
        return Z2JH_FOUR_PROFILES if spawner.user.name == "data" else Z2JH_GPU

    async def for_user_async(spawner):
        return for_user(spawner)

    for hook in (for_user, for_user_async):
        spawner = make_spawner(db, "data", profile_list=hook, sealing_keys=sent.sealing_key,
                               storage_connection_string="UseDevelopmentStorage=true")
        form = await spawner.get_options_form()
        assert form.count('type="radio"') == 4 and 'value="spark-environment"' in form
        options = await spawner.run_options_from_form({"profile": ["spark-environment"]})
        assert options == {"profile": "spark-environment"}
        spawner.user_options = options
        with pytest.raises(SpawnException):
            await spawner.start()
        assert sent[-1].spec.image == "jupyter/all-spark-notebook:2343e33dec46"
        spawner.user_options = {"profile": "gpu-server"}  # another user's profile
        with pytest.raises(SpawnException, match="unknown server profile 'gpu-server'") as info:
            await spawner.start()
        assert info.value.status_code == 400
    assert set(seen) == {"data"}


# --- the form -------------------------------------------------------------------------------------


def test_options_from_kubespawners_form_fields(db):
    spawner = make_spawner(db, profile_list=KUBESPAWNER_TESTS)
    # what KubeSpawner's own tests submit (its script removes the select's name for an unlisted choice)
    assert spawner.run_options_from_form(
        {"profile": ["test-choices"], "profile-option-test-choices--image": ["pytorch"]}
    ) == {"profile": "test-choices", "image": "pytorch"}
    assert spawner.run_options_from_form(
        {"profile": ["test-choices"], "profile-option-test-choices--image--unlisted-choice": ["pangeo/test:latest"]}
    ) == {"profile": "test-choices", "image--unlisted-choice": "pangeo/test:latest"}
    # what our form posts without JavaScript: every profile's fields; the chosen profile's count
    posted = {
        "profile": ["no-regex"],
        "profile-option-test-choices--image": ["tf"],
        "profile-option-test-choices--image--unlisted-choice": [""],
        "profile-option-no-regex--image": ["unlisted-choice"],
        "profile-option-no-regex--image--unlisted-choice": ["  invalid/foo:latest "],
        "_xsrf": ["token"],
    }
    assert spawner.run_options_from_form(posted) == {"profile": "no-regex", "image--unlisted-choice": "invalid/foo:latest"}
    posted["profile-option-no-regex--image"] = ["pytorch"]  # a typed value counts only with "Other..." selected
    assert spawner.run_options_from_form(posted) == {"profile": "no-regex", "image": "pytorch"}


@pytest.mark.parametrize(
    "form, match",
    [
        ({"profile": ["test-choices"], "profile-option-test-choices--image": ["nope"]}, "unknown choice 'nope'"),
        ({"profile": ["test-choices"], "profile-option-test-choices--image--unlisted-choice": ["evil/miner:1"]},
         "'evil/miner:1' is not allowed \\(Must be a pangeo image"),
        ({"profile": ["test-choices"], "profile-option-test-choices--image": ["unlisted-choice"]}, "type a value"),
        ({"profile": ["test-choices"], "profile-option-test-choices--cpu": ["8"]}, "unexpected server options"),
        ({"profile": ["test-choices"], "image": ["evil/miner:1"]}, "unexpected server options: image"),
        ({"profile": ["test-choices"], "profile-option-test-choices--image": ["tf", "pytorch"]}, "exactly one"),
    ],
)
def test_the_form_refuses_what_is_not_offered(db, form, match):
    spawner = make_spawner(db, profile_list=KUBESPAWNER_TESTS)
    with pytest.raises(profiles.ProfileError, match=match):
        spawner.run_options_from_form(form)


# --- the REST API's user_options ------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, match",
    [
        ({"profile": "nope"}, "unknown server profile 'nope'"),
        ({"profile": "test-choices", "image": "latest"}, "unknown choice 'latest' for option 'image'"),
        ({"profile": "test-choices", "image--unlisted-choice": "docker.io/evil/miner"}, "is not allowed"),
        ({"profile": "test-choices", "image--unlisted-choice": "pangeo/x\nEVIL=1"}, "a line of text"),
        ({"profile": "test-choices", "image--unlisted-choice": ["pangeo/x"]}, "a line of text"),
        ({"profile": "training-r", "image": "pytorch"}, "unsupported server options: image"),
        ({"profile": "test-choices", "cpu_limit": 64}, "unsupported server options: cpu_limit"),
        ({"profile": "test-choices", "node_selector": {"a": "b"}}, "unsupported server options: node_selector"),
        ({"image": "evil/miner:latest"}, "unsupported server options: image"),  # the default profile has no options
    ],
)
async def test_rest_api_options_outside_the_list_are_refused(db, sent, options, match):
    spawner = spawner_for(db, sent, KUBESPAWNER_TESTS, options)
    with pytest.raises(SpawnException, match=match) as info:
        await spawner.start()
    assert isinstance(info.value, HubSpawnException) and info.value.status_code == 400
    assert info.value.reason == "options" and sent == []


async def test_an_unlisted_choice_that_is_not_enabled_is_refused(db, sent):
    profile_list = [{"display_name": "Fixed", "profile_options": {"image": {"choices": {
        "a": {"kubespawner_override": {"image": "quay.io/jupyter/base-notebook:a"}}}}}}]
    spawner = spawner_for(db, sent, profile_list, {"image--unlisted-choice": "quay.io/jupyter/anything:1"})
    with pytest.raises(SpawnException, match="only takes one of its choices") as info:
        await spawner.start()
    assert info.value.status_code == 400 and sent == []


@pytest.mark.parametrize(
    "typed",
    [
        "{username:>1000000}",  # a format specification: a megabyte here, a gigabyte and the hub's memory in the review
        "{username:>{username}}",
        "{base_url}{username!r}",
        "{username.__class__.__mro__}",  # attribute lookups
        "{0}{}{",  # positional fields and an unbalanced brace: a format error, i.e. a start refused
        "}}{{",
    ],
)
async def test_a_typed_value_is_text_never_a_format_string(db, sent, typed):
    """An ``unlisted_choice`` value reaches the server literally, also where JupyterHub formats the value (L2)."""
    profile_list = [{"display_name": "Open", "slug": "open", "profile_options": {"folder": {
        "display_name": "Folder", "unlisted_choice": {
            "enabled": True, "display_name": "Folder",
            "kubespawner_override": {"default_url": "/lab/tree/{username}/{value}", "environment": {"FOLDER": "{value}"}},
        }}}}]
    started = time.perf_counter()
    request = await start_request(db, sent, profile_list, {"folder--unlisted-choice": typed})
    assert time.perf_counter() - started < 5
    env = request.spec.env
    # the admin's {username} is still formatted; the user's text is not
    assert env["JUPYTERHUB_DEFAULT_URL"] == f"/lab/tree/{request.user}/{typed}"
    assert env["FOLDER"] == typed
    assert len(repr(request)) < 20_000


async def test_callables_in_kubespawner_override(db, sent):
    async def memory(spawner):
        return "4G" if spawner.user.name == "big" else "2G"

    profile_list = [{"display_name": "Per user", "kubespawner_override": {
        "image": lambda spawner: f"quay.io/jupyter/{spawner.user.name}-notebook:1",
        "mem_limit": memory,
        "environment": {"WHO": lambda spawner: spawner.user.name},
    }}]
    for user, cpu, memory_gi in (("big", 2.0, "4Gi"), ("small", 1.0, "2Gi")):
        spawner = make_spawner(db, user, profile_list=profile_list, sealing_keys=sent.sealing_key,
                               storage_connection_string="UseDevelopmentStorage=true")
        with pytest.raises(SpawnException):
            await spawner.start()
        spec = sent[-1].spec
        assert (spec.image, spec.cpu, spec.memory) == (f"quay.io/jupyter/{user}-notebook:1", cpu, memory_gi)
        assert spec.env["WHO"] == user


# --- the README's example and table stay true ---------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_section() -> str:
    text = README.read_text()
    start = text.index("### Coming from KubeSpawner or zero-to-jupyterhub")
    return text[start:text.index("\n## ", start)]


async def test_the_readme_example_works(db, sent):
    code = re.search(r"```python\n(.*?)```", readme_section(), re.S).group(1)
    config = Config()
    exec(code, {"c": config})  # the admin's config file, as JupyterHub would load it
    traits = {"config": config, "sealing_keys": sent.sealing_key,
              "storage_connection_string": "UseDevelopmentStorage=true"}
    form = await make_spawner(db, **traits).get_options_form()
    assert 'value="data-science-2-cpu-4-gb"' in form and 'name="profile-option-custom--image"' in form
    expected = [
        ({}, "quay.io/jupyter/minimal-notebook:2024-10-07", 0.5, "1Gi"),  # mem_guarantee 1G alone
        ({"profile": "data-science-2-cpu-4-gb"}, "quay.io/jupyter/datascience-notebook:2024-10-07", 2.0, "4Gi"),
        ({"profile": "custom", "image": "r"}, "quay.io/jupyter/r-notebook:2024-10-07", 0.5, "1Gi"),
        ({"profile": "custom", "image--unlisted-choice": "quay.io/jupyter/julia-notebook:2024-10-07"},
         "quay.io/jupyter/julia-notebook:2024-10-07", 0.5, "1Gi"),
    ]
    for options, image, cpu, memory in expected:
        spawner = make_spawner(db, user_options=options, **traits)
        with pytest.raises(SpawnException):
            await spawner.start()
        spec = sent[-1].spec
        assert (spec.image, spec.cpu, spec.memory) == (image, cpu, memory), options
    spawner = make_spawner(db, user_options={"profile": "custom", "image--unlisted-choice": "docker.io/x/y:1"}, **traits)
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert info.value.status_code == 400


def test_the_readme_size_table_is_what_the_spawner_does(db):
    rows = re.findall(r"^  \| (`.*?) \| (.*?) \|$", readme_section(), re.M)
    assert len(rows) >= 6
    for settings, result in rows:
        traits = {name: ast.literal_eval(value) for name, value in re.findall(r"`(\w+) = ([^`]+)`", settings)}
        spawner = make_spawner(db, **traits)
        size = re.fullmatch(r"(\S+) cpu / (\S+)", result)
        if size:
            spec = spawner.server_spec()
            assert (spec.cpu, spec.memory) == (float(size.group(1)), size.group(2)), settings
        else:
            refused = re.fullmatch(r"refused: \*(.*?) …; (nearest sizes: .*)\*", result)
            with pytest.raises(ValueError) as info:
                spawner.server_spec()
            assert str(info.value).startswith(refused.group(1)) and str(info.value).endswith(refused.group(2))
