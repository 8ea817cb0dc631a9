"""Managed environments: their ARM resources, and the cores their apps' replicas hold against a quota.

ACA counts an environment's cores as the sum of the cores requested by
every active replica of every revision in it; past the quota (100 cores on
the Consumption profile by default) new replicas cannot be scheduled and
provisioning fails with "Maximum Allowed Cores exceeded for the Managed
Environment" (see README.md, "Refusals"). The emulator counts the same way
for its one-replica apps: an app holds its containers' cores from the moment
its provisioning gets past the quota check until it is stopped, deleted or
fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ArmError
from .model import environment_id

#: the code the emulator's quota refusal carries (a guess, see README.md) and ACA's documented message
QUOTA_CODE = "ContainerAppOperationError"
QUOTA_MESSAGE = ("Maximum Allowed Cores exceeded for the Managed Environment. Please check "
                 "https://learn.microsoft.com/en-us/azure/container-apps/quotas for resource limits.")
# Location polls of failed operations answer 400, as the other provisioning failures do
_FAILED_STATUS = 400


@dataclass
class ManagedEnvironment:
    """One environment: name, region, default domain and workload profiles."""

    name: str
    subscription_id: str
    resource_group: str
    location: str
    workload_profiles: list[dict[str, Any]] = field(default_factory=list)
    static_ip: str = "127.0.0.1"
    internal: bool = False  # an internal environment: its external ingress is its virtual network's

    @property
    def id(self) -> str:
        return environment_id(self.subscription_id, self.resource_group, self.name)

    @property
    def default_domain(self) -> str:
        return f"{self.name}.{self.location.lower().replace(' ', '')}.localhost"

    def resource(self) -> dict[str, Any]:
        """The environment as ARM returns it."""
        return {
            "id": self.id,
            "name": self.name,
            "type": "Microsoft.App/managedEnvironments",
            "location": self.location,
            "tags": {},
            "properties": {
                "provisioningState": "Succeeded",
                "defaultDomain": self.default_domain,
                "staticIp": self.static_ip,
                "zoneRedundant": False,
                "workloadProfiles": [dict(p) for p in self.workload_profiles],
                **({"vnetConfiguration": {"internal": True}} if self.internal else {}),
                "customDomainConfiguration": {"customDomainVerificationId": "0" * 64},
            },
        }


def container_cores(template: dict[str, Any]) -> float:
    """The cores one replica of ``template`` requests (ACA's default 0.5 per container that names none)."""
    total = 0.0
    for container in template.get("containers") or []:
        try:
            total += float((container.get("resources") or {}).get("cpu", 0.5))
        except (TypeError, ValueError):
            total += 0.5
    return total


@dataclass
class _Usage:
    peak: float = 0.0
    refusals: int = 0


class CoreAccounting:
    """Which app holds how many cores in which environment, against the quota (``None``: not enforced)."""

    def __init__(self, environments: Sequence[ManagedEnvironment], quota: Callable[[], float | None]) -> None:
        self.environments = list(environments)
        self._quota = quota
        self._held: dict[str, tuple[str, float]] = {}  # app name -> (environment key, cores)
        self._usage = {e.id.lower(): _Usage() for e in self.environments}

    def find(self, env_id: str) -> ManagedEnvironment | None:
        wanted = str(env_id).rstrip("/").lower()
        return next((e for e in self.environments if e.id.lower() == wanted), None)

    def in_use(self, env_id: str) -> float:
        key = env_id.lower()
        return sum(cores for env, cores in self._held.values() if env == key)

    def admit(self, app_name: str, env_id: str, cores: float) -> ArmError | None:
        """Let ``app_name``'s replica hold ``cores`` in ``env_id``, or the quota refusal when they do not fit."""
        key = env_id.lower()
        self._held.pop(app_name, None)  # what it held before (an update) makes room for itself
        quota = self._quota()
        if quota is not None and self.in_use(env_id) + cores > quota + 1e-9:
            self._usage[key].refusals += 1
            return ArmError(_FAILED_STATUS, QUOTA_CODE, QUOTA_MESSAGE)
        self._held[app_name] = (key, cores)
        usage = self._usage[key]
        usage.peak = max(usage.peak, self.in_use(env_id))
        return None

    def release(self, app_name: str) -> None:
        self._held.pop(app_name, None)

    def report(self) -> dict[str, dict[str, Any]]:
        """Per environment name: id, default domain, quota, cores in use (and the most ever), apps holding, refusals."""
        quota = self._quota()
        found = {}
        for env in self.environments:
            key = env.id.lower()
            holding = [name for name, (where, _) in self._held.items() if where == key]
            found[env.name] = {
                "id": env.id,
                "default_domain": env.default_domain,
                "core_quota": quota,
                "cores_in_use": self.in_use(env.id),
                "peak_cores": self._usage[key].peak,
                "apps_holding_cores": len(holding),
                "quota_refusals": self._usage[key].refusals,
            }
        return found
