"""Secrets stay secret and every identity gets only the roles it needs."""

import json

import pytest
from bicepcheck import (
    GUID,
    INFRA,
    ROLE_DEFINITIONS,
    Call,
    Op,
    Ref,
    check_params,
    check_role_ids,
    declared,
    expression,
    get,
    module_params,
    output,
    params,
    parse_file,
    resource,
    resources,
    role_assignments,
    role_definition_sources,
    roles_referenced,
    strip_comments,
    walk,
    walk_tree,
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
    tree = parse_file(path)
    assert role_definition_sources(path.read_text()) == []
    if any(roles_referenced(value) for value in walk_tree(tree)):
        table = declared(tree, "var").get("builtinRoles", {}).get("value")
        assert isinstance(table, Call) and table.name == "load_json_content", (
            f"{rel(path)} uses builtinRoles without loading infra/builtin-roles.json"
        )
        assert (path.parent / table.args["file_path"]).resolve() == ROLE_TABLE.resolve()


def assignments(path) -> list[tuple[str, str, str]]:
    """(role, principal, scope) of each role assignment resource of a module."""
    return [(a.role, a.principal, a.scope) for a in role_assignments(path.read_text())]


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
        ("keyvault", "Key Vault Secrets User", "followUpKeysSecret"),
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
    role = resource(parse_file(INFRA / "modules" / "custom-roles.bicep"), name)
    (permissions,) = get(role, "properties", "permissions")
    assert permissions["notActions"] == [] and set(permissions) == {"actions", "notActions"}
    actions = permissions["actions"]
    assert all(isinstance(a, str) and not isinstance(a, Ref) for a in actions)
    return set(actions)


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
    roles = parse_file(INFRA / "modules" / "custom-roles.bicep")
    assert get(resource(roles, "appsOperator"), "properties", "assignableScopes") == [Ref("usersResourceGroupId")]
    assert get(resource(roles, "environmentJoiner"), "properties", "assignableScopes") == [Ref("hubResourceGroupId")]
    assert set(resources(roles, ROLE_DEFINITIONS, existing=True)) == {"appsOperator", "environmentJoiner"}
    for path in BICEP_FILES:  # no other custom role anywhere
        if path.name != "custom-roles.bicep":
            assert not resources(parse_file(path), ROLE_DEFINITIONS, existing=True), rel(path)
    main = parse_file(INFRA / "main.bicep")
    assert module_params(main, "customRoles") == {
        "hubResourceGroupId": expression("hubGroup.id"),
        "usersResourceGroupId": expression("usersGroup.id"),
    }
    assert module_params(main, "usersAccess")["appsOperatorRoleId"] == expression("customRoles.outputs.appsOperatorId")
    assert module_params(main, "environmentAccess")["environmentJoinerRoleId"] == expression(
        "customRoles.outputs.environmentJoinerId"
    )


def test_users_apps_live_apart_from_the_hub():
    main = parse_file(INFRA / "main.bicep")
    users_access = declared(main, "module")["usersAccess"]
    assert users_access["detail"]["path"] == "modules/users-access.bicep"
    assert users_access["config"]["scope"] == Ref("usersGroup")
    assert module_params(main, "functions")["usersResourceGroupName"] == expression("usersGroup.name")


def shared_key_access(name: str) -> list:
    accounts = resources(parse_file(INFRA / "modules" / f"{name}.bicep"), "Microsoft.Storage/storageAccounts")
    return [get(account, "properties", "allowSharedKeyAccess") for account in accounts.values()]


def test_identity_only_storage_except_homes():
    for name in ("storage-lifecycle", "storage-functions"):
        assert shared_key_access(name) == [False], name
    assert shared_key_access("storage-homes") == [True]  # SMB mounts need the key: nothing else lives there


def test_key_vault_is_rbac_only_and_secrets_are_referenced_by_identity():
    vault = parse_file(INFRA / "modules" / "keyvault.bicep")
    (vault_resource,) = resources(vault, "Microsoft.KeyVault/vaults").values()
    assert get(vault_resource, "properties", "enableRbacAuthorization") is True
    assert "accessPolicies" not in strip_comments((INFRA / "modules" / "keyvault.bicep").read_text())
    hub = parse_file(INFRA / "modules" / "hub.bicep")
    secrets = [v for v in walk_tree(hub) if isinstance(v, dict) and "keyVaultUrl" in v]
    assert len(secrets) == 5
    for secret in secrets:
        url = secret["keyVaultUrl"]
        assert isinstance(url, Op) and url.type == "property_accessor" and url.operands["operand_1"] == Ref("vaultUris")
        assert secret["identity"] == Ref("identityId")


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_no_secret_reaches_an_output(path):
    tree = parse_file(path)
    secure = {p.name for p in params(path.read_text()) if p.secure}
    for name in declared(tree, "output"):
        for value in walk(output(tree, name)):
            # a @secure() parameter of the file, or anything named a password
            assert not (isinstance(value, Ref) and (value.name in secure or "password" in value.name.lower())), name
            # listKeys(), listSecrets() ... whether called on a resource or as a function
            called = value.operands.get("func_name") if isinstance(value, Op) else None
            called = called or (value.args.get("func_name") if isinstance(value, Call) else None)
            assert not (called and called.startswith("list")), name
