"""The spawn page's options form for the profiles, and reading it back into ``user_options``.

Field names are KubeSpawner's, so a custom form written for KubeSpawner posts
what this module reads: ``profile`` (the slug, one radio button per profile),
``profile-option-<slug>--<option>`` (a select of the option's choices) and
``profile-option-<slug>--<option>--unlisted-choice`` (the typed value). The
select offers "Other..." (value ``unlisted-choice``) where an unlisted choice
is enabled; the form works without JavaScript: the typed value counts only
when "Other..." is selected, or when no select was posted (KubeSpawner's
script removes its name). Every text is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from .profiles import OPTION, UNLISTED_SUFFIX, Option, Profile, ProfileError, default_profile, resolve

#: value of the select's "Other..." entry, as in KubeSpawner's form
UNLISTED_VALUE = "unlisted-choice"


def field_name(profile: Profile, option: Option) -> str:
    """The form field of ``option``'s select within ``profile``."""
    return f"profile-option-{profile.slug}--{option.key}"


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _valid_saved(profiles: Sequence[Profile], user_options: Mapping[str, Any]) -> Mapping[str, Any]:
    """The last ``user_options`` if they still fit the profiles (they may be stale, or came from the API)."""
    try:
        resolve(profiles, user_options, None)
    except ProfileError:
        return {}
    return user_options


def _render_option(profile: Profile, option: Option, saved: Mapping[str, Any]) -> str:
    name = field_name(profile, option)
    typed = saved.get(option.key + UNLISTED_SUFFIX) or ""
    picked = saved.get(option.key) or (option.default_choice.key if option.default_choice else "")
    entries = [
        f'<option value="{_attr(c.key)}"{" selected" if c.key == picked and not typed else ""}>'
        f"{html.escape(c.display_name)}</option>"
        for c in option.choices
    ]
    other = ""
    if option.unlisted is not None:
        unlisted = option.unlisted
        chosen = " selected" if typed or not option.choices else ""
        entries.append(f'<option value="{UNLISTED_VALUE}"{chosen}>{html.escape(unlisted.display_name_in_choices)}</option>')
        pattern = f' pattern="{_attr(unlisted.validation_regex)}"' if unlisted.validation_regex else ""
        title = f' title="{_attr(unlisted.validation_message)}"' if unlisted.validation_message else ""
        other = (
            f'<label class="form-label small" for="{_attr(name + UNLISTED_SUFFIX)}">'
            f"{html.escape(unlisted.display_name)}</label>"
            f'<input class="form-control" type="text" name="{_attr(name + UNLISTED_SUFFIX)}" '
            f'id="{_attr(name + UNLISTED_SUFFIX)}" value="{_attr(str(typed))}"{pattern}{title}>'
        )
    return (
        '<div class="aca-profile-option ms-4 mb-2">'
        f'<label class="form-label" for="{_attr(name)}">{html.escape(option.display_name)}</label>'
        f'<select class="form-select" name="{_attr(name)}" id="{_attr(name)}">{"".join(entries)}</select>'
        f"{other}</div>"
    )


def render_form(profiles: Sequence[Profile], user_options: Mapping[str, Any] | None = None) -> str:
    """The options form: a radio button per profile, a select per profile option (last choices preselected)."""
    if not profiles:
        return ""
    saved = _valid_saved(profiles, user_options or {})
    chosen = saved.get(OPTION) or default_profile(profiles).slug
    items = []
    for profile in profiles:
        slug = _attr(profile.slug)
        checked = " checked" if profile.slug == chosen else ""
        description = (
            f'<p class="text-muted small">{html.escape(profile.description)}</p>' if profile.description else ""
        )
        mine = saved if profile.slug == chosen else {}
        options = "".join(_render_option(profile, option, mine) for option in profile.options)
        items.append(
            '<div class="form-check">'
            f'<input class="form-check-input" type="radio" name="{OPTION}" id="profile-{slug}" value="{slug}"{checked}>'
            f'<label class="form-check-label" for="profile-{slug}"><strong>{html.escape(profile.display_name)}</strong>'
            f"</label>{description}{options}</div>"
        )
    return '<fieldset class="aca-profiles"><legend>Server profile</legend>' + "".join(items) + "</fieldset>"


def _single(form_data: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = form_data.get(name) or []
    if len(values) > 1:
        raise ProfileError(f"choose exactly one value for {name}")
    return values[0] if values else None


def options_from_form(form_data: Mapping[str, Sequence[str]], profiles: Sequence[Profile]) -> dict[str, str]:
    """``user_options`` (KubeSpawner's shape) from the submitted form, checked against the profiles."""
    fields = {OPTION}
    for profile in profiles:
        for option in profile.options:
            fields |= {field_name(profile, option), field_name(profile, option) + UNLISTED_SUFFIX}
    # fields starting with "_" belong to the page itself (e.g. an xsrf token), not to the server
    extra = sorted(k for k in form_data if k not in fields and not k.startswith("_"))
    if extra:
        raise ProfileError(f"unexpected server options: {', '.join(extra)}")
    values = form_data.get(OPTION) or []
    if len(values) > 1:
        raise ProfileError("choose exactly one server profile")
    options: dict[str, str] = {OPTION: values[0]} if values else {}
    profile = next((p for p in profiles if values and p.slug == values[0]), None)
    for option in profile.options if profile else ():  # the browser posts every profile's selects: read the chosen one's
        picked = _single(form_data, field_name(profile, option))
        typed = _single(form_data, field_name(profile, option) + UNLISTED_SUFFIX)
        if picked == UNLISTED_VALUE or (picked is None and typed):
            if not typed:
                raise ProfileError(f"type a value for {option.display_name!r} or pick one of its choices")
            options[option.key + UNLISTED_SUFFIX] = typed.strip()
        elif picked:
            options[option.key] = picked
    resolve(profiles, options)  # refuse unknown slugs and choices on the form page already
    return options
