"""The vendored Microsoft.App contract: pinned to the SDK's api-version, and as strict as it claims.

The published examples must pass the strict schemas (they check the vendored text was copied
whole), and bodies that break the contract in each way the schemas police must fail them.
"""

from __future__ import annotations

import copy

import pytest
from armspec import definitions, example, operations, violations
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from local.emulator.apiversions import SDK_API_VERSION, SUPPORTED_API_VERSIONS
from local.emulator.client import StaticTokenCredential


def test_the_vendored_version_is_the_one_the_pinned_sdk_sends():
    client = ContainerAppsAPIClient(StaticTokenCredential(), "00000000-0000-0000-0000-000000000000")
    try:
        sent = client._config.api_version
    finally:
        client.close()
    # when the SDK pin moves, refresh tests/microsoft_app/data (see its README) and the emulator's list
    assert sent == operations()["apiVersion"] == SDK_API_VERSION
    assert sent in SUPPORTED_API_VERSIONS


def test_every_reference_resolves():
    def refs(node):
        if isinstance(node, dict):
            yield from ([node["$ref"]] if "$ref" in node else [])
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    names = set(definitions())
    assert {ref.rsplit("/", 1)[-1] for ref in refs(definitions())} <= names
    for operation in operations()["operations"].values():
        schemas = {r["schema"] for r in operation["responses"].values()} | {operation.get("body")}
        assert schemas - {None} <= names


def test_published_examples_pass_the_strict_schemas():
    create = example("ContainerApps_CreateOrUpdate")["parameters"]["containerAppEnvelope"]
    assert violations(create, "ContainerApp", "request") == []
    assert violations(example("ContainerApps_Get")["responses"]["200"]["body"], "ContainerApp", "response") == []
    listed = example("ContainerApps_ListByResourceGroup")["responses"]["200"]["body"]
    # the example writes "nextLink": null for the last page; the schema's nextLink is a string
    assert listed["nextLink"] is None
    assert violations({"value": listed["value"]}, "ContainerAppCollection", "response") == []


def _body() -> dict:
    return copy.deepcopy(example("ContainerApps_CreateOrUpdate")["parameters"]["containerAppEnvelope"])


@pytest.mark.parametrize("path, value, complaint", [
    (("properties", "template", "containers", 0, "imagePullPolicy"), "Always", "Additional properties"),
    (("properties", "configuration", "ingress", "transport"), "websocket", "is not one of"),
    (("properties", "configuration", "ingress", "targetPort"), 2**31, "is greater than the maximum"),
    (("properties", "template", "scale", "maxReplicas"), 1.5, "is not of type 'integer'"),
    (("properties", "provisioningState"), "Succeeded", "False schema"),
    (("properties", "configuration", "ingress", "fqdn"), "x.example", "False schema"),
    (("identity", "principalId"), "00000000-0000-0000-0000-000000000000", "False schema"),
    (("properties", "configuration", "dapr", "appHealth", "threshold"), 0, "is less than the minimum"),
])
def test_requests_that_break_the_contract_are_refused(path, value, complaint):
    body = _body()
    node = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    problems = violations(body, "ContainerApp", "request")
    assert problems and all(complaint in p or "False schema" in p for p in problems), problems
    assert any(complaint in p for p in problems)


def test_a_required_property_is_required():
    body = _body()
    del body["location"]
    assert any("'location' is a required property" in p for p in violations(body, "ContainerApp", "request"))


def test_answers_must_not_carry_secret_values_or_unpublished_states():
    answer = copy.deepcopy(example("ContainerApps_Get")["responses"]["200"]["body"])
    answer["properties"]["configuration"]["secrets"] = [{"name": "token", "value": "s3cret"}]
    assert any("False schema" in p for p in violations(answer, "ContainerApp", "response"))
    answer = copy.deepcopy(example("ContainerApps_Get")["responses"]["200"]["body"])
    answer["properties"]["runningStatus"] = "Failed"
    assert any("is not one of" in p for p in violations(answer, "ContainerApp", "response"))
    answer["properties"]["runningStatus"] = "Running"
    answer["identity"]["principalId"] = "not-a-uuid"
    assert any("is not a 'uuid'" in p for p in violations(answer, "ContainerApp", "response"))
