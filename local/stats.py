"""Summaries of measured times, as the benchmarks report them."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation between closest ranks; NaN for no values."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = q * (len(data) - 1)
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def summary(values: list[float]) -> dict[str, float]:
    """Count, p50, p95, mean and max of ``values``."""
    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "mean": sum(values) / len(values) if values else float("nan"), "max": max(values, default=float("nan"))}


def median_run(runs: list[dict], key: str) -> dict:
    """The run whose ``key`` is the median of ``runs`` (the upper one of an even count), with every run's
    ``key`` beside it as ``<key>_each``, in the order they ran."""
    middle = sorted(runs, key=lambda run: run[key])[len(runs) // 2]
    return {**middle, f"{key}_each": [run[key] for run in runs]}
