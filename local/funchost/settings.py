"""App settings for the functions dev host: ``local.settings.json``, ``%NAME%`` expressions, connections.

Settings come from three places, later ones winning:

1. the ``Values`` of a ``local.settings.json`` file, but only for names the process environment
   does not already define (Core Tools skips those too, so an exported variable beats the file);
2. the process environment;
3. a mapping passed in explicitly (what tests and the local stack use).

The merged settings are put into ``os.environ`` while the host runs, because function code reads
its configuration from the environment exactly as it does on Azure.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

DEFAULT_CONNECTION = "AzureWebJobsStorage"
DEV_STORAGE_SHORTCUT = "usedevelopmentstorage=true"

_EXPRESSION = re.compile(r"%([^%\s]+)%")


class SettingsError(ValueError):
    """A settings file, binding expression or connection that cannot be resolved."""


def read_local_settings(path: str | Path) -> dict[str, str]:
    """The ``Values`` of a ``local.settings.json`` file as strings."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object with 'Values'")
    if data.get("IsEncrypted"):
        raise SettingsError(f"{path} is encrypted; decrypt it with `func settings decrypt` first")
    values = data.get("Values") or {}
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: 'Values' must be an object")
    # The host treats every value as a string (numbers and booleans included).
    return {str(k): _as_setting(v) for k, v in values.items()}


def _as_setting(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def merge_settings(
    file_values: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    explicit: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The settings functions see: file values under the environment, explicit values over both."""
    environ = os.environ if environ is None else environ
    merged = {k: v for k, v in (file_values or {}).items() if k not in environ}
    merged.update(environ)
    merged.update({k: _as_setting(v) for k, v in (explicit or {}).items()})
    return merged


def resolve_expression(text: str, settings: Mapping[str, str]) -> str:
    """Replace every ``%NAME%`` in ``text`` with the setting ``NAME`` (as the host does for triggers)."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise SettingsError(f"'%{name}%' does not resolve to a value (no app setting {name!r})")
        return settings[name]

    return _EXPRESSION.sub(lookup, text)


def resolve_connection(
    connection: str | None,
    settings: Mapping[str, str],
    dev_storage_connection_string: str | None = None,
) -> tuple[str, str]:
    """The (setting name, connection string) a storage binding's ``connection`` refers to.

    An empty ``connection`` means ``AzureWebJobsStorage``. Like the host, a name ``X`` is looked
    up as ``X`` and then as ``AzureWebJobsX``. ``UseDevelopmentStorage=true`` is replaced by
    ``dev_storage_connection_string`` when one is given (Azurite on non-default ports); without
    one it is passed on, and the storage SDK maps it to Azurite's default ports.
    """
    name = (connection or "").strip() or DEFAULT_CONNECTION
    candidates = [name] if name.startswith("AzureWebJobs") else [name, f"AzureWebJobs{name}"]
    for candidate in candidates:
        value = settings.get(candidate, "").strip()
        if value:
            if _is_dev_storage(value) and dev_storage_connection_string:
                return candidate, dev_storage_connection_string
            return candidate, value
    if any(key.startswith(f"{name}__") for key in settings):
        raise SettingsError(
            f"connection {name!r} is identity-based ({name}__...); the dev host needs a connection string"
        )
    raise SettingsError(f"connection {name!r}: no app setting {' or '.join(map(repr, candidates))} with a value")


def _is_dev_storage(value: str) -> bool:
    return value.replace(" ", "").rstrip(";").lower() == DEV_STORAGE_SHORTCUT


class EnvironmentPatch:
    """Puts settings into ``os.environ`` and puts the previous values back on ``restore()``."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self._saved: dict[str, str | None] | None = None

    def apply(self) -> None:
        if self._saved is not None:
            return
        self._saved = {k: os.environ.get(k) for k in self._values}
        os.environ.update(self._values)

    def restore(self) -> None:
        if self._saved is None:
            return
        for key, old in self._saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        self._saved = None
