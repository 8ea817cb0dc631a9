"""Server profiles: the admin's menu of images and sizes, the form, and checking what users chose.

A profile is a dict in ``AcaSpawner.profile_list`` (the shape KubeSpawner
users know)::

    {"display_name": "Large", "slug": "large", "description": "4 cores, 8 GiB",
     "default": False, "overrides": {"cpu": 4, "memory": "8Gi"}}

Only ``image``, ``cpu``, ``memory`` and ``workload_profile`` may be
overridden. Users only ever pick a slug: whatever else arrives in their
options (from the form or the REST API) is refused, so nobody can run an
image the admin did not list.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .spec import validate_cpu, validate_memory

ALLOWED_OVERRIDES = ("image", "cpu", "memory", "workload_profile")
#: the user option (and form field) that names the chosen profile
OPTION = "profile"
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62})$")


class ProfileError(ValueError):
    """A user's choice that does not match the configured profiles."""


@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    description: str = ""
    default: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


def _check_overrides(slug: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(ALLOWED_OVERRIDES))
    if unknown:
        raise ValueError(
            f"profile {slug!r} overrides {', '.join(unknown)}; only {', '.join(ALLOWED_OVERRIDES)} may be overridden"
        )
    checked = dict(overrides)
    try:
        if "image" in checked and (not isinstance(checked["image"], str) or not checked["image"].strip()):
            raise ValueError(f"image must be a non-empty string, not {checked['image']!r}")
        if "cpu" in checked:
            checked["cpu"] = validate_cpu(checked["cpu"])
        if "memory" in checked:
            validate_memory(checked["memory"])
        if "workload_profile" in checked and not isinstance(checked["workload_profile"], str):
            raise ValueError("workload_profile must be a string")
    except ValueError as e:
        raise ValueError(f"profile {slug!r}: {e}") from None
    return checked


def parse_profiles(profile_list: Sequence[Mapping[str, Any]]) -> list[Profile]:
    """Check the admin's ``profile_list``; a ``ValueError`` names the first mistake."""
    profiles: list[Profile] = []
    for index, entry in enumerate(profile_list):
        if not isinstance(entry, Mapping):
            raise ValueError(f"profile_list[{index}] must be a dict, not {type(entry).__name__}")
        unknown = sorted(set(entry) - {"display_name", "slug", "description", "default", "overrides"})
        if unknown:
            raise ValueError(f"profile_list[{index}] has unknown keys: {', '.join(unknown)}")
        display_name = str(entry.get("display_name") or "").strip()
        slug = str(entry.get("slug") or "").strip()
        if not display_name or not slug:
            raise ValueError(f"profile_list[{index}] needs a display_name and a slug")
        if not _SLUG.match(slug):
            raise ValueError(f"profile slug {slug!r} must be lower-case letters, digits, '-' or '_'")
        if any(p.slug == slug for p in profiles):
            raise ValueError(f"profile slug {slug!r} is used twice")
        overrides = entry.get("overrides") or {}
        if not isinstance(overrides, Mapping):
            raise ValueError(f"profile {slug!r}: overrides must be a dict")
        profiles.append(
            Profile(
                slug=slug,
                display_name=display_name,
                description=str(entry.get("description") or ""),
                default=bool(entry.get("default", False)),
                overrides=_check_overrides(slug, overrides),
            )
        )
    if sum(p.default for p in profiles) > 1:
        raise ValueError("only one profile may be the default")
    return profiles


def default_profile(profiles: Sequence[Profile]) -> Profile | None:
    """The profile marked ``default``, else the first one, else ``None``."""
    for profile in profiles:
        if profile.default:
            return profile
    return profiles[0] if profiles else None


def render_form(profiles: Sequence[Profile], selected: str = "") -> str:
    """The options form: one radio button per profile (everything escaped)."""
    if not profiles:
        return ""
    chosen = selected if any(p.slug == selected for p in profiles) else default_profile(profiles).slug
    items = []
    for profile in profiles:
        slug = html.escape(profile.slug, quote=True)
        checked = " checked" if profile.slug == chosen else ""
        description = (
            f'<p class="text-muted small">{html.escape(profile.description)}</p>' if profile.description else ""
        )
        items.append(
            '<div class="form-check">'
            f'<input class="form-check-input" type="radio" name="{OPTION}" id="profile-{slug}" value="{slug}"{checked}>'
            f'<label class="form-check-label" for="profile-{slug}"><strong>{html.escape(profile.display_name)}</strong>'
            f"</label>{description}</div>"
        )
    return '<fieldset class="aca-profiles"><legend>Server profile</legend>' + "".join(items) + "</fieldset>"


def options_from_form(form_data: Mapping[str, Sequence[str]], profiles: Sequence[Profile]) -> dict[str, str]:
    """``user_options`` from the submitted form: only the chosen slug, checked."""
    # fields starting with "_" belong to the page itself (e.g. an xsrf token), not to the server
    extra = sorted(k for k in form_data if k != OPTION and not k.startswith("_"))
    if extra:
        raise ProfileError(f"unexpected server options: {', '.join(extra)}")
    values = form_data.get(OPTION) or []
    if len(values) > 1:
        raise ProfileError("choose exactly one server profile")
    options = {OPTION: values[0]} if values else {}
    resolve(profiles, options)  # refuse unknown slugs on the form page already
    return options


def resolve(
    profiles: Sequence[Profile],
    user_options: Mapping[str, Any] | None,
    allowed_extra: Collection[str] | None = (),
) -> tuple[Profile | None, dict[str, Any]]:
    """The chosen profile and its overrides for ``user_options``; :class:`ProfileError` if invalid.

    Options are checked again here (not only on the form) because the REST API
    accepts ``user_options`` without going through the form. ``allowed_extra``
    names further options the admin handles (JupyterHub's
    ``apply_user_options``); ``None`` allows any.
    """
    options = dict(user_options or {})
    extra = [] if allowed_extra is None else sorted(set(options) - {OPTION} - set(allowed_extra))
    if extra:
        raise ProfileError(f"unsupported server options: {', '.join(extra)} (only '{OPTION}' may be chosen)")
    slug = options.get(OPTION)
    if not profiles:
        if slug:
            raise ProfileError("this hub offers no server profiles to choose from")
        return None, {}
    if slug is None or slug == "":
        profile = default_profile(profiles)
        return profile, dict(profile.overrides)
    if not isinstance(slug, str):
        raise ProfileError("the server profile must be given by its name")
    for profile in profiles:
        if profile.slug == slug:
            return profile, dict(profile.overrides)
    raise ProfileError(f"unknown server profile {slug[:64]!r}; choose one of: {', '.join(p.slug for p in profiles)}")
