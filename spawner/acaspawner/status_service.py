"""The admins' status page as a hub-managed JupyterHub service: its entry of ``c.JupyterHub.services``.

The page (:mod:`acaspawner.status_page`) runs beside the hub, is reached at
``/services/aca-status/`` through the hub's proxy, and signs people in with
the hub's OAuth. Who may open it is JupyterHub's own rule for services: the
``access:services!service=aca-status`` scope, which admins hold (their role
has ``access:services``); give it to a teaching assistant's role to share
the page. The service itself gets no role: it only reads the status table.

Kept free of JupyterHub and tornado imports: the hub's configuration file
imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

SERVICE_NAME = "aca-status"
DEFAULT_PORT = 10101
#: what the page process needs to read the status table (the hub's own settings, see hub/jupyterhub_config.py)
STORAGE_VARIABLES = ("ACA_HUB_ID", "ACA_STATUS_TABLE", "ACA_STORAGE_CONNECTION_STRING", "ACA_TABLE_ACCOUNT_URL",
                     "ACA_QUEUE_ACCOUNT_URL", "AZURE_CLIENT_ID")


def status_service(storage: Mapping[str, str], port: int = DEFAULT_PORT) -> dict[str, Any]:
    """The service's entry of ``c.JupyterHub.services``; ``storage`` holds :data:`STORAGE_VARIABLES` (others are
    left out, so nothing else of the hub's environment reaches the page)."""
    environment = {name: str(storage[name]) for name in STORAGE_VARIABLES if storage.get(name)}
    if not environment.get("ACA_HUB_ID"):
        raise ValueError("the status page needs ACA_HUB_ID")
    if not (environment.get("ACA_STORAGE_CONNECTION_STRING") or environment.get("ACA_TABLE_ACCOUNT_URL")):
        raise ValueError("the status page needs ACA_STORAGE_CONNECTION_STRING or ACA_TABLE_ACCOUNT_URL")
    return {
        "name": SERVICE_NAME,
        "url": f"http://127.0.0.1:{port}",
        "command": [sys.executable, "-m", "acaspawner.status_page"],
        "environment": environment,
        "display": True,  # listed under "Services" in the hub's menu, for those who may open it
        "oauth_no_confirm": True,
    }
