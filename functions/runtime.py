"""The handler's dependencies, built once from the app settings and reused across invocations.

Built lazily at the first invocation (never at import, see
:mod:`functions.settings`) and rebuilt only when the settings change, which
happens in tests and in the dev host, never in Azure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from acaspawner.sealing import Sealer

from .arm import ArmApps, make_client
from .homes import make_homes
from .lifecycle import Deps
from .settings import Settings, read_host_limits
from .storage import FunctionStorage

# the share of functionTimeout one ARM wait may use, leaving room for status writes
ARM_BUDGET_SHARE = 0.6

_PREFIXES = ("ACA_", "AcaStorage", "AZURE_")
_lock = threading.Lock()
_cached: tuple[tuple[tuple[str, str], ...], Deps] | None = None


def _fingerprint(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in environ.items() if k.startswith(_PREFIXES)))


def build_deps(settings: Settings) -> Deps:
    """Clients for ``settings``: status table, poison queue, ARM, home share."""
    limits = read_host_limits()
    budget = max(limits.function_timeout * ARM_BUDGET_SHARE - 30, 30)
    client = make_client(settings, retry_timeout=budget)
    return Deps(
        settings=settings,
        storage=FunctionStorage(settings.storage),
        apps=ArmApps(client, settings.resource_group, polling_interval=settings.arm_poll_interval),
        sealer=Sealer(settings.sealing_keys, max_age=settings.seal_max_age),
        homes=make_homes(settings),
        max_dequeue_count=limits.max_dequeue_count,
        arm_budget=budget,
    )


def get_deps(environ: Mapping[str, str] | None = None) -> Deps:
    """The dependencies for the current app settings; raises SettingsError naming what is missing."""
    global _cached
    env = os.environ if environ is None else environ
    key = _fingerprint(env)
    with _lock:
        if _cached is None or _cached[0] != key:
            if _cached is not None:
                _cached[1].apps.close()
            _cached = (key, build_deps(Settings.from_environ(env)))
        return _cached[1]
