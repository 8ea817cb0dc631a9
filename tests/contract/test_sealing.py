import time

import pytest

from acaspawner.contract import ContractError, Op, Request, ServerSpec
from acaspawner.naming import server_key
from acaspawner.sealing import ExpiredMessage, Sealer, TamperedMessage, UnknownKey, generate_key


def request() -> Request:
    return Request(op=Op.START, hub_id="hub", server_key=server_key("hub", "bob"), user="bob", server_name="",
                   generation=3, spec=ServerSpec(image="img", secret_env={"JUPYTERHUB_API_TOKEN": "tok-123"}))


def test_seal_and_open():
    sealer = Sealer(generate_key())
    original = request()
    sealed = sealer.seal(original)
    assert b"tok-123" not in sealed and b"bob" not in sealed
    assert sealer.open(sealed) == original
    assert sealer.open(sealed).spec.secret_env == {"JUPYTERHUB_API_TOKEN": "tok-123"}


def test_tampered_message_is_rejected():
    sealer = Sealer(generate_key())
    sealed = bytearray(sealer.seal(request()))
    sealed[40] = ord("A") if sealed[40] != ord("A") else ord("B")
    with pytest.raises(TamperedMessage, match="altered"):
        sealer.open(bytes(sealed))
    with pytest.raises(TamperedMessage):
        sealer.open(b"hello world")


def test_unknown_key_is_rejected():
    sealed = Sealer(generate_key()).seal(request())
    with pytest.raises(UnknownKey, match="not configured"):
        Sealer(generate_key()).open(sealed)


def test_expired_message_is_rejected():
    sealer = Sealer(generate_key(), max_age=60)
    sealed = sealer.seal(request(), now=time.time() - 120)
    with pytest.raises(ExpiredMessage, match="maximum age"):
        sealer.open(sealed)
    assert sealer.open(sealed, now=time.time() - 100).user == "bob"


def test_errors_are_distinct_types():
    kinds = (TamperedMessage, UnknownKey, ExpiredMessage)
    for a in kinds:
        assert issubclass(a, ContractError)  # one base to catch: every seal error is a contract error
        for b in kinds:
            assert issubclass(a, b) == (a is b), (a, b)  # but none is caught as another


def test_rotation():
    old, new = generate_key(), generate_key()
    sealed_with_old = Sealer(old).seal(request())
    rotated = Sealer(f"{new},{old}")
    assert rotated.open(sealed_with_old).user == "bob"
    sealed_with_new = rotated.seal(request())
    assert Sealer(new).open(sealed_with_new).user == "bob"
    with pytest.raises(UnknownKey):
        Sealer(old).open(sealed_with_new)


def test_bad_keys_fail_clearly():
    with pytest.raises(ValueError, match="no sealing key"):
        Sealer("")
    with pytest.raises(ValueError, match="not valid"):
        Sealer("not-a-key")
    key = generate_key()
    text = repr(Sealer(key))
    assert "key" in text and key not in text and key.rstrip("=") not in text
