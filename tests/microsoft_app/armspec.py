"""The vendored Microsoft.App contract (``data/``) as strict JSON Schemas.

The Swagger 2.0 definitions are turned into JSON Schema 2020-12, stricter than the published
text on purpose:

* every object refuses properties it does not declare (``additionalProperties: false``;
  inherited ``allOf`` properties are merged in first), maps keep their value schema;
* enums are closed (Swagger's ``modelAsString`` would let clients accept new values; a body we
  send or an answer the emulator gives must use a published one);
* ``int32``/``int64`` carry their ranges, ``minimum``/``maximum`` stay;
* in a *request*, read-only properties must be absent; in a *response*, secret values
  (``x-ms-secret``) must be absent, as ARM never returns them;
* ``uuid`` and ``date-time`` formats are checked.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator, FormatChecker

DATA = Path(__file__).with_name("data")
Mode = Literal["request", "response"]

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_FORMATS = FormatChecker(["uuid"])


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    # RFC 3339 needs a date, a time and an offset (or Z)
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return "T" in value.upper() and parsed.tzinfo is not None


@cache
def definitions() -> dict[str, Any]:
    """The vendored Swagger definitions by name."""
    return json.loads((DATA / "definitions.json").read_text())["definitions"]


@cache
def operations() -> dict[str, Any]:
    """The vendored operations (method, path, responses with header names), and ``apiVersion``."""
    return json.loads((DATA / "operations.json").read_text())


def example(operation_id: str) -> dict[str, Any]:
    """A vendored x-ms-example, e.g. ``example("ContainerApps_Get")``."""
    return json.loads((DATA / "examples" / f"{operation_id}.json").read_text())


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _flatten(name: str) -> dict[str, Any]:
    """A definition with the properties and ``required`` of its ``allOf`` parents merged in."""
    node = definitions()[name]
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parent in node.get("allOf", []):
        inherited = _flatten(_ref_name(parent["$ref"]))
        properties.update(inherited.get("properties", {}))
        required += inherited.get("required", [])
    properties.update(node.get("properties", {}))
    required += node.get("required", [])
    flat = {k: v for k, v in node.items() if k != "allOf"}
    if properties:
        flat["properties"] = properties
    if required:
        flat["required"] = required
    return flat


def _convert(node: dict[str, Any], mode: Mode) -> dict[str, Any] | bool:
    if mode == "request" and node.get("readOnly"):
        return False
    if mode == "response" and node.get("x-ms-secret"):
        return False
    if "$ref" in node:
        return {"$ref": f"#/$defs/{_ref_name(node['$ref'])}"}
    if "allOf" in node:  # an inline allOf (a map's value schema): the parent itself
        schema: dict[str, Any] = {"$ref": f"#/$defs/{_ref_name(node['allOf'][0]['$ref'])}"}
        return {"anyOf": [{"type": "null"}, schema]} if node.get("x-nullable") else schema
    kind = node.get("type")
    schema = {"type": kind} if kind else {}
    if "enum" in node:
        schema["enum"] = list(node["enum"])
    if kind == "integer" and node.get("format") in _INT_RANGES:
        schema["minimum"], schema["maximum"] = _INT_RANGES[node["format"]]
    for bound in ("minimum", "maximum"):
        if bound in node:
            schema[bound] = node[bound]
    if node.get("format") in ("uuid", "date-time"):
        schema["format"] = node["format"]
    if kind == "array":
        schema["items"] = _convert(node.get("items", {}), mode)
    if kind == "object":
        if "properties" in node:
            schema["properties"] = {k: _convert(v, mode) for k, v in node["properties"].items()}
            schema["additionalProperties"] = False
        elif "additionalProperties" in node:
            schema["additionalProperties"] = _convert(node["additionalProperties"], mode)
        if node.get("required"):
            schema["required"] = list(node["required"])
    return schema


@cache
def _defs(mode: Mode) -> dict[str, Any]:
    return {name: _convert(_flatten(name), mode) for name in definitions()}


@cache
def validator(definition: str, mode: Mode) -> Draft202012Validator:
    """A validator for ``definition`` as a request body or as a response body."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": f"#/$defs/{definition}",
              "$defs": _defs(mode)}
    return Draft202012Validator(schema, format_checker=_FORMATS)


def violations(instance: Any, definition: str, mode: Mode) -> list[str]:
    """Every way ``instance`` breaks the contract, as ``path: message`` lines (empty when it holds)."""
    errors = validator(definition, mode).iter_errors(instance)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)
