"""function_app.py indexes without any app setting, with exactly the expected functions and bindings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_functions_and_bindings():
    import function_app

    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    # the lifecycle queue handler and the culler/reconciler/warm pool timers, nothing else
    assert set(functions) == {"lifecycle", "culler", "reconciler", "warm_pool"}
    queue_triggered = [name for name, f in functions.items()
                       if any(b["type"] == "queueTrigger" for b in f.get_bindings_dict()["bindings"])]
    assert queue_triggered == ["lifecycle"]
    bindings = functions["lifecycle"].get_bindings_dict()["bindings"]
    assert len(bindings) == 1
    trigger = bindings[0]
    assert trigger["type"] == "queueTrigger"
    assert trigger["queueName"] == "%ACA_LIFECYCLE_QUEUE%"
    assert trigger["connection"] == "AcaStorage"
    assert trigger["name"] == "msg"
    for name, schedule in (("culler", "%ACA_CULL_SCHEDULE%"), ("reconciler", "%ACA_RECONCILE_SCHEDULE%"),
                           ("warm_pool", "%ACA_WARM_POOL_SCHEDULE%")):
        (timer,) = functions[name].get_bindings_dict()["bindings"]
        assert (timer["type"], timer["schedule"]) == ("timerTrigger", schedule), name


def test_indexing_needs_no_settings():
    """The worker indexes before app settings exist: importing must not read or validate them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACA_", "AcaStorage"))}
    code = "import function_app; print(sorted(f.get_function_name() for f in function_app.app.get_functions()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['culler', 'lifecycle', 'reconciler', 'warm_pool']"


def test_first_invocation_names_the_missing_setting(monkeypatch):
    import pytest

    from functions import runtime
    from functions.settings import SettingsError

    for name in list(os.environ):
        if name.startswith(("ACA_", "AcaStorage")):
            monkeypatch.delenv(name)
    with pytest.raises(SettingsError, match="ACA_HUB_ID"):
        runtime.get_deps()
