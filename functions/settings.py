"""The functions' configuration, read from app settings (see docs/settings.md).

Settings are read lazily, at the first invocation, never at import: the
Functions worker indexes ``function_app.py`` before app settings exist, and a
missing setting must not break indexing. A missing or malformed setting
raises :class:`SettingsError` naming every offending setting at once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from acaspawner.sealing import DEFAULT_MAX_AGE, Sealer
from acaspawner.storage_config import DEFAULT_QUEUE, DEFAULT_TABLE, StorageConfig

#: the connection name of the queue trigger (``connection="AcaStorage"``)
CONNECTION = "AcaStorage"
STOP_MODES = ("delete", "stop")

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
DEFAULT_MAX_DEQUEUE_COUNT = 5
DEFAULT_FUNCTION_TIMEOUT = 300.0  # the host's own default on Consumption

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Gi|Mi)\s*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A required app setting is missing or a setting has an invalid value."""


def parse_memory_gi(value: str) -> float:
    """``"8Gi"`` → 8.0, ``"512Mi"`` → 0.5; raises ValueError for anything else."""
    match = _MEMORY.match(str(value))
    if not match:
        raise ValueError(f"memory must look like '2Gi' or '512Mi', not {value!r}")
    amount = float(match.group(1))
    return amount / 1024 if match.group(2) == "Mi" else amount


@dataclass(frozen=True)
class HostLimits:
    """What the functions need to know from host.json."""

    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT
    function_timeout: float = DEFAULT_FUNCTION_TIMEOUT


