"""The package's own loggers (status watcher, storage) speak through JupyterHub's log.

Module loggers (``logging.getLogger(__name__)``, all below ``acaspawner``)
have no handler of their own, and JupyterHub configures only its application
logger ("JupyterHub", which does not propagate to the root logger), so their
warnings used to reach stderr through Python's last-resort handler: the bare
message, no time, no level.

The wiring is the one JupyterHub itself uses for tornado's and oauthlib's
loggers (``JupyterHub.init_logging``): the ``acaspawner`` logger becomes a
child of the hub's logger (``logger.parent = hub_log``). Its records then
propagate to the hub's handlers, in the hub's format (time, level, logger
name, so a line still says ``acaspawner.watcher``); its level follows the
hub's (``--debug`` included) as long as nobody set one on ``acaspawner``;
nothing is copied, so calling it again (every spawner does) adds nothing, and
a record reaches each handler once: the hub's logger decides whether anything
goes on to the root logger, exactly as for its own lines.

Nothing here imports JupyterHub, and nothing is wired on import: the
contract modules and the Azure Functions never call :func:`speak_through`,
so outside a hub the package's loggers stay ordinary module loggers.
"""

from __future__ import annotations

import logging

PACKAGE = "acaspawner"


def _logger_of(log: logging.Logger | logging.LoggerAdapter) -> logging.Logger:
    while isinstance(log, logging.LoggerAdapter):  # traitlets allows an adapter as ``log``
        log = log.logger
    return log


def speak_through(hub_log: logging.Logger | logging.LoggerAdapter) -> None:
    """Make the ``acaspawner`` logger a child of ``hub_log`` (idempotent; the spawner calls it on use)."""
    hub_logger = _logger_of(hub_log)
    package = logging.getLogger(PACKAGE)
    if hub_logger.name == PACKAGE or hub_logger.name.startswith(PACKAGE + "."):
        return  # a logger of our own: making it our parent would make a cycle
    if package.parent is not hub_logger:
        package.parent = hub_logger


def describe(error: BaseException, timeout: float | None = None) -> str:
    """An exception's text for a log line or a message, never empty.

    ``str(TimeoutError())`` (what ``asyncio.timeout`` raises), ``str(CancelledError())``
    and some azure-core errors are ``""``; then the class name stands in, or,
    for a ``TimeoutError`` when the caller says how long it waited, ``timed out after N s``.
    """
    text = str(error)
    if text:
        return text
    if timeout is not None and isinstance(error, TimeoutError):
        seconds = f"{timeout:.1f}".rstrip("0").rstrip(".") if timeout >= 1 else f"{timeout:.2g}"
        return f"timed out after {seconds} s"
    return type(error).__name__
