"""The functions' configuration, read from app settings (see docs/settings.md).

Settings are read lazily, at the first invocation, never at import: the
Functions worker indexes ``function_app.py`` before app settings exist, and a
missing setting must not break indexing. A missing or malformed setting
raises :class:`SettingsError` naming every offending setting at once.

Each group of settings (storage, sealing, the ARM target, ARM access, policy,
home folders, timing) has one reader below; :meth:`Settings.from_environ`
composes them. Settings the timers read too (the hub id, the resource group,
the stop mode, the sealing maximum age) have a reader of their own here, so
every setting is parsed in one place (:mod:`functions.appsettings` holds the
parsers of numbers, flags, memory sizes and durations).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acaspawner.contract import HOME_MOUNT_OPTIONS, HOME_MOUNT_PATH
from acaspawner.sealing import DEFAULT_MAX_AGE, Sealer, parse_keys
from acaspawner.storage_config import DEFAULT_QUEUE, DEFAULT_TABLE, StorageConfig

from .appsettings import (
    InvalidSetting,
    MissingSetting,
    SettingsReader,
    items,
    number,
    parse_memory_gi,
    required,
    text,
    timespan_seconds,
)
from .environments import EnvironmentBudget, read_environments

# parse_memory_gi (functions.appsettings) stays importable from here, where policy and footprint import it
__all__ = [
    "CONNECTION",
    "DEFAULT_FUNCTION_TIMEOUT",
    "DEFAULT_MAX_DEQUEUE_COUNT",
    "STOP_MODES",
    "HostLimits",
    "Settings",
    "SettingsError",
    "parse_memory_gi",
    "read_hub_id",
    "read_host_limits",
    "read_resource_group",
    "read_seal_max_age",
    "read_stop_mode",
]

#: the connection name of the queue trigger (``connection="AcaStorage"``)
CONNECTION = "AcaStorage"
STOP_MODES = ("delete", "stop")

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
DEFAULT_MAX_DEQUEUE_COUNT = 5
DEFAULT_FUNCTION_TIMEOUT = 300.0  # the host's own default on Consumption
#: the culler deletes users idle past ACA_CULL_TIMEOUT (an hour by default): with homes removed on delete, their files
CULL_USERS_DELETES_HOMES = ("app settings ACA_CULL_USERS and ACA_HOME_DELETE_ON_DELETE must not both be true: the "
                            "culler would delete every user idle for ACA_CULL_TIMEOUT, and with them their home "
                            "folders; keep homes (ACA_HOME_DELETE_ON_DELETE=false) or delete users by hand")
# a class's defaults: the default server and two named ones, the largest Consumption size in all
DEFAULT_MAX_SERVERS_PER_USER = 3
DEFAULT_MAX_CORES_PER_USER = 4.0


class SettingsError(ValueError):
    """A required app setting is missing or a setting has an invalid value."""


@dataclass(frozen=True)
class HostLimits:
    """What the functions need to know from host.json."""

    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT
    function_timeout: float = DEFAULT_FUNCTION_TIMEOUT


def read_host_limits(path: Path = HOST_JSON) -> HostLimits:
    """maxDequeueCount and functionTimeout from host.json (the host's defaults where absent)."""
    try:
        host = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return HostLimits()
    queues = host.get("extensions", {}).get("queues", {})
    timeout = host.get("functionTimeout")
    return HostLimits(
        max_dequeue_count=int(queues.get("maxDequeueCount", DEFAULT_MAX_DEQUEUE_COUNT)),
        function_timeout=timespan_seconds(timeout) if timeout and timeout != "-1" else DEFAULT_FUNCTION_TIMEOUT,
    )


# --- settings the timers read too --------------------------------------------------------------


def read_hub_id(settings: Mapping[str, str]) -> str:
    """``ACA_HUB_ID``: the hub these functions serve (table partition, app tag)."""
    return required(settings, "ACA_HUB_ID", "the hub these functions serve")


def read_resource_group(settings: Mapping[str, str]) -> str:
    """``ACA_RESOURCE_GROUP``: where the user apps are."""
    return required(settings, "ACA_RESOURCE_GROUP", "resource group of the user apps")


def read_stop_mode(settings: Mapping[str, str]) -> str:
    """``ACA_STOP_MODE``: ``delete`` (the default) or ``stop``."""
    mode = text(settings, "ACA_STOP_MODE", "delete").lower()
    if mode not in STOP_MODES:
        raise InvalidSetting(f"ACA_STOP_MODE must be one of {', '.join(STOP_MODES)}, not {mode!r}")
    return mode


def read_seal_max_age(settings: Mapping[str, str]) -> float:
    """``ACA_SEAL_MAX_AGE``: seconds a sealed message stays valid."""
    return number(settings, "ACA_SEAL_MAX_AGE", DEFAULT_MAX_AGE, positive=True)


# --- the groups of Settings: each reads its settings and returns its fields ----------------------


def _storage(reader: SettingsReader) -> dict[str, Any]:
    """The lifecycle queue and status table, and how to reach them (the ``AcaStorage`` connection)."""
    queue, table = reader.text("ACA_LIFECYCLE_QUEUE", DEFAULT_QUEUE), reader.text("ACA_STATUS_TABLE", DEFAULT_TABLE)
    return {"storage": reader.read(lambda s: StorageConfig.from_app_settings(s, CONNECTION, queue, table), None)}


def _sealing(reader: SettingsReader, *, keys_needed: bool) -> dict[str, Any]:
    """The keys shared with the hub (the first one seals), the functions' own keys for their follow-ups
    (the hub must not hold them), and how long a sealed message stays valid."""

    def keys(name: str, what: str) -> Any:
        def read(settings: Mapping[str, str]) -> tuple[str, ...]:
            raw = text(settings, name)
            if not raw:
                if keys_needed:
                    raise MissingSetting(name, what)
                return ()
            parsed = tuple(parse_keys(raw))
            try:
                Sealer(parsed)
            except ValueError as e:
                raise InvalidSetting(f"{name}: {e}") from None
            return parsed

        return read

    sealing = reader.read(keys("ACA_SEALING_KEYS", "Fernet keys shared with the hub"), ())
    follow_up = reader.read(keys("ACA_FOLLOWUP_KEYS", "Fernet keys of the functions' own follow-up messages, "
                                 "which the hub must not hold"), ())
    if set(sealing) & set(follow_up):
        reader.problem("app settings ACA_FOLLOWUP_KEYS and ACA_SEALING_KEYS must not share a key: whoever holds "
                       "the hub's keys could then forge the functions' follow-ups")
    return {"sealing_keys": sealing, "followup_keys": follow_up,
            "seal_max_age": reader.read(read_seal_max_age, DEFAULT_MAX_AGE)}


def _arm_target(reader: SettingsReader) -> dict[str, Any]:
    """Where user apps go: subscription, resource group, environments, region, workload profile, registry."""
    subscription_id = reader.required("ACA_SUBSCRIPTION_ID", "subscription of the user apps")
    resource_group = reader.read(read_resource_group, "")
    environment_id = reader.required("ACA_ENVIRONMENT_ID", "resource id of the Container Apps environment")
    location = reader.required("ACA_LOCATION", "Azure region of the user apps")
    registry_server, registry_identity = reader.text("ACA_REGISTRY_SERVER"), reader.text("ACA_REGISTRY_IDENTITY")
    if bool(registry_server) != bool(registry_identity):
        reader.problem("app settings ACA_REGISTRY_SERVER and ACA_REGISTRY_IDENTITY must be set together")
    return {
        "subscription_id": subscription_id,
        "resource_group": resource_group,
        "environment_id": environment_id,
        "environments": read_environments(reader.text("ACA_ENVIRONMENTS"), environment_id, reader.problems),
        "location": location,
        "workload_profile": reader.text("ACA_WORKLOAD_PROFILE"),
        "registry_server": registry_server,
        "registry_identity": registry_identity,
    }


def _arm_access(reader: SettingsReader) -> dict[str, Any]:
    """How ARM is reached: the functions' identity, or another endpoint (the emulator) with its CA and token."""
    endpoint = reader.text("ACA_ARM_ENDPOINT").rstrip("/")
    if endpoint and not endpoint.startswith("https://"):
        reader.problem("app setting ACA_ARM_ENDPOINT must be an https:// URL (bearer tokens need TLS)")
    token = reader.text("ACA_ARM_TOKEN")
    if token and not endpoint:
        reader.problem("app setting ACA_ARM_TOKEN is for the emulator only: it needs ACA_ARM_ENDPOINT")
    ca_bundle = reader.text("ACA_ARM_CA_BUNDLE")
    if ca_bundle and not Path(ca_bundle).is_file():
        reader.problem(f"app setting ACA_ARM_CA_BUNDLE names a file that does not exist: {ca_bundle}")
    return {"client_id": reader.text("AZURE_CLIENT_ID"), "arm_endpoint": endpoint, "arm_ca_bundle": ca_bundle,
            "arm_token": token}


def _policy(reader: SettingsReader) -> dict[str, Any]:
    """What a request may ask for: allowed images, most cpu and memory."""

    def allowed_images(settings: Mapping[str, str]) -> tuple[str, ...]:
        images = items(settings, "ACA_ALLOWED_IMAGES")
        if not images:
            raise MissingSetting("ACA_ALLOWED_IMAGES", "glob patterns of allowed images")
        return images

    def max_memory_gi(settings: Mapping[str, str]) -> float:
        raw = text(settings, "ACA_MAX_MEMORY")
        try:
            return parse_memory_gi(raw) if raw else 8.0
        except ValueError as e:
            raise InvalidSetting(f"ACA_MAX_MEMORY: {e}") from None

    def allowed_profiles(settings: Mapping[str, str]) -> tuple[str, ...]:
        # default: the one profile servers run on (dedicated and GPU profiles bill per node)
        return items(settings, "ACA_ALLOWED_WORKLOAD_PROFILES") or (text(settings, "ACA_WORKLOAD_PROFILE")
                                                                    or "Consumption",)

    return {
        "allowed_images": reader.read(allowed_images, ()),
        "max_cpu": reader.number("ACA_MAX_CPU", 4.0, positive=True),
        "max_memory_gi": reader.read(max_memory_gi, 8.0),
        "allowed_workload_profiles": reader.read(allowed_profiles, ("Consumption",)),
        # one user must not take a class's pool (named servers): 0 lifts a limit
        "max_servers_per_user": int(reader.number("ACA_MAX_SERVERS_PER_USER", DEFAULT_MAX_SERVERS_PER_USER)),
        "max_cores_per_user": reader.number("ACA_MAX_CORES_PER_USER", DEFAULT_MAX_CORES_PER_USER),
    }


def _homes(reader: SettingsReader) -> dict[str, Any]:
    """Users' home folders: the environment storage, the Azure Files share behind it, where and how it is
    mounted, and whether deleting a user removes their folder."""
    storage_name = reader.text("ACA_HOME_STORAGE_NAME")
    url, share = reader.text("ACA_HOME_FILES_ACCOUNT_URL"), reader.text("ACA_HOME_SHARE_NAME")
    if storage_name and not (url and share):
        # the functions make each folder and record its owner before a server may mount it
        reader.problem("app settings ACA_HOME_FILES_ACCOUNT_URL and ACA_HOME_SHARE_NAME are required with "
                       "ACA_HOME_STORAGE_NAME (the share behind the home storage)")
    if (url or share) and not storage_name:
        reader.problem("app setting ACA_HOME_STORAGE_NAME is required when ACA_HOME_FILES_ACCOUNT_URL is set")
    if url and not url.startswith("https://"):
        reader.problem("app setting ACA_HOME_FILES_ACCOUNT_URL must be an https:// URL (bearer tokens need TLS)")
    mount_path = reader.text("ACA_HOME_MOUNT_PATH", HOME_MOUNT_PATH)
    if not mount_path.startswith("/") or mount_path == "/" or ".." in mount_path.split("/") or ":" in mount_path:
        reader.problem(f"app setting ACA_HOME_MOUNT_PATH must be an absolute folder path, not {mount_path!r}")
    options = reader.text("ACA_HOME_MOUNT_OPTIONS", HOME_MOUNT_OPTIONS)
    if any(c in options for c in "\n\r\x00"):
        reader.problem("app setting ACA_HOME_MOUNT_OPTIONS contains control characters")
    if reader.flag("ACA_HOME_DELETE_ON_DELETE", False) and reader.flag("ACA_CULL_USERS", False):
        reader.problem(CULL_USERS_DELETES_HOMES)
    token, ca_bundle = reader.text("ACA_HOME_FILES_TOKEN"), reader.text("ACA_HOME_FILES_CA_BUNDLE")
    if token and not url:
        reader.problem("app setting ACA_HOME_FILES_TOKEN is for the emulator only: it needs ACA_HOME_FILES_ACCOUNT_URL")
    if ca_bundle and not Path(ca_bundle).is_file():
        reader.problem(f"app setting ACA_HOME_FILES_CA_BUNDLE names a file that does not exist: {ca_bundle}")
    return {
        "home_storage_name": storage_name,
        "home_files_account_url": url,
        "home_share_name": share,
        "home_mount_path": mount_path.rstrip("/"),
        "home_mount_options": options,
        "home_files_token": token,
        "home_files_ca_bundle": ca_bundle,
        "home_delete_on_delete": reader.flag("ACA_HOME_DELETE_ON_DELETE", False),
    }


def _warm_pool(reader: SettingsReader) -> dict[str, Any]:
    """The warm pool's profiles (``ACA_WARM_POOL``): servers kept ready for a click; they need the home share."""
    from .pool_profiles import parse_pool

    try:
        pool = parse_pool(reader.text("ACA_WARM_POOL"))
    except ValueError as e:
        reader.problem(f"app setting ACA_WARM_POOL {e}")
        pool = ()
    if pool and not reader.text("ACA_HOME_FILES_ACCOUNT_URL"):
        reader.problem("app setting ACA_WARM_POOL needs the home share (ACA_HOME_STORAGE_NAME, "
                       "ACA_HOME_FILES_ACCOUNT_URL): a warm server's home arrives by a folder rename")
    return {"warm_pool": pool}


def _timing(reader: SettingsReader) -> dict[str, Any]:
    """What a stop does to the app, how often a pending ARM operation is looked at, and when waiting ends."""
    return {
        "stop_mode": reader.read(read_stop_mode, "delete"),
        "arm_poll_interval": reader.number("ACA_ARM_POLL_INTERVAL", 1.0, positive=True),
        "spawn_deadline": reader.number("ACA_SPAWN_DEADLINE", 480.0, positive=True),
    }


@dataclass(frozen=True)
class Settings:
    """Everything the lifecycle handler is configured with."""

    storage: StorageConfig
    hub_id: str
    sealing_keys: tuple[str, ...] = field(repr=False)
    subscription_id: str
    resource_group: str
    environment_id: str
    location: str
    allowed_images: tuple[str, ...]
    seal_max_age: float = DEFAULT_MAX_AGE
    # the functions' own keys: their follow-ups are sealed with these, which the hub's identity cannot read
    followup_keys: tuple[str, ...] = field(default=(), repr=False)
    max_cpu: float = 4.0
    max_memory_gi: float = 8.0
    allowed_workload_profiles: tuple[str, ...] = ("Consumption",)
    max_servers_per_user: int = 0  # 0: no limit (Settings.from_environ defaults to DEFAULT_MAX_SERVERS_PER_USER)
    max_cores_per_user: float = 0.0
    stop_mode: str = "delete"
    workload_profile: str = ""
    registry_server: str = ""
    registry_identity: str = ""
    home_storage_name: str = ""
    home_files_account_url: str = ""
    home_share_name: str = ""
    home_mount_path: str = HOME_MOUNT_PATH
    home_mount_options: str = HOME_MOUNT_OPTIONS
    home_files_token: str = field(default="", repr=False)
    home_files_ca_bundle: str = ""
    home_delete_on_delete: bool = False
    client_id: str = ""
    arm_endpoint: str = ""
    arm_ca_bundle: str = ""
    arm_token: str = field(default="", repr=False)
    arm_poll_interval: float = 1.0
    # a start or stop that ARM has not finished this long after the hub asked fails (below start_timeout)
    spawn_deadline: float = 480.0
    # where servers are placed, with the budget of each (ACA_ENVIRONMENTS; default: ACA_ENVIRONMENT_ID alone)
    environments: tuple[EnvironmentBudget, ...] = ()
    warm_pool: tuple[Any, ...] = ()  # functions.warm_pool.PoolProfile, one per profile (ACA_WARM_POOL)

    @property
    def queue_name(self) -> str:
        return self.storage.queue_name

    @property
    def table_name(self) -> str:
        return self.storage.table_name

    @property
    def home_folders_configured(self) -> bool:
        return bool(self.home_storage_name and self.home_files_account_url and self.home_share_name)

    def sealer(self) -> Sealer:
        """The :class:`Sealer` of the sealing keys and maximum age (ValueError without keys, which the timers allow)."""
        return Sealer(self.sealing_keys, max_age=self.seal_max_age)

    def followup_sealer(self) -> Sealer:
        """The :class:`Sealer` of the functions' own follow-up keys (ValueError without keys)."""
        return Sealer(self.followup_keys, max_age=self.seal_max_age)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, *, sealing: bool = True) -> Settings:
        """Read and validate the app settings; raises :class:`SettingsError` naming what is wrong.

        ``sealing=False`` is for the timers, which open no request: the sealing keys may then be
        missing (``sealing_keys`` is empty), though keys that are given must be valid.
        """
        reader = SettingsReader(os.environ if environ is None else environ)
        fields = {
            **_storage(reader),
            "hub_id": reader.read(read_hub_id, ""),
            **_sealing(reader, keys_needed=sealing),
            **_arm_target(reader),
            **_arm_access(reader),
            **_policy(reader),
            **_homes(reader),
            **_warm_pool(reader),
            **_timing(reader),
        }
        if reader.problems:
            raise SettingsError("the functions are not configured: " + "; ".join(reader.problems))
        return cls(**fields)
