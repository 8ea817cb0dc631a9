"""What the lifecycle handler works with: clients, sealers and caches built once per settings (``functions.runtime``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from acaspawner.sealing import Sealer

from .arm import ArmApps
from .capacity import CapacityLedger
from .followup import FollowUps
from .listing import AppListing
from .pending_looks import PendingLooks
from .settings import Settings
from .storage import FunctionStorage
from .user_homes import UserHomes


@dataclass
class Deps:
    """What the handler works with; tests build their own."""

    settings: Settings
    storage: FunctionStorage
    apps: ArmApps
    sealer: Sealer  # the hub's keys: requests
    follow_ups: FollowUps  # sealed with ``followup_sealer``
    listing: AppListing
    homes: UserHomes | None = None  # users' home folders; None: servers get no home
    followup_sealer: Sealer | None = None  # the functions' own keys (ACA_FOLLOWUP_KEYS): follow-ups
    # environments of the pool with vnet_ingress that ARM reported internal (checked once per instance)
    internal_environments: set[str] = field(default_factory=set)
    max_dequeue_count: int = 5
    # where servers are placed and what they hold there; None: everything in ACA_ENVIRONMENT_ID, uncounted
    capacity: CapacityLedger | None = None
    # the follow-ups this instance sent that still wait for ARM (one look serves many of them)
    looks: PendingLooks = field(default_factory=PendingLooks)
