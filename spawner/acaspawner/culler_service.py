"""The hub service the functions call JupyterHub's REST API as: its name and the scopes of its role.

Both sides need the same definition: the hub's configuration declares the
service and its role (:func:`culler_service`, :func:`culler_role`), and the
functions' culler and reconciler authenticate with its token and name it in
their errors. The scopes are what jupyterhub-idle-culler needs, nothing more.
"""

from __future__ import annotations

from typing import Any

SERVICE_NAME = "aca-idle-culler"
#: list ready servers, read their activity, stop them
REQUIRED_SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")
#: deleting idle users as well (ACA_CULL_USERS): read their ``created`` and delete them, nothing more (not admin:users)
USER_CULLING_SCOPES = ("read:users", "delete:users")


def culler_scopes(cull_users: bool = False) -> list[str]:
    """The scopes of the service's role; ``cull_users`` adds those for deleting idle users."""
    return [*REQUIRED_SCOPES, *(USER_CULLING_SCOPES if cull_users else ())]


def culler_service(api_token: str) -> dict[str, str]:
    """The service's entry of ``c.JupyterHub.services``."""
    return {"name": SERVICE_NAME, "api_token": api_token}


def culler_role(cull_users: bool = False) -> dict[str, Any]:
    """The service's entry of ``c.JupyterHub.load_roles``."""
    return {"name": SERVICE_NAME, "scopes": culler_scopes(cull_users), "services": [SERVICE_NAME]}
