"""The import boundaries between the hub side, the functions side, their shared contract and the local tooling.

The contracts live in ``.importlinter`` and are checked by ``lint-imports``;
the two rules import-linter cannot express are checked here with grimp, the
import graph it is built on.
"""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# the modules both sides share (as in .importlinter's shared-contract)
CONTRACT = ["acaspawner.contract", "acaspawner.naming", "acaspawner.sealing", "acaspawner.wire",
            "acaspawner.storage_config", "acaspawner.identity", "acaspawner.culler_service"]
# what function_app.py, which import-linter cannot take as a root, may import
FUNCTION_APP_IMPORTS = {"__future__", "os", "azure.functions", "functions"}


def test_import_contracts_are_kept():
    done = subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_shared_contract_does_not_reach_the_arm_sdk():
    """No contract module, nor any module it imports, imports azure.mgmt (the functions' dependency only)."""
    graph = grimp.build_graph("acaspawner", "functions", "local", include_external_packages=True)
    reached = set(CONTRACT)
    for module in CONTRACT:
        reached |= {m for m in graph.find_upstream_modules(module) if m.startswith("acaspawner.")}
    found = [f"{detail['importer']}:{detail['line_number']}: {detail['line_contents']}"
             for module in sorted(reached) for detail in graph.get_import_details(importer=module, imported="azure")
             if "azure.mgmt" in detail["line_contents"]]
    assert found == []


def test_function_app_imports_only_the_functions():
    tree = ast.parse((REPO / "function_app.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= FUNCTION_APP_IMPORTS, imported - FUNCTION_APP_IMPORTS


def test_the_no_circles_contract_catches_a_circle(tmp_path):
    """The acyclic contract of .importlinter fails on a package whose modules import each other."""
    package = tmp_path / "circular"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    shipped = configparser.ConfigParser()
    shipped.read(REPO / ".importlinter")
    contract = dict(shipped["importlinter:contract:no-circles"], ancestors="circular")
    config = configparser.ConfigParser()
    config["importlinter"] = {"root_package": "circular"}
    config["importlinter:contract:no-circles"] = contract
    with open(tmp_path / "importlinter.ini", "w") as f:
        config.write(f)
    done = subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", "importlinter.ini"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert contract["type"] == "acyclic_siblings"
    assert done.returncode != 0 and "No cycles are allowed in circular" in done.stdout, done.stdout[-2000:]


def test_every_module_of_the_functions_reads_in_one_sitting():
    """No module of ``functions/`` grows past 450 lines: a job that needs more is two jobs (split it)."""
    long = {path.name: lines for path in sorted((REPO / "functions").glob("*.py"))
            if (lines := len(path.read_text().splitlines())) > 450}
    assert not long, long
