"""Reading the admin's ``profile_list`` into :class:`~acaspawner.profiles.Profile` objects, in either shape.

AcaSpawner's shape (``slug``, ``overrides``) and KubeSpawner's (no ``slug``,
``kubespawner_override``, ``profile_options`` with ``choices`` and
``unlisted_choice``) are both read here, and a dict of profiles is taken in
KubeSpawner's order (by key). Mistakes are a ``ValueError`` naming the first
one; keys that mean nothing on Container Apps are logged once and ignored.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from . import overrides as ov
from .profiles import UNLISTED_SUFFIX, Choice, Option, Profile, Unlisted

_SLUG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62})$")  # KubeSpawner allows any; form fields need no spaces
_OPTION_KEY = re.compile(r"^[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*$")  # no "--": it separates form field parts
_PROFILE_KEYS = {"display_name", "slug", "description", "default", "overrides", "kubespawner_override",
                 "profile_options"}

log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()  # (profile, key) already logged as ignored


def slugify(text: str) -> str:
    """A slug made from a display name: lower-case ASCII letters and digits joined by ``-`` (as KubeSpawner does)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:63].strip("-")


def _ignore(profile: str, keys: Sequence[str]) -> None:
    """Log, once per process, keys that mean nothing on Container Apps (never fatal)."""
    for key in keys:
        if (profile, key) not in _warned:
            _warned.add((profile, key))
            log.warning("profile_list: profile %r sets %s, which has no meaning on Azure Container Apps; "
                        "ignoring it", profile, key)


def _layer(slug: str, entry: Mapping[str, Any], path: str) -> dict[str, Any]:
    """``overrides`` (strict, AcaSpawner's shape) and ``kubespawner_override`` (lenient) of one entry, merged."""
    layers = []
    for name, strict in (("overrides", True), ("kubespawner_override", False)):
        if entry.get(name) is not None:
            layer, ignored = ov.normalise(entry[name], f"profile {slug!r} {path}{name}", strict=strict)
            _ignore(slug, [f"{path}{name}.{key}" for key in ignored])
            layers.append(layer)
    return ov.merge(layers)


def _text(value: Any, default: str = "") -> str:
    return default if value is None else str(value)


def _unlisted(slug: str, key: str, raw: Any) -> Unlisted | None:
    if raw is None or not isinstance(raw, Mapping):
        if raw is not None:
            raise ValueError(f"profile {slug!r} option {key!r}: unlisted_choice must be a dict")
        return None
    if not raw.get("enabled"):
        return None
    regex = _text(raw.get("validation_regex"))
    try:
        re.compile(regex)
    except re.error as e:
        raise ValueError(f"profile {slug!r} option {key!r}: validation_regex {regex!r} is invalid ({e})") from None
    known = {"enabled", "display_name", "display_name_in_choices", "validation_regex", "validation_message",
             "kubespawner_override", "overrides"}
    _ignore(slug, [f"profile_options.{key}.unlisted_choice.{k}" for k in raw if k not in known])
    return Unlisted(
        display_name=_text(raw.get("display_name"), "Other"),
        display_name_in_choices=_text(raw.get("display_name_in_choices"), "Other..."),
        validation_regex=regex,
        validation_message=_text(raw.get("validation_message")),
        overrides=_layer(slug, raw, f"profile_options.{key}.unlisted_choice."),
    )


def _option(slug: str, key: Any, raw: Any) -> Option:
    if not isinstance(key, str) or not _OPTION_KEY.match(key) or key.endswith(UNLISTED_SUFFIX):
        raise ValueError(f"profile {slug!r}: option name {key!r} must be letters, digits, '_', '.' or single '-'")
    if not isinstance(raw, Mapping):
        raise ValueError(f"profile {slug!r} option {key!r} must be a dict")
    _ignore(slug, [f"profile_options.{key}.{k}" for k in raw if k not in ("display_name", "choices", "unlisted_choice")])
    raw_choices = raw.get("choices") or {}
    if not isinstance(raw_choices, Mapping):
        raise ValueError(f"profile {slug!r} option {key!r}: choices must be a dict")
    choices = []
    for choice_key, choice in raw_choices.items():
        if not isinstance(choice_key, str) or not choice_key or choice_key == "unlisted-choice" or not isinstance(
            choice, Mapping
        ):
            raise ValueError(f"profile {slug!r} option {key!r}: choice {choice_key!r} must be a named dict")
        where = f"profile_options.{key}.choices.{choice_key}."
        _ignore(slug, [f"{where}{k}" for k in choice if k not in ("display_name", "default", "kubespawner_override",
                                                                  "overrides")])
        choices.append(Choice(choice_key, _text(choice.get("display_name"), choice_key), bool(choice.get("default")),
                              _layer(slug, choice, where)))
    unlisted = _unlisted(slug, key, raw.get("unlisted_choice"))
    if not choices and unlisted is None:
        raise ValueError(f"profile {slug!r} option {key!r} has neither choices nor an enabled unlisted_choice")
    return Option(key, _text(raw.get("display_name"), key), tuple(choices), unlisted)


def parse_profiles(profile_list: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[Profile]:
    """Check the admin's ``profile_list`` (a list, or a dict of profiles); a ``ValueError`` names the first mistake."""
    if isinstance(profile_list, Mapping):
        profile_list = [profile_list[k] for k in sorted(profile_list)]  # KubeSpawner's order for a dict
    profiles: list[Profile] = []
    for index, entry in enumerate(profile_list):
        if not isinstance(entry, Mapping):
            raise ValueError(f"profile_list[{index}] must be a dict, not {type(entry).__name__}")
        display_name = str(entry.get("display_name") or "").strip()
        if not display_name:
            raise ValueError(f"profile_list[{index}] needs a display_name")
        slug = str(entry.get("slug") or "").strip() or slugify(display_name) or f"profile-{index + 1}"
        if not _SLUG.match(slug):
            raise ValueError(f"profile slug {slug!r} must be letters, digits, '-', '_' or '.' (at most 63)")
        if any(p.slug == slug for p in profiles):
            raise ValueError(f"profile slug {slug!r} is used twice")
        _ignore(slug, sorted(str(k) for k in entry if k not in _PROFILE_KEYS))
        raw_options = entry.get("profile_options") or {}
        if not isinstance(raw_options, Mapping):
            raise ValueError(f"profile {slug!r}: profile_options must be a dict")
        profiles.append(
            Profile(
                slug=slug,
                display_name=display_name,
                description=_text(entry.get("description")),
                default=bool(entry.get("default", False)),
                overrides=_layer(slug, entry, ""),
                options=tuple(_option(slug, key, raw) for key, raw in raw_options.items()),
            )
        )
    if sum(p.default for p in profiles) > 1:
        raise ValueError("only one profile may be the default")
    return profiles
