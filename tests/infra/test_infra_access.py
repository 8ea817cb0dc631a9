"""Secrets stay secret and every identity gets only the roles it needs."""

import json
import re

import pytest
from bicepcheck import (
    GUID,
    INFRA,
    check_params,
    check_role_ids,
    declaration_block,
    role_definition_sources,
    strip_comments,
)

BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
ROLE_TABLE = INFRA / "builtin-roles.json"

# The well-known ids of Azure's built-in roles (identical in every tenant).
BUILTIN_ROLES = {
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage File Data Privileged Contributor": "69566ab7-960f-475b-8e7c-b3118f30c6bd",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Queue Data Message Processor": "8a0f0c08-91a1-4084-bc3d-661d67233fed",
    "Storage Queue Data Message Sender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "Storage Queue Data Reader": "19e7f393-937e-4f77-808e-94535e297925",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Table Data Reader": "76199698-9eea-4c19-bc75-cec21354c6b6",
}


def rel(path):
    return str(path.relative_to(INFRA.parent))


def table():
    return json.loads(ROLE_TABLE.read_text())


def test_role_table_holds_the_real_built_in_ids():
    assert table() == BUILTIN_ROLES
    assert all(GUID.fullmatch(guid) for guid in table().values())


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_parameters_secure_and_without_default(path):
    assert check_params(path.read_text(), rel(path)) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_role_ids_match_the_roles_they_claim(path):
    assert check_role_ids(path.read_text(), table(), rel(path)) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_role_definitions_come_from_the_table_or_a_custom_role(path):
    text = path.read_text()
    assert role_definition_sources(text) == []
    if "builtinRoles" in strip_comments(text):
        loaded = re.search(r"^var builtinRoles = loadJsonContent\('([^']+)'\)$", text, re.MULTILINE)
        assert loaded, f"{rel(path)} uses builtinRoles without loading infra/builtin-roles.json"
        assert (path.parent / loaded.group(1)).resolve() == ROLE_TABLE.resolve()


def roles_used(path) -> list[str]:
    code = strip_comments(path.read_text())
    return [a or b for a, b in re.findall(r"builtinRoles(?:\['([^']+)'\]|\.(\w+))", code)]


def assignments(path) -> list[tuple[str, str, str]]:
    """(role, principal, scope) of each role assignment resource of a module."""
    code = strip_comments(path.read_text())
    found = []
    variables = dict(re.findall(r"^var (\w+) = .*builtinRoles\['([^']+)'\]", code, re.MULTILINE))
    for body in re.split(r"\nresource \w+ 'Microsoft\.Authorization/roleAssignments@", code)[1:]:
        body = body.split("\nresource ", 1)[0]
        definition = re.search(r"roleDefinitionId: (.+)", body).group(1)
        named = re.search(r"builtinRoles(?:\['([^']+)'\]|\.(\w+))", definition)
        role = (named.group(1) or named.group(2)) if named else variables.get(definition.strip(), definition.strip())
        principal = re.search(r"principalId: (\w+)", body).group(1)
        scope = re.search(r"^\s*scope: (\w+)", body, re.MULTILINE)
        found.append((role, principal, scope.group(1) if scope else "resourceGroup"))
    return found


def test_hub_identity_may_only_send_requests_read_statuses_and_its_secrets():
    grants = set()
    for path in BICEP_FILES:
        grants |= {(role, scope) for role, principal, scope in assignments(path) if principal == "hubPrincipalId"}
    assert grants == {
        ("Storage Queue Data Message Sender", "lifecycleQueue"),
        ("Storage Table Data Reader", "statusTable"),
        ("Key Vault Secrets User", "sealingKeysSecret"),
        ("Key Vault Secrets User", "cryptKeySecret"),
        ("Key Vault Secrets User", "cookieSecretSecret"),
        ("Key Vault Secrets User", "cullerTokenSecret"),
        ("Key Vault Secrets User", "oauthClientSecretSecret"),
    }


def test_function_identity_grants():
    grants = set()
    for path in BICEP_FILES:
        grants |= {
            (path.stem, role, scope)
            for role, principal, scope in assignments(path)
            if principal == "functionsPrincipalId"
        }
    assert grants == {
        ("storage-lifecycle", "Storage Queue Data Reader", "lifecycleQueue"),
        ("storage-lifecycle", "Storage Queue Data Message Processor", "lifecycleQueue"),
        ("storage-lifecycle", "Storage Queue Data Message Sender", "lifecycleQueue"),  # follow-ups
        ("storage-lifecycle", "Storage Queue Data Contributor", "poisonQueue"),
        ("storage-lifecycle", "Storage Table Data Contributor", "statusTable"),
        ("storage-functions", "Storage Blob Data Owner", "account"),
        ("storage-homes", "Storage File Data Privileged Contributor", "account"),
        ("monitoring", "Monitoring Metrics Publisher", "appInsights"),
        ("keyvault", "Key Vault Secrets User", "sealingKeysSecret"),
        ("keyvault", "Key Vault Secrets User", "cullerTokenSecret"),
        ("environment-access", "environmentJoinerRoleId", "managedEnvironment"),
        ("environment-access", "Managed Identity Operator", "pullIdentity"),
        ("users-access", "appsOperatorRoleId", "resourceGroup"),
    }


