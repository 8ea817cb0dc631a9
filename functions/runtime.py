"""The handler's dependencies, built once from the app settings and reused across invocations.

Built lazily at the first invocation (never at import, see
:mod:`functions.settings`) and rebuilt only when the settings change, which
happens in tests and in the dev host, never in Azure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from .arm import ArmApps, make_client
from .capacity import CapacityLedger
from .deps import Deps
from .followup import FollowUps
from .homes import make_homes
from .listing import AppListing
from .settings import CONNECTION, Settings, read_host_limits
from .storage import FunctionStorage
from .user_homes import HomeOwners, UserHomes

# how long azure-core may keep retrying one throttled or failing ARM request inside an invocation
# (honouring Retry-After); beyond it the message is redelivered
ARM_RETRY_BUDGET = 60.0

_PREFIXES = ("ACA_", CONNECTION, "AZURE_")
_lock = threading.Lock()
_cached: tuple[tuple[tuple[str, str], ...], Deps] | None = None


def _fingerprint(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in environ.items() if k.startswith(_PREFIXES)))


def build_deps(settings: Settings) -> Deps:
    """Clients for ``settings``: status table (and its capacity ledger), lifecycle and poison queues, ARM, the
    shared listing, home share."""
    limits = read_host_limits()
    apps = ArmApps.for_settings(make_client(settings, retry_timeout=min(ARM_RETRY_BUDGET, limits.function_timeout / 2)),
                                settings)
    storage = FunctionStorage(settings.storage)
    sealer, followup_sealer = settings.sealer(), settings.followup_sealer()
    folders = make_homes(settings)
    return Deps(
        settings=settings,
        storage=storage,
        apps=apps,
        sealer=sealer,
        follow_ups=FollowUps(followup_sealer, storage),
        followup_sealer=followup_sealer,
        listing=AppListing(apps),
        homes=UserHomes(folders, HomeOwners(storage.table, settings.hub_id)) if folders is not None else None,
        max_dequeue_count=limits.max_dequeue_count,
        capacity=CapacityLedger.for_settings(storage.table, settings),
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
