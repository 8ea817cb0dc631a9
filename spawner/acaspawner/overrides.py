"""What a profile (or one of its options) may change about a server, in both shapes admins write.

AcaSpawner's own shape is ``overrides``; KubeSpawner's is
``kubespawner_override``. Both may set the keys in :data:`KEYS`, the ones
that mean something for a container app. A layer is normalised to those
keys:

* ``image_spec`` (KubeSpawner's old name) becomes ``image``;
* ACA's ``cpu`` / ``memory`` are an exact allocation, so they set both the
  limit and the guarantee of that resource (a later layer's ``cpu`` then
  replaces whatever bounds an earlier layer set);
* every other KubeSpawner key (``node_selector``, ``tolerations``,
  ``extra_resource_limits``, ``lifecycle_hooks``, …) has no meaning on
  Container Apps: in ``kubespawner_override`` it is ignored, and the caller
  logs it once; in ``overrides`` it is an error, as it always was.

Layers are applied in order (settings, the profile, then each chosen option);
a later layer replaces the keys it sets, except ``environment``, which is
merged key by key (``None`` removes a variable), as KubeSpawner merges dicts.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import sizes
from .spec import validate_cpu, validate_memory

#: keys a profile may override, in either shape
KEYS = ("image", "cpu", "memory", "workload_profile", *sizes.SIZE_KEYS, "environment", "default_url")
#: KubeSpawner's names for keys of :data:`KEYS`
ALIASES = {"image_spec": "image"}
#: keys whose (string) value the spawner runs through ``format_string`` before use
FORMATTED_KEYS = frozenset({"default_url"})
#: where a user's free-form value (``unlisted_choice``) is put in: KubeSpawner's placeholder
VALUE = "{value}"
_IMAGE = re.compile(r"^[^\s\x00-\x1f\x7f]{1,512}$")  # what the functions' policy accepts, bounded


def normalise(raw: Mapping[str, Any], where: str, *, strict: bool) -> tuple[dict[str, Any], list[str]]:
    """One layer with only the keys of :data:`KEYS`, ACA's ``cpu``/``memory`` turned into bounds.

    Returns the layer and the keys that were ignored. With ``strict`` an
    unknown key is a ``ValueError`` instead. Values are checked where they are
    plain values; callables and values holding ``{value}`` are checked once
    they are known (:func:`check`).
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a dict, not {type(raw).__name__}")
    layer: dict[str, Any] = {}
    ignored = sorted(str(k) for k in raw if ALIASES.get(k, k) not in KEYS)
    if ignored and strict:
        raise ValueError(f"{where}: {', '.join(ignored)} cannot be overridden; only {', '.join(KEYS)} may be")
    for key, value in raw.items():
        key = ALIASES.get(key, key)
        if key == "cpu":
            layer["cpu_limit"] = layer["cpu_guarantee"] = _aca_cpu(value, where)
        elif key == "memory":
            layer["mem_limit"] = layer["mem_guarantee"] = _aca_memory(value, where)
        elif key in KEYS:
            layer[key] = value
    check(layer, where, partial=True)
    return layer, ignored


def _aca_value(validate: Callable[[Any], Any], value: Any, where: str) -> Any:
    """``value`` checked by ``validate`` (a callable or a ``{value}`` template is checked once it is known)."""
    if callable(value) or _has_placeholder(value):
        return value
    try:
        return validate(value)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _aca_cpu(value: Any, where: str) -> Any:
    return _aca_value(validate_cpu, value, where)


def _aca_memory(value: Any, where: str) -> Any:
    return _aca_value(validate_memory, value, where)


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return VALUE in value
    if isinstance(value, Mapping):
        return any(_has_placeholder(v) for v in value.values())
    return False


def check(layer: Mapping[str, Any], where: str, *, partial: bool = False) -> None:
    """``ValueError`` for a value of the wrong kind; with ``partial``, values not known yet are skipped."""

    def known(value: Any) -> bool:
        return not (partial and (callable(value) or _has_placeholder(value)))

    try:
        image = layer.get("image")
        if "image" in layer and known(image) and not (isinstance(image, str) and _IMAGE.match(image)):
            raise ValueError(f"image must be an image name without spaces, not {image!r}")
        for key in sizes.SIZE_KEYS:
            value = layer.get(key)
            if value is not None and known(value):
                sizes.Bounds.parse({key: value})
        for key in ("workload_profile", "default_url"):
            if key in layer and known(layer[key]) and not isinstance(layer[key], str):
                raise ValueError(f"{key} must be a string, not {layer[key]!r}")
        environment = layer.get("environment")
        if "environment" in layer and known(environment):
            if not isinstance(environment, Mapping):
                raise ValueError(f"environment must be a dict, not {type(environment).__name__}")
            for name, value in environment.items():
                if not isinstance(name, str) or not name:
                    raise ValueError(f"environment variable names must be strings, not {name!r}")
                if known(value) and value is not None and not isinstance(value, (str, int, float)):
                    raise ValueError(f"environment variable {name} must be a string, not {type(value).__name__}")
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def escape_format(text: str) -> str:
    """``text`` as a ``str.format`` template that renders as ``text`` itself (braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


def substitute(value: Any, chosen: str) -> Any:
    """``value`` with ``{value}`` replaced by the user's ``chosen`` text, in strings, lists and dicts.

    Plain replacement, not ``str.format``: a user's text must never reach
    format specifications or attribute lookups. For a whole layer use
    :func:`substitute_layer`, which also keeps the text inert in values that are
    formatted later.
    """
    if isinstance(value, str):
        return value.replace(VALUE, chosen)
    if isinstance(value, list):
        return [substitute(v, chosen) for v in value]
    if isinstance(value, Mapping):
        return {k: substitute(v, chosen) for k, v in value.items()}
    return value


def substitute_layer(layer: Mapping[str, Any], chosen: str) -> dict[str, Any]:
    """A layer (an ``unlisted_choice``'s overrides) with ``{value}`` replaced by the user's ``chosen`` text.

    The values of :data:`FORMATTED_KEYS` are formatted later with the spawner's
    ``format_string`` (``{username}`` and the like, as JupyterHub formats
    ``default_url``): there the text goes in with its braces doubled, so that
    formatting renders it literally. A user typing ``{username:>900000000}``
    gets exactly that text, never a format specification the hub evaluates.
    """
    inert = escape_format(chosen)
    return {key: substitute(value, inert if key in FORMATTED_KEYS else chosen) for key, value in layer.items()}


async def _evaluate(value: Any, spawner: Any) -> Any:
    if callable(value):
        value = value(spawner)
        if inspect.isawaitable(value):
            value = await value
    return value


async def evaluate(layer: Mapping[str, Any], spawner: Any, where: str) -> dict[str, Any]:
    """``layer`` with callables (sync or async, called with the spawner, as KubeSpawner does) replaced by their results."""
    result: dict[str, Any] = {}
    for key, value in layer.items():
        value = await _evaluate(value, spawner)
        if key == "environment" and isinstance(value, Mapping):
            value = {name: await _evaluate(v, spawner) for name, v in value.items()}
        result[key] = value
    check(result, where)
    return result


def merge(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The layers applied in order: later keys replace earlier ones; ``environment`` merges."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "environment" and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def apply_environment(env: dict[str, Any], environment: Mapping[str, Any] | None) -> dict[str, Any]:
    """``env`` with a profile's ``environment`` on top (last, as JupyterHub applies ``Spawner.environment``)."""
    for name, value in (environment or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env

