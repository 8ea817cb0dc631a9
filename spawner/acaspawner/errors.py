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
    metrics (``failed``, ``superseded``, ``stopped``, ``options``);
    ``request_id`` names the request it happened to, shown to the user so
    that an admin can find it in the hub's and the functions' logs and in
    the Azure activity log.
    """

    def __init__(
        self, message: str, *, reason: str = "failed", error_code: str = "", status_code: int = 500,
        log_message: str = "", request_id: str = "",
    ):
        details = "; ".join(part for part in (error_code, f"request id {request_id}" if request_id else "") if part)
        shown = f"{message} ({details})" if details else message
        super().__init__(shown, reason=reason, status_code=status_code, log_message=log_message)
        self.error_code = error_code
        self.request_id = request_id
        self.jupyterhub_message = shown
        self._given = (message, log_message)

    def with_request_id(self, request_id: str) -> SpawnException:
        """The same failure, naming the request it happened to (itself when it names one already)."""
        if not request_id or self.request_id:
            return self
        message, log_message = self._given
        return SpawnException(message, reason=self.reason, error_code=self.error_code, status_code=self.status_code,
                              log_message=log_message, request_id=request_id)
