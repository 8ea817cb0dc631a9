"""The pool of Container Apps environments the functions place servers in (app setting ``ACA_ENVIRONMENTS``).

An environment has a core quota (100 cores on the Consumption profile by
default), so a class larger than one environment needs several. Each entry
of ``ACA_ENVIRONMENTS`` (a JSON list) names an environment by resource id
and the budget the functions may fill there::

    [{"id": "/subscriptions/…/managedEnvironments/cae-a", "cores": 100, "memory_gib": 200},
     {"id": "/subscriptions/…/managedEnvironments/cae-b", "cores": 100}]

``cores`` defaults to :data:`DEFAULT_CORES`, ``memory_gib`` to
:data:`MEMORY_GIB_PER_CORE` per core (the Consumption profile's ratio).

Two keys matter for an environment other than the hub's (an internal one in
the same virtual network): an app's ``external: false`` ingress is reachable
only from inside its own environment, so there ``"vnet_ingress": true`` gives
apps ``external: true`` ingress, which on an internal environment means "the
virtual network", never the internet; and the hub's internal name does not
resolve there, so ``"hub_api_url"`` is the hub API address its servers use
(typically the hub's public URL + ``hub/api``). Such apps accept connections
only from ``"allow_from"`` (required with ``vnet_ingress``: the address
ranges of the hub's proxy, e.g. its subnet), and the functions refuse to
place a server in a ``vnet_ingress`` environment that ARM does not report as
internal, where external would mean the internet.
Without the setting the pool is ``ACA_ENVIRONMENT_ID`` alone with the
default budget. ``ACA_ENVIRONMENT_ID`` must be one of the pool.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

#: ACA's default core quota of an environment's Consumption profile
DEFAULT_CORES = 100.0
#: Consumption sizes pair 2 GiB with every core
MEMORY_GIB_PER_CORE = 2.0

_KEYS = {"id", "cores", "memory_gib", "vnet_ingress", "hub_api_url", "allow_from"}


@dataclass(frozen=True)
class EnvironmentBudget:
    """One environment of the pool and how much of it the functions may fill."""

    id: str
    cores: float = DEFAULT_CORES
    memory_gib: float = DEFAULT_CORES * MEMORY_GIB_PER_CORE
    vnet_ingress: bool = False  # apps get external ingress: the virtual network's, on an internal environment
    hub_api_url: str = ""  # the hub API as servers here reach it; empty: the address the hub sent
    allow_from: tuple[str, ...] = ()  # with vnet_ingress: the only address ranges its apps accept connections from

    @property
    def name(self) -> str:
        """The environment's name (the last segment of its resource id), fit for messages and logs."""
        return environment_name(self.id)


def environment_name(environment_id: str) -> str:
    """``/subscriptions/…/managedEnvironments/cae-a`` → ``cae-a``."""
    return environment_id.rstrip("/").rsplit("/", 1)[-1]


def same_environment(a: str, b: str) -> bool:
    """ARM resource ids compare without regard to case or a trailing slash."""
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def budget_of(pool: Sequence[EnvironmentBudget], environment_id: str) -> EnvironmentBudget | None:
    """The pool's entry for ``environment_id``, or None when the environment is not in the pool."""
    return next((b for b in pool if same_environment(b.id, environment_id)), None)


def _amount(entry: dict, key: str, default: float, where: str) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where} needs a positive number as {key}, not {value!r}")
    return float(value)


def _budget(entry: object, index: int) -> EnvironmentBudget:
    where = f"has an entry {index + 1} that"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is no object with id, cores and memory_gib")
    unknown = set(entry) - _KEYS
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)} (known: {', '.join(sorted(_KEYS))})")
    env_id = entry.get("id")
    if not isinstance(env_id, str) or "/managedenvironments/" not in env_id.lower():
        raise ValueError(f"{where} names no managed environment by resource id: {env_id!r}")
    cores = _amount(entry, "cores", DEFAULT_CORES, where)
    memory = _amount(entry, "memory_gib", cores * MEMORY_GIB_PER_CORE, where)
    vnet_ingress = entry.get("vnet_ingress", False)
    if not isinstance(vnet_ingress, bool):
        raise ValueError(f"{where} needs true or false as vnet_ingress, not {vnet_ingress!r}")
    hub_api_url = entry.get("hub_api_url", "")
    if not isinstance(hub_api_url, str) or (hub_api_url and not hub_api_url.startswith(("https://", "http://"))):
        raise ValueError(f"{where} needs an http(s) URL as hub_api_url, not {hub_api_url!r}")
    allow_from = entry.get("allow_from", [])
    if not isinstance(allow_from, list) or not all(isinstance(a, str) for a in allow_from):
        raise ValueError(f"{where} needs a list of address ranges as allow_from, not {allow_from!r}")
    try:
        ranges = tuple(str(ipaddress.ip_network(a.strip(), strict=False)) for a in allow_from)
    except ValueError as e:
        raise ValueError(f"{where} has an invalid address range in allow_from ({e})") from None
    if vnet_ingress and not ranges:
        raise ValueError(f"{where} sets vnet_ingress without allow_from: every server there would accept "
                         "connections from the whole virtual network; name the hub's address ranges")
    if ranges and not vnet_ingress:
        raise ValueError(f"{where} sets allow_from without vnet_ingress (internal ingress needs none)")
    return EnvironmentBudget(id=env_id.strip().rstrip("/"), cores=cores, memory_gib=memory,
                             vnet_ingress=vnet_ingress, hub_api_url=hub_api_url.rstrip("/"), allow_from=ranges)


def parse_environments(raw: str, environment_id: str) -> tuple[EnvironmentBudget, ...]:
    """The pool from ``ACA_ENVIRONMENTS`` (``raw``, may be empty) and ``ACA_ENVIRONMENT_ID``.

    Raises ValueError whose message completes "app setting ACA_ENVIRONMENTS …" (``is not JSON``, …).
    """
    if not raw.strip():
        return (EnvironmentBudget(id=environment_id.strip().rstrip("/")),) if environment_id.strip() else ()
    try:
        entries = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"is not JSON ({e})") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError("must be a non-empty JSON list of {\"id\", \"cores\", \"memory_gib\"} objects")
    pool = tuple(_budget(entry, i) for i, entry in enumerate(entries))
    seen: set[str] = set()
    for budget in pool:
        if budget.id.lower() in seen:
            raise ValueError(f"lists environment {budget.name} twice")
        seen.add(budget.id.lower())
    if environment_id.strip() and not any(same_environment(b.id, environment_id) for b in pool):
        raise ValueError("must list ACA_ENVIRONMENT_ID's environment too")
    return pool


def read_environments(raw: str, environment_id: str, problems: list[str]) -> tuple[EnvironmentBudget, ...]:
    """:func:`parse_environments` for the settings reader: a problem is appended to ``problems``, not raised."""
    try:
        return parse_environments(raw, environment_id)
    except ValueError as e:
        problems.append(f"app setting ACA_ENVIRONMENTS {e}")
        return ()
