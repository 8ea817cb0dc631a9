import re

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from acaspawner.naming import HASH_LENGTH, MAX_LENGTH, is_valid_app_name, legacy_server_key, server_key

ACA_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")

names = st.text(max_size=300)
hubs = st.sampled_from(["hub", "prod-hub", "Hub Two"])


def assert_valid(key: str) -> None:
    assert 2 <= len(key) <= MAX_LENGTH, key
    assert ACA_NAME.match(key), key
    assert "--" not in key, key
    assert is_valid_app_name(key)


@settings(max_examples=500)
@given(hubs, names, names)
def test_every_key_is_a_valid_container_app_name(hub, user, server):
    assert_valid(server_key(hub, user, server))


@settings(max_examples=300)
@given(hubs, names, names)
def test_same_inputs_same_key(hub, user, server):
    assert server_key(hub, user, server) == server_key(hub, user, server)


@settings(max_examples=500)
@given(st.tuples(hubs, names, names), st.tuples(hubs, names, names))
def test_distinct_triples_give_distinct_keys(a, b):
    assume(a != b)
    assert server_key(*a) != server_key(*b)


def test_names_differing_only_in_case_or_punctuation_differ():
    keys = {
        server_key("hub", u)
        for u in ["alice", "Alice", "ALICE", "a.lice", "a-lice", "alice!", "alicé", "alice "]
    }
    assert len(keys) == 8


def test_empty_and_named_servers_differ():
    assert server_key("hub", "alice", "") != server_key("hub", "alice", "gpu")
    # the separator cannot be forged by moving characters between user and server
    assert server_key("hub", "ali", "ce") != server_key("hub", "alice", "")
    assert server_key("hub", "a\x00b", "") != server_key("hub", "a", "b")


def test_user_stays_recognisable():
    assert server_key("hub", "alice").startswith("jl-alice-")
    assert server_key("hub", "Émilie.O'Brien+test").startswith("jl-emilieobrientes-")
    named = server_key("hub", "alice", "gpu-box")
    assert named.startswith("jl-alice-gpubo-")


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=200))
def test_readable_part_is_a_prefix_of_the_user(user):
    key = server_key("hub", user)
    readable = key[len("jl-") : -(HASH_LENGTH + 1)]
    assert user.startswith(readable)


def test_very_long_and_hostile_names():
    for user in ["x" * 10_000, "../../etc/passwd", "'; DROP TABLE users;--", "\u202e\u0000\ud800", "🙂" * 40, "--", ""]:
        assert_valid(server_key("hub", user, user))


def test_validator_rejects_invalid_names():
    for bad in ["", "a", "1abc", "abc-", "ab--c", "Abc", "a" * 33, "ab_c", "ab.c"]:
        assert not is_valid_app_name(bad), bad
    for good in ["ab", "a1", "a-b", "a" * 32]:
        assert is_valid_app_name(good), good


BASE32 = re.compile(r"^[a-z2-7]+$")


@settings(max_examples=300)
@given(hubs, names, names)
def test_the_suffix_carries_at_least_64_bits(hub, user, server):
    suffix = server_key(hub, user, server).rsplit("-", 1)[1]
    assert len(suffix) == HASH_LENGTH and BASE32.match(suffix)
    assert 5 * len(suffix) >= 64


# users and servers that share long readable prefixes: the readable part is cut to the same text,
# so only the hash tells them apart
shared = st.builds(lambda head, tail: head + tail, st.sampled_from(["a" * 40, "student" * 6, "Émilie" * 8]),
                   st.text(max_size=12))


@settings(max_examples=500)
@given(st.tuples(hubs, shared, shared), st.tuples(hubs, shared, shared))
def test_keys_never_collide_where_readable_parts_are_equal(a, b):
    assume(a != b)
    assert server_key(*a) != server_key(*b)


def test_legacy_keys_keep_their_32_bit_form():
    legacy = legacy_server_key("hub", "alice")
    assert re.match(r"^jl-alice-[0-9a-f]{8}$", legacy) and is_valid_app_name(legacy)
    assert legacy != server_key("hub", "alice")
