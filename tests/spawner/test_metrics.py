"""The spawner's Prometheus series: where a start's time went, failures by code."""

from __future__ import annotations

from prometheus_client import REGISTRY

from acaspawner import metrics
from acaspawner.contract import Phase, Status


def row(*events: tuple[Phase, float]) -> Status:
    return Status(hub_id="h", server_key="k", phase=Phase.RUNNING, generation=1,
                  events=[{"phase": p.value, "message": "", "time": t} for p, t in events])


def test_a_start_splits_into_queue_azure_and_the_hubs_wait():
    parts = metrics.observe_start(100.0, row((Phase.PROVISIONING, 101.5), (Phase.RUNNING, 121.5)), 122.0)
    assert parts == {"queue": 1.5, "azure": 20.0, "hub": 0.5}


def test_two_clocks_never_make_a_part_negative():
    # the functions' clock 2 s behind the hub's
    parts = metrics.observe_start(100.0, row((Phase.PROVISIONING, 99.0), (Phase.RUNNING, 119.0)), 118.5)
    assert parts == {"queue": 0.0, "azure": 20.0, "hub": 0.0}
    # a warm server: running is the first thing the functions write
    assert metrics.observe_start(100.0, row((Phase.RUNNING, 100.5)), 102.0) == {"queue": 0.5, "azure": 0.0,
                                                                                 "hub": 1.5}


def test_a_row_without_events_counts_as_the_hubs_whole_wait():
    assert metrics.observe_start(100.0, row(), 125.0) == {"hub": 25.0}


def test_failures_are_counted_by_code_and_odd_codes_as_other():
    def count(code: str) -> float:
        return REGISTRY.get_sample_value("jupyterhub_aca_spawn_failures_total", {"code": code}) or 0.0

    before = count("NoCapacity"), count("other")
    metrics.count_failure("NoCapacity")
    metrics.count_failure("a code\nwith a newline")
    metrics.count_failure("")
    assert (count("NoCapacity"), count("other")) == (before[0] + 1, before[1] + 2)
