"""AcaSpawner without storage: options, state, environment, arguments, the spec it builds."""

from __future__ import annotations

import re

import pytest
from jupyterhub.spawner import SpawnException as HubSpawnException
from spawner_support import API_TOKEN, make_hub, make_spawner
from traitlets import TraitError

from acaspawner import profiles
from acaspawner.contract import Op, Request
from acaspawner.errors import SpawnException
from acaspawner.sealing import Sealer, generate_key
from acaspawner.spawner import AcaSpawner
from acaspawner.spec import as_served, build_request, home_sub_path, next_generation, origin_of, split_env

PROFILES = [
    {"display_name": "Small", "slug": "small", "description": "1 core", "default": True},
    {"display_name": "Large <b>!</b>", "slug": "large", "overrides": {"cpu": 4, "memory": "8Gi", "image": "big:1"}},
    {"display_name": "GPU", "slug": "gpu", "overrides": {"workload_profile": "gpu-a100"}},
]


# --- options ------------------------------------------------------------------------------------


def test_no_profiles_means_no_form(db):
    spawner = make_spawner(db)
    assert spawner.options_form == ""


async def test_options_form_lists_profiles_escaped(db):
    spawner = make_spawner(db, profile_list=PROFILES)
    form = await spawner.get_options_form()
    assert form.count('type="radio"') == 3
    assert 'name="profile"' in form
    assert re.search(r'value="small" checked', form)
    assert "Large &lt;b&gt;!&lt;/b&gt;" in form and "<b>!</b>" not in form


async def test_options_form_preselects_last_choice(db):
    spawner = make_spawner(db, profile_list=PROFILES, user_options={"profile": "gpu"})
    form = await spawner.get_options_form()
    assert re.search(r'value="gpu" checked', form)
    assert not re.search(r'value="small" checked', form)


def test_options_from_form(db):
    spawner = make_spawner(db, profile_list=PROFILES)
    assert spawner.run_options_from_form({"profile": ["large"]}) == {"profile": "large"}
    assert spawner.run_options_from_form({}) == {}
    assert spawner.run_options_from_form({"profile": ["gpu"], "_xsrf": ["t"]}) == {"profile": "gpu"}
    with pytest.raises(profiles.ProfileError, match="unknown server profile"):
        spawner.run_options_from_form({"profile": ["huge"]})
    with pytest.raises(profiles.ProfileError, match="unexpected server options: image"):
        spawner.run_options_from_form({"profile": ["small"], "image": ["evil/miner"]})
    with pytest.raises(profiles.ProfileError, match="exactly one"):
        spawner.run_options_from_form({"profile": ["small", "large"]})


def test_options_from_form_passthrough_without_profiles(db):
    spawner = make_spawner(db)
    assert spawner.run_options_from_form({"x": ["1"]}) == {"x": ["1"]}


def test_profile_overrides_reach_the_spec(db):
    spawner = make_spawner(db, profile_list=PROFILES, user_options={"profile": "large"})
    profile, overrides = spawner._resolve_options()
    assert profile.slug == "large"
    spec = spawner.server_spec(overrides)
    assert (spec.image, spec.cpu, spec.memory) == ("big:1", 4.0, "8Gi")
    spawner.user_options = {}
    profile, overrides = spawner._resolve_options()
    assert profile.slug == "small" and spawner.server_spec(overrides).image == spawner.image


@pytest.mark.parametrize(
    "options, match",
    [
        ({"profile": "nope"}, "unknown server profile"),
        ({"image": "evil/miner:latest"}, "unsupported server options: image"),
        ({"profile": ["large"]}, "by its name"),
    ],
)
def test_user_options_from_the_api_are_checked(db, options, match):
    spawner = make_spawner(db, profile_list=PROFILES, user_options=options)
    with pytest.raises(SpawnException, match=match) as info:
        spawner._resolve_options()
    assert isinstance(info.value, HubSpawnException)  # JupyterHub shows it without a traceback
    assert info.value.reason == "options"


