"""The two test tiers: ``make test`` runs everything, ``make test-quick`` no test that starts a stack.

What ``make test-quick`` selects is read from ``make`` itself (its pytest command, collecting only), so
a change to the Makefile or to the rules in ``tests/conftest.py`` is checked as it is. ``tier_probe.py``
checks the guard behind the rules: under ``--quick`` a stack the rules did not see fails its test.
These tests are slow themselves (the whole suite is collected again): ``make test`` runs them.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# tests known to start a stack or a part of one (a Stack, a functions dev host, a JupyterHub or its proxy, the
# benchmark, a browser), to run the spawner with the functions' stand-in, to test the emulator itself, or to build
# the distribution: never quick
STACK_TESTS = (
    "tests/integration/", "tests/integration_culler/", "tests/e2e/", "tests/bench/", "tests/packaging/",
    "tests/funchost/test_funchost_queues.py", "tests/funchost/test_funchost_timers.py",
    "tests/funchost/test_funchost_cli.py", "tests/funchost/test_func_smoke.py",
    "tests/functions/test_lifecycle_stack.py", "tests/functions/test_capacity_stack.py",
    "tests/culler/test_culler.py::test_idle_servers_are_stopped_through_the_hub_and_active_ones_kept",
    "tests/culler/test_culler.py::test_many_users_are_listed_in_few_pages",
    "tests/culler/test_reconciler.py::test_running_servers_whose_app_is_gone_are_reported",
    "tests/spawner/test_profiles_hub.py", "tests/emulator/",
    "tests/spawner/test_spawner_azurite.py", "tests/spawner/test_hub_flow.py",
    "tests/test_tiers.py",
)
# unit and contract tests of each part: always quick
QUICK_TESTS = (
    "tests/contract/test_sealing.py", "tests/functions/test_decide.py", "tests/functions/test_lifecycle_rules.py",
    "tests/spawner/test_spawner_unit.py", "tests/spawner/test_watcher.py", "tests/microsoft_app/test_emulator_answers.py",
    "tests/culler/test_culler.py", "tests/culler/test_reconciler.py",
    "tests/infra/test_infra_settings.py", "tests/funchost/test_funchost_config.py", "tests/storage/test_storage.py",
)
SELECTING = ("--quick", "-m", "-k", "--deselect", "--ignore", "--ignore-glob", "-x", "--maxfail")


def pytest_command(target: str) -> list[str]:
    """The pytest command line ``make <target>`` runs."""
    dry = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert dry.returncode == 0, dry.stderr
    commands = [shlex.split(line) for line in dry.stdout.splitlines() if "bin/pytest" in line]
    assert len(commands) == 1, dry.stdout
    return commands[0]


def test_make_test_runs_every_test():
    command = pytest_command("test")
    assert Path(command[0]).name == "pytest"
    assert not [arg for arg in command[1:] if arg.split("=")[0] in SELECTING], command


def test_make_test_quick_selects_the_unit_and_contract_tests_only():
    command = pytest_command("test-quick")
    assert "--quick" in command
    done = subprocess.run([*command, "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]  # 5 would be "no tests collected"
    selected = [line for line in done.stdout.splitlines() if "::" in line]
    summary = re.search(r"(\d+)/(\d+) tests collected \((\d+) deselected\)", done.stdout)
    assert selected and summary, done.stdout[-3000:]
    assert int(summary[1]) == len(selected) and int(summary[3]) > 0
    stack_tests = [test for test in selected if test.startswith(STACK_TESTS)]
    assert not stack_tests, stack_tests
    files = {test.split("::")[0] for test in selected}
    assert set(QUICK_TESTS) <= files, set(QUICK_TESTS) - files


def test_a_stack_the_rules_miss_fails_its_test_in_the_quick_tier():
    done = subprocess.run([sys.executable, "-m", "pytest", "--quick", "-q", "-p", "no:cacheprovider",
                           "tests/tier_probe.py"], cwd=REPO, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    assert "4 failed" in out, out[-3000:]
    for what in ("a local.stack.Stack", "a functions dev host (FunctionsHost)", "`local.funchost`", "`jupyterhub`"):
        assert f"StackInQuickTier: this test starts {what} but is in the quick tier" in out, out[-3000:]
