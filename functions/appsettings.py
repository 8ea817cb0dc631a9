"""Reading app settings one value at a time: text, numbers, flags, memory sizes, .NET TimeSpans.

Every parser here names the setting in its error (``ACA_CULL_TIMEOUT must be at
least 1, not '0'``) and raises :class:`InvalidSetting`, a ``ValueError``.
:class:`SettingsReader` calls the same parsers but collects the errors, for a
configuration that reports everything that is wrong at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Gi|Mi)\s*$")
# .NET's TimeSpan text: [-][d.]hh:mm[:ss[.fffffff]]
_TIMESPAN = re.compile(r"^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")


class InvalidSetting(ValueError):
    """An app setting whose value cannot be used; the message starts with the setting's name."""


class MissingSetting(InvalidSetting):
    """A required app setting that is unset or blank."""

    def __init__(self, name: str, meaning: str):
        super().__init__(f"missing app setting {name} ({meaning})")
        self.name = name
        self.meaning = meaning


def text(settings: Mapping[str, str], name: str, default: str = "") -> str:
    """The setting without surrounding blanks; unset or blank means ``default``."""
    return (settings.get(name) or "").strip() or default


def required(settings: Mapping[str, str], name: str, meaning: str) -> str:
    """The setting's text; raises :class:`MissingSetting` (which says what it is for) when unset or blank."""
    value = text(settings, name)
    if not value:
        raise MissingSetting(name, meaning)
    return value


def items(settings: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma separated list, without blanks or empty items."""
    return tuple(item.strip() for item in text(settings, name).split(",") if item.strip())


def number(
    settings: Mapping[str, str], name: str, default: float, *, minimum: float = 0, positive: bool = False
) -> float:
    """A number ``>= minimum`` (``> 0`` with ``positive``); unset or blank means ``default``."""
    raw = text(settings, name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidSetting(f"{name} must be a number, not {raw!r}") from None
    if positive and value <= 0:
        raise InvalidSetting(f"{name} must be positive, not {raw!r}")
    if value < minimum:
        raise InvalidSetting(f"{name} must be at least {minimum:g}, not {raw!r}")
    return value


def count(settings: Mapping[str, str], name: str, default: int, *, minimum: float = 1) -> int:
    """A whole number ``>= minimum`` (a fraction is cut off); unset or blank means ``default``."""
    return int(number(settings, name, default, minimum=minimum))


def flag(settings: Mapping[str, str], name: str, default: bool) -> bool:
    """``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off`` (any case); unset or blank means ``default``."""
    raw = text(settings, name)
    if not raw:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise InvalidSetting(f"{name} must be true or false, not {raw!r}")


def parse_memory_gi(value: str) -> float:
    """``"8Gi"`` → 8.0, ``"512Mi"`` → 0.5; raises ValueError for anything else."""
    match = _MEMORY.match(str(value))
    if not match:
        raise ValueError(f"memory must look like '2Gi' or '512Mi', not {value!r}")
    amount = float(match.group(1))
    return amount / 1024 if match.group(2) == "Mi" else amount


def timespan_seconds(value: str) -> float:
    """Seconds in a .NET TimeSpan text (``[d.]hh:mm[:ss[.fffffff]]``, as host.json writes durations).

    Raises ValueError for text the Functions host would not accept.
    """
    match = _TIMESPAN.match(str(value).strip())
    if not match:
        raise ValueError(f"not a timespan: {value!r}")
    sign, days, hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        raise ValueError(f"timespan out of range: {value!r}")
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    total += float(f"0.{fraction}") if fraction else 0.0
    return -total if sign else total


class SettingsReader:
    """The parsers above over one mapping, collecting their errors instead of raising the first.

    Each problem is kept as the line an operator reads: ``missing app setting
    NAME (what it is for)``, ``app setting NAME must be ...``, or the text of a
    check that involves several settings (:meth:`problem`).
    """

    def __init__(self, settings: Mapping[str, str]):
        self.settings = settings
        self.problems: list[str] = []
        self.missing: list[str] = []  # the names of the missing required settings, in the order read

    def read(self, parse: Callable[[Mapping[str, str]], T], fallback: T) -> T:
        """``parse(settings)``, or ``fallback`` with its error recorded."""
        try:
            return parse(self.settings)
        except MissingSetting as e:
            self.missing.append(e.name)
            self.problems.append(str(e))
        except InvalidSetting as e:
            self.problems.append(f"app setting {e}")
        except ValueError as e:  # a check of several settings words its own message
            self.problems.append(str(e))
        return fallback

    def problem(self, message: str) -> None:
        """Record a problem that no single parser can see (settings that must be set together)."""
        self.problems.append(message)

    def text(self, name: str, default: str = "") -> str:
        return text(self.settings, name, default)

    def required(self, name: str, meaning: str) -> str:
        return self.read(lambda s: required(s, name, meaning), "")

    def number(self, name: str, default: float, *, minimum: float = 0, positive: bool = False) -> float:
        return self.read(lambda s: number(s, name, default, minimum=minimum, positive=positive), default)

    def flag(self, name: str, default: bool) -> bool:
        return self.read(lambda s: flag(s, name, default), default)
