"""The spawn failures users see.

JupyterHub (≥ 6.0) treats :class:`jupyterhub.spawner.SpawnException` as an
expected, explained failure: no traceback in the log, a ``reason`` label in
the metrics, and its message shown on the spawn page and in the progress
stream (through ``jupyterhub_message`` / ``jupyterhub_html_message``, which
``jupyterhub.utils.format_exception`` reads).
"""

from __future__ import annotations

from jupyterhub.spawner import SpawnException as _HubSpawnException


class SpawnException(_HubSpawnException):
    """A spawn that failed for a reason the functions (or the spawner) could name.

    ``error_code`` is the functions' code (e.g. ARM's ``InvalidParameterValue``)
    when there is one; ``reason`` is the short label JupyterHub puts in its
    metrics (``failed``, ``superseded``, ``stopped``, ``options``).
    """

    def __init__(
        self, message: str, *, reason: str = "failed", error_code: str = "", status_code: int = 500, log_message: str = ""
    ):
        shown = f"{message} ({error_code})" if error_code else message
        super().__init__(shown, reason=reason, status_code=status_code, log_message=log_message)
        self.error_code = error_code
        self.jupyterhub_message = shown
