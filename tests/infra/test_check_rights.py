"""infra/hooks/check_rights.py: the pre-provision check of the signed-in identity's rights.

The permission sets are those of Azure's built-in roles (actions and notActions
as published in their role definitions).
"""

import importlib.util

import pytest
from bicepcheck import ROOT

HOOKS = ROOT / "infra" / "hooks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_rights = load("check_rights")

OWNER = {"actions": ["*"], "notActions": []}
CONTRIBUTOR = {"actions": ["*"], "notActions": [
    "Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write", "Microsoft.Authorization/elevateAccess/Action",
    "Microsoft.Blueprint/blueprintAssignments/write", "Microsoft.Blueprint/blueprintAssignments/delete",
    "Microsoft.Compute/galleries/share/action", "Microsoft.Purview/consents/write", "Microsoft.Purview/consents/delete",
    "Microsoft.Resources/deploymentStacks/manageDenySetting/action", "Microsoft.Subscription/cancel/action",
    "Microsoft.Subscription/enable/action"]}
USER_ACCESS_ADMINISTRATOR = {"actions": ["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"], "notActions": []}
RBAC_ADMINISTRATOR = {"actions": ["Microsoft.Authorization/roleAssignments/write",
                                  "Microsoft.Authorization/roleAssignments/delete", "*/read", "Microsoft.Support/*"],
                      "notActions": []}
READER = {"actions": ["*/read"], "notActions": []}


@pytest.mark.parametrize("roles", [[OWNER], [CONTRIBUTOR, USER_ACCESS_ADMINISTRATOR], [USER_ACCESS_ADMINISTRATOR, OWNER]])
def test_owner_or_contributor_with_user_access_administrator_may_deploy(roles):
    assert check_rights.missing(roles) == {}


def test_contributor_alone_may_not_create_roles_or_assign_them():
    assert set(check_rights.missing([CONTRIBUTOR])) == {
        "Microsoft.Authorization/roleDefinitions/write", "Microsoft.Authorization/roleAssignments/write"}


def test_rbac_administrator_assigns_roles_but_cannot_define_them():
    assert set(check_rights.missing([CONTRIBUTOR, RBAC_ADMINISTRATOR])) == {
        "Microsoft.Authorization/roleDefinitions/write"}


def test_a_reader_lacks_everything_and_the_report_says_what_to_ask_for():
    lacking = check_rights.missing([READER])
    assert set(lacking) == set(check_rights.NEEDED)
    text = check_rights.report(lacking)
    assert "Microsoft.Authorization/roleDefinitions/write (to create the functions' custom roles)" in text
    assert "Owner" in text and "Contributor plus User Access Administrator" in text


def test_matching_ignores_case_as_azure_does():
    assert check_rights.allowed("microsoft.app/containerapps/WRITE", [{"actions": ["Microsoft.App/*"]}])
    assert not check_rights.allowed("Microsoft.Authorization/roleDefinitions/write",
                                    [{"actions": ["*"], "notActions": ["microsoft.authorization/*/write"]}])


def test_every_needed_action_is_one_the_deployment_performs():
    """The representative actions name resource types infra/ really creates."""
    infra = "\n".join(p.read_text() for p in (ROOT / "infra").rglob("*.bicep"))
    for action in check_rights.NEEDED:
        provider_type = "/".join(action.split("/")[:-1])
        if provider_type == "Microsoft.Resources/deployments":
            continue  # every module is a deployment
        kind = provider_type.replace("Microsoft.Resources/subscriptions/resourceGroups", "Microsoft.Resources/resourceGroups")
        assert f"'{kind}@" in infra, action
