"""The refresh script's rules, on a miniature checkout built from the vendored files themselves."""

from __future__ import annotations

import json

import armspec
from refresh_contract import APP, COMMON, OPERATIONS, RG_PATH, reachable, refresh, trim


def test_trim_keeps_constraints_and_rewrites_references():
    node = {"type": "object", "description": "x", "x-ms-identifiers": ["name"],
            "properties": {"a": {"$ref": "../../common-types/v5/types.json#/definitions/Resource", "readOnly": True,
                                 "description": "y", "x-ms-enum": {"name": "A"}}}}
    assert trim(node) == {"type": "object", "properties": {"a": {"$ref": "#/definitions/Resource", "readOnly": True}}}


def test_reachable_follows_references_in_source_order():
    defs = {"B": {"$ref": "#/definitions/C"}, "A": {"items": {"$ref": "#/definitions/B"}}, "C": {}, "D": {}}
    assert reachable(defs, ("A",)) == ["B", "A", "C"]


def test_a_miniature_checkout_refreshes_to_the_vendored_files(tmp_path):
    vendored = armspec.definitions()
    common_names = {"ManagedServiceIdentity", "ManagedServiceIdentityType", "UserAssignedIdentity"}
    types_names = {"Resource", "TrackedResource", "SystemData", "createdByType", "ErrorResponse", "ErrorDetail",
                   "ErrorAdditionalInfo", "OperationStatusResult"}
    app_defs = {n: d for n, d in vendored.items() if n not in common_names | types_names}
    app_defs["Unreached"] = {"type": "string", "description": "not reachable from ContainerApp"}
    ops = armspec.operations()["operations"]
    paths: dict = {}
    for op_id, (method, suffix) in OPERATIONS.items():
        op = ops[op_id]
        responses = {s: {**({"schema": {"$ref": f"#/definitions/{r['schema']}"}} if r["schema"] else {}),
                         **({"headers": {h: {"type": "string"} for h in r["headers"]}} if r["headers"] else {}),
                         **({"x-ms-error-response": True} if r.get("x-ms-error-response") else {})}
                     for s, r in op["responses"].items()}
        parameters = [{"in": "body", "schema": {"$ref": f"#/definitions/{op['body']}"}}] if "body" in op else []
        extra = {k: v for k, v in op.items() if k.startswith("x-ms-")}
        paths.setdefault(RG_PATH + suffix, {})[method] = {"parameters": parameters, "responses": responses, **extra}
    stable = tmp_path / APP / "stable" / "2026-07-01"
    (stable / "examples").mkdir(parents=True)
    (stable / "openapi.json").write_text(json.dumps({"paths": paths, "definitions": app_defs}))
    (tmp_path / COMMON).mkdir(parents=True)
    for name, keep in (("managedidentity.json", common_names), ("types.json", types_names)):
        (tmp_path / COMMON / name).write_text(json.dumps({"definitions": {n: vendored[n] for n in keep}}))
    for op_id in OPERATIONS:
        if op_id != "ContainerApps_Update":
            (stable / "examples" / f"{op_id}.json").write_text(json.dumps(armspec.example(op_id)))

    out = tmp_path / "out"
    refresh(tmp_path, "2026-07-01", out)
    written = json.loads((out / "definitions.json").read_text())["definitions"]
    assert written == vendored and "Unreached" not in written
    assert json.loads((out / "operations.json").read_text()) == armspec.operations()
    assert json.loads((out / "examples" / "ContainerApps_Get.json").read_text()) == armspec.example("ContainerApps_Get")
