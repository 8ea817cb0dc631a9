"""The package's own loggers (status watcher, storage) speak through JupyterHub's log.

Module loggers (``logging.getLogger(__name__)``) have no handler of their own,
and JupyterHub configures only its application logger, so their warnings used
to reach stderr through Python's last-resort handler: no time, no level. The
first spawner hands its ``log`` here, and the ``acaspawner`` logger then uses
that logger's handlers (and with them JupyterHub's format), once.
"""

from __future__ import annotations

import logging

PACKAGE = "acaspawner"


def _handlers_of(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers a record logged on ``logger`` would reach (as ``Logger.callHandlers`` walks them)."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found += current.handlers
        if not current.propagate:
            break
        current = current.parent
    return found


def speak_through(hub_log: logging.Logger | logging.LoggerAdapter) -> None:
    """Route the package's records to ``hub_log``'s handlers (idempotent)."""
    hub_logger = hub_log.logger if isinstance(hub_log, logging.LoggerAdapter) else hub_log
    package = logging.getLogger(PACKAGE)
    if hub_logger is package or hub_logger.name.startswith(PACKAGE + "."):
        return
    handlers = [h for h in _handlers_of(hub_logger) if h not in package.handlers]
    if not handlers:
        return
    for handler in handlers:
        package.addHandler(handler)
    package.propagate = False  # the hub's handlers have it now: no second copy through the root logger
    if package.level == logging.NOTSET:
        package.setLevel(hub_logger.getEffectiveLevel())


def describe(error: BaseException) -> str:
    """An exception's text, or its class name when the text is empty (``TimeoutError()``)."""
    return str(error) or type(error).__name__