def test_extra_options_allowed_when_the_admin_handles_them(db):
    spawner = make_spawner(db, user_options={"image_input": "x"}, apply_user_options={"image_input": "image"})
    assert spawner._resolve_options() == (None, {})
    spawner = make_spawner(db, user_options={"profile": "large"})
    with pytest.raises(SpawnException, match="no server profiles"):
        spawner._resolve_options()


@pytest.mark.parametrize(
    "bad, match",
    [
        ([{"display_name": "x", "slug": "x", "overrides": {"cmd": ["sh"]}}], "only image, cpu, memory"),
        ([{"display_name": "x", "slug": "x", "overrides": {"memory": "lots"}}], "memory must look like"),
        ([{"display_name": "x", "slug": "x", "overrides": {"cpu": -1}}], "cpu must be a positive"),
        ([{"display_name": "x", "slug": "Bad Slug"}], "slug"),
        ([{"display_name": "x", "slug": "x"}, {"display_name": "y", "slug": "x"}], "used twice"),
        ([{"slug": "x"}], "needs a display_name"),
        ([{"display_name": "x", "slug": "x", "default": True}, {"display_name": "y", "slug": "y", "default": True}],
         "only one profile"),
    ],
)
def test_invalid_profile_lists_are_refused(bad, match):
    with pytest.raises((TraitError, ValueError), match=match):
        AcaSpawner(profile_list=bad)


def test_invalid_sizes_are_refused():
    with pytest.raises(TraitError):
        AcaSpawner(memory="2GB")
    with pytest.raises(TraitError):
        AcaSpawner(cpu=0)


# --- state ----------------------------------------------------------------------------------------


def test_state_round_trip(db):
    spawner = make_spawner(db)
    assert spawner.get_state() == {}
    spawner.server_key, spawner.generation, spawner.last_op, spawner.last_url = "jl-user-abc", 1234, "start", "http://x"
    state = spawner.get_state()
    assert state == {"server_key": "jl-user-abc", "generation": 1234, "last_op": "start", "last_url": "http://x"}
    restored = make_spawner(db)
    restored.load_state(state)
    assert restored.get_state() == state
    restored.clear_state()
    # a stopped server keeps its app name and generation (generations never go back), not its URL
    assert restored.get_state() == {"server_key": "jl-user-abc", "generation": 1234, "last_op": "start"}
    assert restored.api_token == ""


def test_state_is_loaded_from_the_database_like_after_a_hub_restart(db):
    spawner = make_spawner(db, user_name="rita")
    spawner.server_key, spawner.generation, spawner.last_op = "jl-rita-1", 99, "start"
    spawner._save_state()
    again = make_spawner(db, user_name="rita")
    assert (again.server_key, again.generation, again.last_op) == ("jl-rita-1", 99, "start")


async def test_poll_before_anything_is_stopped(db):
    assert await make_spawner(db).poll() == 0


# --- environment and arguments ------------------------------------------------------------------


