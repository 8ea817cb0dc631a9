"""An Azure Container Apps emulator for local runs and tests (no Azure subscription needed).

It stands in for Azure where the project meets it:

* **ARM** (:mod:`.arm`): the ``Microsoft.App`` subset the functions call, over HTTPS with a test
  CA (:mod:`.certs`), with ARM's long-running-operation protocol, errors and throttling, so
  ``azure-mgmt-appcontainers`` runs unchanged with only ``base_url`` and ``connection_verify`` set.
* **apps** (:mod:`.apps`, :mod:`.operations`): each container app runs its container's command as
  a local process with the template's env and secrets, on a free port the launch is rewritten to.
* **ingress** (:mod:`.ingress`): a loopback port per app, every port dispatching by ``Host``
  like ACA's envoy (404 for unknown hosts, the hub's host to the hub, ``X-Forwarded-For``
  appended, 431 over the header limit, websockets passed through).
* **faults** (:mod:`.faults`): provisioning delays, 429s from ARM's token buckets, injected 5xx,
  failing creates, and counters.

In an event loop use :class:`Emulator`; from synchronous code :func:`start_in_thread`; in pytest
the ``aca_emulator`` fixture from :mod:`local.emulator.pytest_fixtures`; from a shell
``python -m local.emulator``.
"""

from .apps import ImageRule
from .client import StaticTokenCredential, make_client
from .emulator import Emulator
from .faults import Faults
from .model import AppInfo
from .threaded import EmulatorThread, start_in_thread

__all__ = [
    "AppInfo",
    "Emulator",
    "EmulatorThread",
    "Faults",
    "ImageRule",
    "StaticTokenCredential",
    "make_client",
    "start_in_thread",
]
