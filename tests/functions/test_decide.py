"""The ordering rules, as a pure function of (table entity, request)."""

from __future__ import annotations

import pytest
from fn_support import HUB, request
from hypothesis import given
from hypothesis import strategies as st

from acaspawner.contract import Op, Phase, Status
from functions.lifecycle import Verdict, decide


def status(phase: Phase, generation: int) -> Status:
    return Status(hub_id=HUB, server_key="jl-alice-00000000", phase=phase, generation=generation)


def test_no_entity_proceeds():
    for op in Op:
        assert decide(None, request(op, generation=5)) is Verdict.PROCEED


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("op", list(Op))
def test_newer_entity_wins(phase, op):
    assert decide(status(phase, 10), request(op, generation=9)) is Verdict.STALE


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("op", list(Op))
def test_newer_request_proceeds(phase, op):
    assert decide(status(phase, 10), request(op, generation=11)) is Verdict.PROCEED


@pytest.mark.parametrize("phase, verdict", [
    (Phase.QUEUED, Verdict.PROCEED),
    (Phase.PROVISIONING, Verdict.PROCEED),
    (Phase.RUNNING, Verdict.DONE),
    (Phase.FAILED, Verdict.DONE),
    (Phase.STOPPING, Verdict.SUPERSEDED),
    (Phase.STOPPED, Verdict.SUPERSEDED),
])
def test_start_at_the_same_generation(phase, verdict):
    assert decide(status(phase, 10), request(Op.START, generation=10)) is verdict


@pytest.mark.parametrize("phase", list(Phase))
def test_stop_and_delete_at_the_same_generation(phase):
    expected = Verdict.DONE if phase is Phase.STOPPED else Verdict.PROCEED
    assert decide(status(phase, 10), request(Op.STOP, generation=10)) is expected
    assert decide(status(phase, 10), request(Op.DELETE, generation=10)) is Verdict.PROCEED


@given(st.sampled_from(list(Phase)), st.integers(0, 20), st.sampled_from(list(Op)), st.integers(0, 20))
def test_a_start_never_acts_over_a_stop_of_its_generation_or_later(phase, entity_gen, op, request_gen):
    verdict = decide(status(phase, entity_gen), request(op, generation=request_gen))
    if entity_gen > request_gen:
        assert verdict is Verdict.STALE
    if op is Op.START and phase in (Phase.STOPPING, Phase.STOPPED) and entity_gen >= request_gen:
        assert verdict is not Verdict.PROCEED
