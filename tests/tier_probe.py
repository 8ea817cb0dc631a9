"""Probes for ``tests/test_tiers.py``: tests that start a stack where the rules of ``tests/conftest.py`` cannot
see it (the names are put together at run time). The file name is not a test module's, so pytest collects it
only when named; ``test_tiers.py`` runs it under ``--quick``, where each probe must fail with StackInQuickTier.

(This file must not spell out what ``STARTS_A_STACK`` looks for, or it would be marked slow and left out.)
"""

from __future__ import annotations

import importlib
import subprocess
import sys

from local.procs import REPO


def named(module: str, *parts: str):
    return getattr(importlib.import_module(module), "".join(parts))


def test_the_whole_stack():
    named("local.stack", "Sta", "ck")().start()


def test_a_functions_dev_host_in_process():
    named("local.funchost.host", "Functions", "Host")(REPO / "function_app.py").start()


def test_a_functions_dev_host_as_a_command():
    subprocess.run([sys.executable, "-m", ".".join(["local", "funchost"]), "--help"], capture_output=True, check=True)


def test_a_jupyterhub_process():
    subprocess.run([sys.executable, "-m", "jupyterhub", "--version"], capture_output=True, check=True)