def test_token_only_in_secret_env(db):
    spawner = make_spawner(db, environment={"COPY_OF_TOKEN": API_TOKEN, "GREETING": "hi", "CALLABLE": lambda s: "v"})
    spec = spawner.server_spec()
    assert {"JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "COPY_OF_TOKEN"} <= set(spec.secret_env)
    assert all(v == API_TOKEN for v in spec.secret_env.values())
    assert not any(API_TOKEN in v for v in spec.env.values())
    assert spec.env["GREETING"] == "hi" and spec.env["CALLABLE"] == "v"
    assert "JUPYTERHUB_API_TOKEN" not in spec.env and API_TOKEN not in repr(spec)


def test_hub_api_url_is_the_internal_one(db):
    spec = make_spawner(db).server_spec()
    assert spec.env["JUPYTERHUB_API_URL"] == "http://hub-app/hub/api"
    assert spec.env["JUPYTERHUB_ACTIVITY_URL"].startswith("http://hub-app/hub/api/users/")
    assert spec.env["JUPYTERHUB_PUBLIC_URL"] == "https://hub.example.org/user/user/"
    # the per-spawner override JupyterHub offers wins
    spec = make_spawner(db, hub_connect_url="http://other-hub:8081").server_spec()
    assert spec.env["JUPYTERHUB_API_URL"] == "http://other-hub:8081/hub/api"


def test_disable_user_config_reaches_the_server(db):
    """hub/jupyterhub_config.py sets Spawner.disable_user_config; the server learns it from its environment."""
    assert make_spawner(db, disable_user_config=True).server_spec().env["JUPYTERHUB_DISABLE_USER_CONFIG"] == "1"
    assert "JUPYTERHUB_DISABLE_USER_CONFIG" not in make_spawner(db).server_spec().env


def test_command_args_and_port(db):
    spec = make_spawner(db, args=["--debug"]).server_spec()
    assert spec.command == ["jupyterhub-singleuser"]
    assert spec.args == ["--debug", "--ip=0.0.0.0", "--port=8888", "--ServerApp.allow_origin=https://hub.example.org"]
    assert spec.target_port == 8888
    assert spec.env["JUPYTERHUB_SERVICE_URL"].startswith("http://0.0.0.0:8888/")
    spec = make_spawner(db, port=9999, ip="127.0.0.1", allow_origin="https://lab.example.com").server_spec()
    assert spec.target_port == 9999
    assert spec.args == ["--ip=127.0.0.1", "--port=9999", "--ServerApp.allow_origin=https://lab.example.com"]


def test_allow_origin_needs_a_public_url(db):
    hub = make_hub()
    hub.public_host = ""
    spawner = make_spawner(db, hub=hub, public_url="", public_hub_url="")
    with pytest.raises(SpawnException, match=r"c\.JupyterHub\.public_url"):
        spawner.server_spec()
    # falls back to the hub's public host
    hub.public_host = "https://other.example.org"
    assert spawner.server_spec().args[-1] == "--ServerApp.allow_origin=https://other.example.org"


def test_home_volume(db):
    spec = make_spawner(db, user_name="../../etc/passwd", home_storage_name="homes").server_spec()
    [volume] = spec.volumes
    assert volume.storage_name == "homes" and volume.mount_path == "/home/jovyan"
    assert volume.sub_path == home_sub_path("../../etc/passwd")
    assert "nobrl" in volume.mount_options and "uid=1000" in volume.mount_options
    assert make_spawner(db).server_spec().volumes == []


def test_named_servers_get_their_own_key(db):
    default = make_spawner(db, user_name="nina")
    named = make_spawner(db, user_name="nina", server_name="gpu-work")
    assert named.name == "gpu-work"
    assert default._key() != named._key()
    assert "gpu" in named._key()


# --- pure helpers ---------------------------------------------------------------------------------

HOSTILE = ["../../etc", "/root", "a/b", "", " ", "..", ".", "Ünïcødé", "用户", "a\x00b", "x" * 300,
           "ALICE", "alice", "Robert'); DROP TABLE users;--", "-leading-", "--", "ç/../../ç"]


def test_home_sub_path_is_safe_for_hostile_names():
    paths = [home_sub_path(name) for name in HOSTILE]
    for name, path in zip(HOSTILE, paths, strict=True):
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", path), (name, path)
        assert ".." not in path and not path.startswith("/") and len(path) <= 60
    assert len(set(paths)) == len(HOSTILE)  # "ALICE" and "alice" differ too
    assert home_sub_path("alice") == home_sub_path("alice")
    assert home_sub_path("Élodie").startswith("elodie-")


def test_split_env_drops_none_and_catches_embedded_tokens():
    plain, secret = split_env({"A": "1", "B": None, "URL": f"http://x/?token={API_TOKEN}", "N": 5}, API_TOKEN)
    assert plain == {"A": "1", "N": "5"} and set(secret) == {"URL"}
    plain, secret = split_env({"JPY_API_TOKEN": ""}, "")
    assert secret == {"JPY_API_TOKEN": ""}


def test_a_url_is_given_back_as_jupyterhubs_server_writes_it():
    from jupyterhub.objects import Server

    stored = Server(base_url="/user/ann/")
    stored.ip, stored.port, stored.proto = "jl-ann-x.internal.example.io", 80, "http"
    assert as_served("http://jl-ann-x.internal.example.io", "/user/ann/") == stored.url
    assert as_served("https://a.example.io", "/user/b/c/") == "https://a.example.io:443/user/b/c/"
    assert as_served("http://a.example.io:8888/x", "/user/b/") == "http://a.example.io:8888/user/b/"
    assert as_served("", "/user/b/") == "" and as_served("http://a", "") == "http://a"


def test_origin_of():
    assert origin_of("https://hub.example.org/hub/") == "https://hub.example.org"
    assert origin_of("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert origin_of("/hub/") == "" and origin_of("") == ""


def test_generations_are_monotonic_milliseconds():
    assert next_generation(0, now=1_764_000_000.5) == 1_764_000_000_500
    assert next_generation(1_764_000_000_500, now=1_764_000_000.5) == 1_764_000_000_501
    assert next_generation(0, 1_900_000_000_000, now=1_764_000_000.0) == 1_900_000_000_001


def test_request_building_is_pure_and_seals(db):
    spawner = make_spawner(db, user_name="zoe", server_name="big")
    spec = spawner.server_spec()
    request = build_request(Op.START, hub_id="h", server_key=spawner._key(), user="zoe", server_name="big",
                            generation=5, spec=spec)
    assert request.spec is spec and request.server_name == "big"
    sealer = Sealer(generate_key())
    sealed = sealer.seal(request)
    assert API_TOKEN.encode() not in sealed
    opened = sealer.open(sealed)
    assert isinstance(opened, Request) and opened.spec.secret_env["JUPYTERHUB_API_TOKEN"] == API_TOKEN
    stop = build_request("stop", hub_id="h", server_key=spawner._key(), user="zoe", server_name="big",
                         generation=6, spec=spec)
    assert stop.spec is None


def test_missing_sealing_key_is_explained(db):
    spawner = make_spawner(db, sealing_keys="")
    with pytest.raises(ValueError, match="aca-sealing-key"):
        spawner.sealer  # noqa: B018


def test_defaults_fit_aca():
    spawner = AcaSpawner()
    assert spawner.start_timeout >= 300 and spawner.port == 8888 and spawner.ip == "0.0.0.0"
    assert spawner.cmd == ["jupyterhub-singleuser"] and spawner.hub_id == "jupyterhub"
    for name, trait in AcaSpawner.class_traits(config=True).items():
        if trait.this_class.__module__.startswith("acaspawner"):
            assert trait.help and len(trait.help) > 20, name


async def test_unreachable_queue_is_a_clear_spawn_failure(db, monkeypatch):
    async def refuse(self, sealed, time_to_live=None):
        raise ConnectionError("queue endpoint refused the connection")

    monkeypatch.setattr("acaspawner.hub_storage.HubStorage.send", refuse)
    spawner = make_spawner(db, storage_connection_string="UseDevelopmentStorage=true", sealing_keys=generate_key())
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert info.value.reason == "queue" and "try again" in info.value.jupyterhub_message
    assert "refused" in info.value.log_message and "refused" not in info.value.jupyterhub_message
    assert spawner.generation == 0  # nothing was sent


def test_a_failure_names_the_request_it_happened_to():
    failed = SpawnException("The image could not be pulled", error_code="ImagePullFailure", log_message="detail")
    named = failed.with_request_id("9c4d50ee-2d56-4cd3-8152-34347dc9f2b0")
    assert named.jupyterhub_message == \
        "The image could not be pulled (ImagePullFailure; request id 9c4d50ee-2d56-4cd3-8152-34347dc9f2b0)"
    assert (named.reason, named.status_code, named.log_message, named.error_code) == ("failed", 500, "detail",
                                                                                      "ImagePullFailure")
    assert named.with_request_id("another") is named and failed.with_request_id("") is failed
    timed_out = SpawnException("Azure was still working", reason="timeout").with_request_id("abc")
    assert timed_out.jupyterhub_message == "Azure was still working (request id abc)"
    assert "request id abc" in timed_out.log_message  # no log message of its own: the hub logs what is shown