def test_functions_send_follow_ups_to_the_lifecycle_queue_with_the_sender_role():
    """The lifecycle function re-queues its own delayed follow-ups: send (add) only, nothing more."""
    grants = {
        (role, scope)
        for role, principal, scope in assignments(INFRA / "modules" / "storage-lifecycle.bicep")
        if principal == "functionsPrincipalId"
    }
    assert ("Storage Queue Data Message Sender", "lifecycleQueue") in grants
    assert ("Storage Queue Data Contributor", "lifecycleQueue") not in grants


def test_pull_identity_may_only_pull():
    grants = set()
    for path in BICEP_FILES:
        grants |= {(role, scope) for role, principal, scope in assignments(path) if principal == "pullPrincipalId"}
    assert grants == {("AcrPull", "registry")}


def custom_role_actions(name: str) -> set[str]:
    path = INFRA / "modules" / "custom-roles.bicep"
    block = declaration_block(path.read_text(), "resource", name)
    actions = re.search(r"\bactions: \[([^\]]*)\]", block).group(1)
    return set(re.findall(r"'([^']+)'", actions))


def test_custom_roles_are_narrow_and_assigned_where_meant():
    # what the functions call (functions/arm.py: PUT, GET, list, DELETE, start, stop), and nothing that
    # reads a user's secrets or opens a shell in their container
    assert custom_role_actions("appsOperator") == {
        "Microsoft.App/containerApps/read",
        "Microsoft.App/containerApps/write",
        "Microsoft.App/containerApps/delete",
        "Microsoft.App/containerApps/start/action",
        "Microsoft.App/containerApps/stop/action",
    }
    assert custom_role_actions("environmentJoiner") == {
        "Microsoft.App/managedEnvironments/read",
        "Microsoft.App/managedEnvironments/join/action",
    }
    roles = strip_comments((INFRA / "modules" / "custom-roles.bicep").read_text())
    assert re.search(r"assignableScopes: \[\s*usersResourceGroupId\s*\]", roles)
    assert re.search(r"assignableScopes: \[\s*hubResourceGroupId\s*\]", roles)
    assert len(re.findall(r"'Microsoft\.Authorization/roleDefinitions@", roles)) == 2
    for path in BICEP_FILES:  # no other custom role anywhere
        if path.name != "custom-roles.bicep":
            assert "'Microsoft.Authorization/roleDefinitions@" not in path.read_text(), rel(path)
    main = strip_comments((INFRA / "main.bicep").read_text())
    assert "hubResourceGroupId: hubGroup.id" in main and "usersResourceGroupId: usersGroup.id" in main
    assert "appsOperatorRoleId: customRoles.outputs.appsOperatorId" in main
    assert "environmentJoinerRoleId: customRoles.outputs.environmentJoinerId" in main


def test_users_apps_live_apart_from_the_hub():
    main = strip_comments((INFRA / "main.bicep").read_text())
    assert re.search(r"module usersAccess 'modules/users-access.bicep' = \{[^}]*scope: usersGroup", main)
    assert "usersResourceGroupName: usersGroup.name" in main


def test_identity_only_storage_except_homes():
    for name in ("storage-lifecycle", "storage-functions"):
        assert "allowSharedKeyAccess: false" in (INFRA / "modules" / f"{name}.bicep").read_text()
    homes = (INFRA / "modules" / "storage-homes.bicep").read_text()
    assert "allowSharedKeyAccess: true" in homes  # SMB mounts need the key: nothing else lives there


def test_key_vault_is_rbac_only_and_secrets_are_referenced_by_identity():
    vault = strip_comments((INFRA / "modules" / "keyvault.bicep").read_text())
    assert "enableRbacAuthorization: true" in vault
    assert "accessPolicies" not in vault
    hub = strip_comments((INFRA / "modules" / "hub.bicep").read_text())
    assert len(re.findall(r"keyVaultUrl: vaultUris\.\w+, identity: identityId", hub)) == 5


def test_no_secret_reaches_an_output():
    for path in BICEP_FILES:
        for line in strip_comments(path.read_text()).splitlines():
            if line.startswith("output "):
                assert not re.search(r"listKeys|Password|sealingKeys\b|cookieSecret\b|cullerApiToken\b", line), line
