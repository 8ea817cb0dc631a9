"""Server profiles: the admin's menu of images and sizes, and checking what users chose.

A profile is a dict in ``AcaSpawner.profile_list``, in AcaSpawner's shape::

    {"display_name": "Large", "slug": "large", "description": "4 cores, 8 GiB",
     "default": False, "overrides": {"cpu": 4, "memory": "8Gi"}}

or in KubeSpawner's (zero-to-jupyterhub's ``singleuser.profileList``), which
works unchanged: ``slug`` may be left out (it is made from ``display_name``
as KubeSpawner makes it), ``kubespawner_override`` stands for ``overrides``,
and ``profile_options`` offer ``choices`` and an ``unlisted_choice`` (a value
the user types, put into its ``kubespawner_override`` at ``{value}``). The
list may also be a dict of profiles (its values, sorted by key) or a
callable (sync or async) that returns either, called with the spawner.
Reading the list is :mod:`acaspawner.profile_config`'s job, what profiles may
override :mod:`acaspawner.overrides`'; this module holds the profiles and
checks choices against them.

Users only pick: a profile by its slug and, for each of its options, a listed
choice or (where enabled) a value matching ``validation_regex``. Options
arrive in KubeSpawner's ``user_options`` shape (``{"profile": slug,
"image": "minimal"}`` or ``{"image--unlisted-choice": "…"}``) from the form
or the REST API, and everything else is refused.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import overrides as ov

#: the user option (and form field) that names the chosen profile
OPTION = "profile"
#: suffix of the user option that carries an option's unlisted (typed) value
UNLISTED_SUFFIX = "--unlisted-choice"
_UNLISTED_TEXT = re.compile(r"^[^\x00-\x1f\x7f]{1,512}$")


class ProfileError(ValueError):
    """A user's choice that does not match the configured profiles."""


@dataclass(frozen=True)
class Choice:
    key: str
    display_name: str
    default: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unlisted:
    """An option's free-form value: what the user types goes into ``overrides`` at ``{value}``."""

    display_name: str
    display_name_in_choices: str = "Other..."
    validation_regex: str = ""
    validation_message: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    key: str
    display_name: str
    choices: tuple[Choice, ...] = ()
    unlisted: Unlisted | None = None  # only when enabled

    @property
    def default_choice(self) -> Choice | None:
        return next((c for c in self.choices if c.default), self.choices[0] if self.choices else None)


@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    description: str = ""
    default: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    options: tuple[Option, ...] = ()


def default_profile(profiles: Sequence[Profile]) -> Profile | None:
    """The profile marked ``default``, else the first one, else ``None``."""
    for profile in profiles:
        if profile.default:
            return profile
    return profiles[0] if profiles else None


def option_names(profile: Profile) -> set[str]:
    """The ``user_options`` keys ``profile``'s options take."""
    return {o.key for o in profile.options} | {o.key + UNLISTED_SUFFIX for o in profile.options}


def _chosen_layer(profile: Profile, option: Option, options: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides of what the user chose for ``option`` (or of its default choice)."""
    where = f"option {option.key!r} of profile {profile.slug!r}"
    typed, picked = options.get(option.key + UNLISTED_SUFFIX), options.get(option.key)
    if typed not in (None, ""):
        if option.unlisted is None:
            raise ProfileError(f"{where} only takes one of its choices")
        if not isinstance(typed, str) or not _UNLISTED_TEXT.match(typed):
            raise ProfileError(f"{where}: the value must be a line of text")
        regex = option.unlisted.validation_regex
        if regex and not re.match(regex, typed):  # re.match, as KubeSpawner checks it
            hint = option.unlisted.validation_message or f"it must match {regex}"
            raise ProfileError(f"{where}: {typed[:80]!r} is not allowed ({hint})")
        layer = ov.substitute_layer(option.unlisted.overrides, typed)
        try:
            ov.check(layer, where, partial=True)
        except ValueError as e:
            raise ProfileError(str(e)) from None
        return layer
    if picked not in (None, ""):
        for choice in option.choices:
            if choice.key == picked:
                return choice.overrides
        listed = ", ".join(c.key for c in option.choices) or "(none: type a value)"
        raise ProfileError(f"unknown choice {str(picked)[:64]!r} for {where}; choose one of: {listed}")
    if option.default_choice is None:
        raise ProfileError(f"{where} needs a value: type one ({option.unlisted.display_name})")
    return option.default_choice.overrides


def resolve(
    profiles: Sequence[Profile],
    user_options: Mapping[str, Any] | None,
    allowed_extra: Collection[str] | None = (),
) -> tuple[Profile | None, dict[str, Any]]:
    """The chosen profile and its overrides (profile, then each option) for ``user_options``; :class:`ProfileError` if invalid.

    Options are checked again here (not only on the form) because the REST API
    accepts ``user_options`` without going through the form. ``allowed_extra``
    names further options the admin handles (JupyterHub's
    ``apply_user_options``); ``None`` allows any.
    """
    options = dict(user_options or {})
    slug = options.get(OPTION)
    if not profiles:
        if slug:
            raise ProfileError("this hub offers no server profiles to choose from")
        extra = [] if allowed_extra is None else sorted(set(options) - {OPTION} - set(allowed_extra))
        if extra:
            raise ProfileError(f"unsupported server options: {', '.join(extra)}")
        return None, {}
    if slug is None or slug == "":
        profile = default_profile(profiles)
    elif not isinstance(slug, str):
        raise ProfileError("the server profile must be given by its name")
    else:
        profile = next((p for p in profiles if p.slug == slug), None)
        if profile is None:
            raise ProfileError(
                f"unknown server profile {slug[:64]!r}; choose one of: {', '.join(p.slug for p in profiles)}"
            )
    takes = option_names(profile)
    extra = [] if allowed_extra is None else sorted(set(options) - {OPTION} - takes - set(allowed_extra))
    if extra:
        raise ProfileError(
            f"unsupported server options: {', '.join(map(str, extra))} "
            f"(profile {profile.slug!r} takes: {', '.join([OPTION, *sorted(takes)])})"
        )
    layers = [profile.overrides] + [_chosen_layer(profile, option, options) for option in profile.options]
    return profile, ov.merge(layers)
