"""Rewrite ``data/`` from a checkout of Azure/azure-rest-api-specs (see data/README.md for the rules).

    python tests/microsoft_app/refresh_contract.py --specs ../azure-rest-api-specs --api-version 2026-07-01

It needs the checkout (not available on machines without GitHub access); the files it writes
are committed, with the commit written into data/README.md's table by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data")
APP = Path("specification/app/resource-manager/Microsoft.App/ContainerApps")
COMMON = Path("specification/common-types/resource-management/v5")
ROOTS = ("ContainerApp", "ContainerAppCollection")
COMMON_ROOTS = ("ErrorResponse", "OperationStatusResult")
KEEP = {"type", "properties", "required", "enum", "readOnly", "format", "items", "$ref", "allOf",
        "additionalProperties", "default", "minimum", "maximum", "x-ms-mutability", "x-ms-secret", "x-nullable"}
OPERATIONS = {  # operationId → (method, path suffix after .../Microsoft.App/containerApps)
    "ContainerApps_ListByResourceGroup": ("get", ""),
    "ContainerApps_Get": ("get", "/{containerAppName}"),
    "ContainerApps_CreateOrUpdate": ("put", "/{containerAppName}"),
    "ContainerApps_Update": ("patch", "/{containerAppName}"),
    "ContainerApps_Delete": ("delete", "/{containerAppName}"),
    "ContainerApps_Start": ("post", "/{containerAppName}/start"),
    "ContainerApps_Stop": ("post", "/{containerAppName}/stop"),
}
RG_PATH = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.App/containerApps"
EXAMPLE_BODIES_KEPT = {"ContainerApps_Get", "ContainerApps_ListByResourceGroup"}


def trim(node: Any) -> Any:
    """Only the keys that constrain a body; external ``$ref``s point at ``#/definitions/<Name>``."""
    if isinstance(node, list):
        return [trim(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = "#/definitions/" + value.rsplit("/", 1)[-1]
        elif key == "properties":
            out[key] = {name: trim(schema) for name, schema in value.items()}
        elif key in KEEP:
            out[key] = trim(value)
    return out


def reachable(definitions: dict[str, Any], roots: tuple[str, ...]) -> list[str]:
    """Names reachable from ``roots`` through ``$ref``s that resolve in ``definitions``."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        stack.extend(_refs(definitions[name]))
    return [name for name in definitions if name in seen]  # the source's order


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"].rsplit("/", 1)[-1]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def operation(spec: dict[str, Any], method: str, suffix: str) -> dict[str, Any]:
    op = spec["paths"][RG_PATH + suffix][method]
    responses = {
        status: {"schema": ((r.get("schema") or {}).get("$ref") or "").rsplit("/", 1)[-1] or None,
                 "headers": list(r.get("headers", {})),
                 **({"x-ms-error-response": True} if r.get("x-ms-error-response") else {})}
        for status, r in op["responses"].items()
    }
    body = next((p["schema"]["$ref"].rsplit("/", 1)[-1] for p in op.get("parameters", []) if p.get("in") == "body"), None)
    out: dict[str, Any] = {"method": method, "path": RG_PATH + suffix, **({"body": body} if body else {}),
                           "responses": responses}
    for key in ("x-ms-pageable", "x-ms-long-running-operation-options"):
        if key in op:
            value = dict(op[key])
            if "final-state-schema" in value:
                value["final-state-schema"] = value["final-state-schema"].rsplit("/", 1)[-1]
            out[key] = value
    return out


def example(path: Path, operation_id: str) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if operation_id not in EXAMPLE_BODIES_KEPT:
        for response in data.get("responses", {}).values():
            if isinstance(response, dict):
                response.pop("body", None)
    return data


def refresh(specs: Path, api_version: str, out: Path = DATA) -> None:
    spec = json.loads((specs / APP / "stable" / api_version / "openapi.json").read_text())
    common = {**json.loads((specs / COMMON / "managedidentity.json").read_text())["definitions"],
              **json.loads((specs / COMMON / "types.json").read_text())["definitions"]}
    merged = {**spec["definitions"], **common}
    names = reachable(merged, ROOTS + COMMON_ROOTS)
    out.mkdir(parents=True, exist_ok=True)
    definitions = {n: trim(spec["definitions"][n]) for n in names if n in spec["definitions"]}
    definitions.update({n: trim(common[n]) for n in names if n not in spec["definitions"]})
    (out / "definitions.json").write_text(json.dumps({
        "x-vendored": "see README.md: the subset of Microsoft.App " + api_version + " reachable from ContainerApp, "
                      "plus the common-types it uses; descriptions and x-ms-enum/x-ms-identifiers/x-ms-client-flatten "
                      "dropped",
        "definitions": definitions}, indent=2) + "\n")
    ops = {op_id: operation(spec, method, suffix) for op_id, (method, suffix) in OPERATIONS.items()}
    (out / "operations.json").write_text(json.dumps({
        "x-vendored": "see README.md: paths of openapi.json for the container app operations the project calls",
        "apiVersion": api_version, "operations": ops}, indent=2) + "\n")
    for op_id in OPERATIONS:
        if op_id == "ContainerApps_Update":
            continue  # the project never PATCHes
        name = f"{op_id}.json"
        source = specs / APP / "stable" / api_version / "examples" / name
        if not source.exists():
            source = specs / APP / "examples" / api_version / name
        (out / "examples").mkdir(parents=True, exist_ok=True)
        (out / "examples" / name).write_text(json.dumps(example(source, op_id), indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=Path, required=True, help="a checkout of Azure/azure-rest-api-specs")
    parser.add_argument("--api-version", required=True, help="the SDK's default api-version")
    args = parser.parse_args(argv)
    refresh(args.specs, args.api_version)
    print(f"rewrote {DATA}; now update the commit column of {DATA / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
