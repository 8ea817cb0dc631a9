"""The culler's hub service is defined once (acaspawner.culler_service); configs and docs agree with it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from acaspawner.culler_service import (
    REQUIRED_SCOPES,
    SERVICE_NAME,
    USER_CULLING_SCOPES,
    culler_role,
    culler_scopes,
    culler_service,
)

REPO = Path(__file__).resolve().parents[2]
DEFINITION = REPO / "spawner" / "acaspawner" / "culler_service.py"
# the JupyterHub configurations that declare the service
HUB_CONFIGS = ["hub/jupyterhub_config.py", "local/demo/jupyterhub_config.py", "examples/azure/jupyterhub_config.py"]


def test_service_and_role_entries():
    assert culler_service("t") == {"name": SERVICE_NAME, "api_token": "t"}
    assert culler_role() == {"name": SERVICE_NAME, "scopes": list(REQUIRED_SCOPES), "services": [SERVICE_NAME]}
    assert culler_role(cull_users=True)["scopes"] == [*REQUIRED_SCOPES, "read:users", "delete:users"]
    assert culler_scopes(True) == [*REQUIRED_SCOPES, *USER_CULLING_SCOPES]
    assert "admin:users" not in culler_scopes(True)


def test_hub_configurations_use_the_definition():
    for name in HUB_CONFIGS:
        text = (REPO / name).read_text()
        assert "from acaspawner.culler_service import" in text, name
        assert "culler_role(" in text and "culler_service(" in text, name


def test_no_other_source_spells_the_name_or_the_scopes():
    """A string literal equal to the service name or a scope list outside the definition is a second definition."""
    scopes = set(REQUIRED_SCOPES) | set(USER_CULLING_SCOPES)
    sources = [p for folder in ("functions", "spawner/acaspawner", "local", "hub", "examples")
               for p in sorted((REPO / folder).rglob("*.py")) if p != DEFINITION]
    sources.append(REPO / "function_app.py")
    found = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and (node.value == SERVICE_NAME or node.value in scopes):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert found == []


def test_the_docs_show_the_same_service_and_scopes():
    text = (REPO / "docs" / "culler.md").read_text()
    block = text.split("```python", 1)[1].split("```", 1)[0]
    assert set(re.findall(r'"name": "([^"]+)"', block)) == {SERVICE_NAME}
    # the required scopes, then (commented out, for ACA_CULL_USERS) the user culling ones
    assert re.findall(r'"([a-z]+(?::[a-z]+)+)"', block) == [*REQUIRED_SCOPES, *USER_CULLING_SCOPES]
