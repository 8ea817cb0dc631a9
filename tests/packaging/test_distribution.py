"""The spawner distribution as an admin installs it: built from the sdist, into clean virtual environments.

Slow by nature (two fresh venvs from the package registry), so it checks a lot
at once: the metadata declares what the code needs, the functions' side
installs without JupyterHub or aiohttp, and on the oldest JupyterHub the
``[hub]`` extra allows, ``spawner_class = "aca"`` resolves to AcaSpawner.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

SPAWNER = Path(__file__).resolve().parents[2] / "spawner"
OLDEST_JUPYTERHUB = "jupyterhub==6.0.*"  # the [hub] extra's floor


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--sdist", "--outdir", out, SPAWNER)
    [sdist] = out.glob("acaspawner-*.tar.gz")
    run(sys.executable, "-m", "build", "--wheel", "--outdir", out, sdist)  # the wheel from the sdist, as pip would
    return out


def venv(path: Path) -> Path:
    run(sys.executable, "-m", "venv", path)
    return path / "bin"


def test_the_metadata_declares_what_the_code_needs(dist):
    [wheel] = dist.glob("acaspawner-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = Parser().parsestr(zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    requires = meta.get_all("Requires-Dist")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert any(r.startswith("jupyterhub>=6.0") and 'extra == "hub"' in r for r in requires), requires
    assert [r for r in requires if r.startswith("aiohttp")] and all(
        'extra == "hub"' in r for r in requires if r.startswith("aiohttp")), requires
    assert "aca = acaspawner.spawner:AcaSpawner" in entry_points
    assert "aca-sealing-key = acaspawner.sealing:main" in entry_points
    [sdist] = dist.glob("acaspawner-*.tar.gz")
    with tarfile.open(sdist) as tf:
        assert any(n.endswith("/LICENSE") for n in tf.getnames())


def test_the_functions_side_installs_without_jupyterhub_or_aiohttp(dist, tmp_path):
    [wheel] = dist.glob("acaspawner-*.whl")
    bin_ = venv(tmp_path / "functions")
    run(bin_ / "pip", "install", "--quiet", wheel)
    out = run(bin_ / "python", "-c", (
        "import sys, acaspawner.contract, acaspawner.naming, acaspawner.sealing, acaspawner.wire, "
        "acaspawner.storage_config; "
        "print(sorted(m for m in ('jupyterhub', 'aiohttp', 'tornado') if m in sys.modules))"))
    assert out.strip() == "[]"
    key = run(bin_ / "aca-sealing-key").strip()
    assert len(key) == 44 and key.endswith("=")


def test_spawner_class_aca_resolves_on_the_oldest_supported_jupyterhub(dist, tmp_path):
    [wheel] = dist.glob("acaspawner-*.whl")
    bin_ = venv(tmp_path / "hub")
    run(bin_ / "pip", "install", "--quiet", f"{wheel}[hub]", OLDEST_JUPYTERHUB)
    out = run(bin_ / "python", "-c", (
        "from importlib.metadata import version; from jupyterhub.app import JupyterHub; "
        "from acaspawner.spawner import AcaSpawner; hub = JupyterHub(); hub.spawner_class = 'aca'; "
        "assert hub.spawner_class is AcaSpawner, hub.spawner_class; print(version('jupyterhub'))"))
    assert out.strip().startswith("6.0.")