def _timespan_seconds(text: str) -> float:
    """``"00:10:00"`` (or ``"1.00:00:00"``) → seconds."""
    days = 0
    if "." in text.split(":")[0]:
        day_part, text = text.split(".", 1)
        days = int(day_part)
    hours, minutes, seconds = text.split(":")
    return days * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


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
        function_timeout=_timespan_seconds(timeout) if timeout and timeout != "-1" else DEFAULT_FUNCTION_TIMEOUT,
    )


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
    max_cpu: float = 4.0
    max_memory_gi: float = 8.0
    stop_mode: str = "delete"
    workload_profile: str = ""
    registry_server: str = ""
    registry_identity: str = ""
    home_storage_name: str = ""
    home_files_account_url: str = ""
    home_share_name: str = ""
    home_delete_on_delete: bool = False
    client_id: str = ""
    arm_endpoint: str = ""
    arm_ca_bundle: str = ""
    arm_token: str = field(default="", repr=False)
    arm_poll_interval: float = 1.0
    # a start or stop that ARM has not finished this long after the hub asked fails (below start_timeout)
    spawn_deadline: float = 480.0

    @property
    def queue_name(self) -> str:
        return self.storage.queue_name

    @property
    def table_name(self) -> str:
        return self.storage.table_name

    @property
    def home_folders_configured(self) -> bool:
        return bool(self.home_storage_name and self.home_files_account_url and self.home_share_name)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, *, sealing: bool = True) -> Settings:
        """Read and validate the app settings; raises :class:`SettingsError` naming what is wrong.

        ``sealing=False`` is for the timers, which open no request: the sealing keys may then be
        missing (``sealing_keys`` is empty), though keys that are given must be valid.
        """
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def get(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        def required(name: str, meaning: str) -> str:
            value = get(name)
            if not value:
                problems.append(f"missing app setting {name} ({meaning})")
            return value

        def number(name: str, default: float, positive: bool = True) -> float:
            raw = get(name)
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                problems.append(f"app setting {name} must be a number, not {raw!r}")
                return default
            if positive and value <= 0:
                problems.append(f"app setting {name} must be positive, not {raw!r}")
                return default
            return value

        def flag(name: str, default: bool) -> bool:
            raw = get(name).lower()
            if not raw:
                return default
            if raw in _TRUE:
                return True
            if raw in _FALSE:
                return False
            problems.append(f"app setting {name} must be true or false, not {raw!r}")
            return default

        storage = None
        try:
            storage = StorageConfig.from_app_settings(
                env, CONNECTION, get("ACA_LIFECYCLE_QUEUE", DEFAULT_QUEUE), get("ACA_STATUS_TABLE", DEFAULT_TABLE)
            )
        except ValueError as e:
            problems.append(str(e))

        hub_id = required("ACA_HUB_ID", "the hub these functions serve")
        keys = tuple(k for k in get("ACA_SEALING_KEYS").replace(",", " ").split() if k)
        if not keys:
            if sealing:
                problems.append("missing app setting ACA_SEALING_KEYS (Fernet keys shared with the hub)")
        else:
            try:
                Sealer(keys)
            except ValueError as e:
                problems.append(f"app setting ACA_SEALING_KEYS: {e}")
        subscription_id = required("ACA_SUBSCRIPTION_ID", "subscription of the user apps")
        resource_group = required("ACA_RESOURCE_GROUP", "resource group of the user apps")
        environment_id = required("ACA_ENVIRONMENT_ID", "resource id of the Container Apps environment")
        location = required("ACA_LOCATION", "Azure region of the user apps")
        images = tuple(p.strip() for p in get("ACA_ALLOWED_IMAGES").split(",") if p.strip())
        if not images:
            problems.append("missing app setting ACA_ALLOWED_IMAGES (glob patterns of allowed images)")

        max_memory_gi = 8.0
        raw_memory = get("ACA_MAX_MEMORY")
        if raw_memory:
            try:
                max_memory_gi = parse_memory_gi(raw_memory)
            except ValueError as e:
                problems.append(f"app setting ACA_MAX_MEMORY: {e}")

        stop_mode = get("ACA_STOP_MODE", "delete").lower()
        if stop_mode not in STOP_MODES:
            problems.append(f"app setting ACA_STOP_MODE must be one of {', '.join(STOP_MODES)}, not {stop_mode!r}")

        registry_server, registry_identity = get("ACA_REGISTRY_SERVER"), get("ACA_REGISTRY_IDENTITY")
        if bool(registry_server) != bool(registry_identity):
            problems.append("app settings ACA_REGISTRY_SERVER and ACA_REGISTRY_IDENTITY must be set together")

        home_url, home_share = get("ACA_HOME_FILES_ACCOUNT_URL"), get("ACA_HOME_SHARE_NAME")
        if bool(home_url) != bool(home_share):
            problems.append("app settings ACA_HOME_FILES_ACCOUNT_URL and ACA_HOME_SHARE_NAME must be set together")
        if home_url and not get("ACA_HOME_STORAGE_NAME"):
            problems.append("app setting ACA_HOME_STORAGE_NAME is required when ACA_HOME_FILES_ACCOUNT_URL is set")

        arm_endpoint = get("ACA_ARM_ENDPOINT").rstrip("/")
        if arm_endpoint and not arm_endpoint.startswith("https://"):
            problems.append("app setting ACA_ARM_ENDPOINT must be an https:// URL (bearer tokens need TLS)")
        if get("ACA_ARM_TOKEN") and not arm_endpoint:
            problems.append("app setting ACA_ARM_TOKEN is for the emulator only: it needs ACA_ARM_ENDPOINT")
        ca_bundle = get("ACA_ARM_CA_BUNDLE")
        if ca_bundle and not Path(ca_bundle).is_file():
            problems.append(f"app setting ACA_ARM_CA_BUNDLE names a file that does not exist: {ca_bundle}")

        values = dict(
            seal_max_age=number("ACA_SEAL_MAX_AGE", DEFAULT_MAX_AGE),
            max_cpu=number("ACA_MAX_CPU", 4.0),
            arm_poll_interval=number("ACA_ARM_POLL_INTERVAL", 1.0),
            spawn_deadline=number("ACA_SPAWN_DEADLINE", 480.0),
            home_delete_on_delete=flag("ACA_HOME_DELETE_ON_DELETE", False),
        )
        if problems:
            raise SettingsError("the functions are not configured: " + "; ".join(problems))
        assert storage is not None
        return cls(
            storage=storage,
            hub_id=hub_id,
            sealing_keys=keys,
            subscription_id=subscription_id,
            resource_group=resource_group,
            environment_id=environment_id,
            location=location,
            allowed_images=images,
            max_memory_gi=max_memory_gi,
            stop_mode=stop_mode,
            workload_profile=get("ACA_WORKLOAD_PROFILE"),
            registry_server=registry_server,
            registry_identity=registry_identity,
            home_storage_name=get("ACA_HOME_STORAGE_NAME"),
            home_files_account_url=home_url,
            home_share_name=home_share,
            client_id=get("AZURE_CLIENT_ID"),
            arm_endpoint=arm_endpoint,
            arm_ca_bundle=ca_bundle,
            arm_token=get("ACA_ARM_TOKEN"),
            **values,
        )
