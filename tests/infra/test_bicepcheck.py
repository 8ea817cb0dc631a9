"""The checker itself: it must find what is wrong, not just agree with the real files."""

import pytest
from bicepcheck import (
    BicepSyntaxError,
    check_balanced,
    check_env,
    check_params,
    check_role_ids,
    check_settings,
    environment_reads,
    mask,
    object_keys,
    params,
    role_definition_sources,
    setting_literals,
    strip_comments,
)

FUNCTIONS_SNIPPET = """
param hubId string
var appSettings = {
  // ACA_STOP_MODE: 'delete'   (a comment is not a setting)
  AzureWebJobsStorage__accountName: 'st'
  ACA_HUB_ID: hubId
  ACA_SEALING_KEYS: '@Microsoft.KeyVault(SecretUri=${vaultUris.sealingKeys})'
  ACA_NESTED: {
    ACA_INNER: 'not a top-level key'
  }
  'ACA_QUOTED': 'x: y'
}
"""


def test_a_missing_setting_is_reported():
    problems = check_settings(FUNCTIONS_SNIPPET, {"ACA_HUB_ID", "ACA_SEALING_KEYS", "ACA_STOP_MODE"})
    assert problems == ["app setting ACA_STOP_MODE is not set by the Bicep"]


def test_settings_present_pass():
    assert check_settings(FUNCTIONS_SNIPPET, {"ACA_HUB_ID", "ACA_QUOTED", "AzureWebJobsStorage__accountName"}) == []


def test_nested_keys_do_not_count_as_settings():
    assert check_settings(FUNCTIONS_SNIPPET, {"ACA_INNER"}) == ["app setting ACA_INNER is not set by the Bicep"]


def test_a_forbidden_setting_is_reported():
    assert check_settings(FUNCTIONS_SNIPPET, set(), forbidden={"ACA_HUB_ID"}) == [
        "app setting ACA_HUB_ID must not be set in Azure"
    ]


def test_no_settings_block_is_an_error():
    with pytest.raises(LookupError):
        check_settings("var other = {\n  ACA_HUB_ID: 'x'\n}\n", {"ACA_HUB_ID"})


HUB_SNIPPET = """
var containerEnv = [
  { name: 'ACA_HUB_ID', value: hubId }
  // { name: 'ACA_SINGLEUSER_IMAGE', value: image }
  cond ? { name: 'OAUTH_CLIENT_SECRET', secretRef: 'oauth' } : { name: 'OAUTH_CLIENT_SECRET', value: '' }
]
var other = [
  { name: 'JUPYTERHUB_DB_URL', value: 'x' }
]
"""


def test_a_missing_env_var_is_reported():
    problems = check_env(
        HUB_SNIPPET, {"ACA_HUB_ID", "OAUTH_CLIENT_SECRET", "ACA_SINGLEUSER_IMAGE", "JUPYTERHUB_DB_URL"}
    )
    assert problems == [
        "environment variable ACA_SINGLEUSER_IMAGE is not set on the container app",
        "environment variable JUPYTERHUB_DB_URL is not set on the container app",
    ]


def test_secure_parameter_with_default_is_reported():
    text = "@secure()\nparam adminPassword string = 'changeme'\n"
    assert check_params(text, "x.bicep") == ["x.bicep:2: @secure() parameter adminPassword has a default value"]


def test_secret_looking_parameter_without_secure_is_reported():
    text = "@description('the key (sealing)')\nparam sealingKeys string\nparam apiToken string\n"
    assert check_params(text, "x.bicep") == [
        "x.bicep:2: parameter sealingKeys looks secret but is not @secure()",
        "x.bicep:3: parameter apiToken looks secret but is not @secure()",
    ]


def test_decorators_spanning_lines_and_other_decorators_are_read():
    text = """
@secure()
@minLength(
  16
)
@description('A password; it = secret')
param dbPassword string

@allowed([
  'a'
  'b'
])
param mode string = 'a'

@description('not secure, just near one')
resource x 'Microsoft.Foo/bar@2020-01-01' = {
  name: 'x'
}
param cookieSecret string
"""
    found = {p.name: p for p in params(text)}
    assert found["dbPassword"].secure and not found["dbPassword"].has_default
    assert not found["mode"].secure and found["mode"].has_default
    assert not found["cookieSecret"].secure  # decorators do not leak past the resource
    assert check_params(text) == [":19: parameter cookieSecret looks secret but is not @secure()"]


ROLES = {
    "Storage Queue Data Message Sender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
}


def test_unknown_role_name_is_reported():
    text = "var x = builtinRoles['Storage Queue Data Message Sender']\nvar y = builtinRoles['Owner']\nvar z = builtinRoles.AcrPull\n"
    assert check_role_ids(text, ROLES, "x.bicep") == ["x.bicep: role 'Owner' is not in infra/builtin-roles.json"]


def test_literal_guid_must_match_the_role_it_claims():
    good = "var sender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a' // Storage Queue Data Message Sender\n"
    wrong = "var pull = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a' // AcrPull\n"
    unknown = "var owner = '8e3af657-a8ff-443c-a75c-2fe8c4bcb635' // Owner\n"
    assert check_role_ids(good, ROLES) == []
    assert check_role_ids(wrong, ROLES) == [
        ":1: GUID c6a89b2d-59bc-44d0-9896-0f6e12d7b80a is 'Storage Queue Data Message Sender', which that line does not name"
    ]
    assert check_role_ids(unknown, ROLES) == [
        ":1: GUID 8e3af657-a8ff-443c-a75c-2fe8c4bcb635 is not a role of infra/builtin-roles.json"
    ]


def test_role_definition_must_come_from_the_table_or_a_custom_role():
    text = """
var builtinRoles = loadJsonContent('../builtin-roles.json')
var reader = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['AcrPull'])
resource custom 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: 'x'
}
resource a 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  properties: {
    roleDefinitionId: reader
  }
}
resource b 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  properties: {
    roleDefinitionId: custom.id
  }
}
resource c 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', someId)
  }
}
param operatorRoleId string
param otherId string
resource d 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  properties: {
    roleDefinitionId: operatorRoleId
  }
}
resource e 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  properties: {
    roleDefinitionId: otherId
  }
}
"""
    assert role_definition_sources(text) == [
        "roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', someId) "
        "is neither a table role nor a custom role",
        "roleDefinitionId: otherId is neither a table role nor a custom role",
    ]


def test_strings_and_comments_do_not_confuse_structure():
    text = "var a = '} // not a comment ${b['{']}' // a comment {\nvar c = '''\n{ multi\n'''\n"
    assert "not a comment" in strip_comments(text)
    assert "a comment {" not in strip_comments(text)
    masked = mask(text)
    assert "{" not in masked and "}" not in masked  # all inside strings or comments
    assert check_balanced(text) == []
    assert check_balanced("var a = {\n  b: [\n}\n") != []
    with pytest.raises(BicepSyntaxError):
        mask("var a = 'unterminated\n")


def test_object_keys_reads_quoted_keys():
    assert object_keys("{\n  a: 1\n  'b-c': {\n    d: 2\n  }\n}") == ["a", "b-c"]


def test_environment_reads_finds_direct_reads_and_helpers():
    source = """
import os
from os import environ

def _env(name, default=""):
    return os.environ.get(name, default)

def unrelated(name):
    return name

A = os.environ["A_DIRECT"]
B = os.environ.get("B_GET")
C = os.getenv("C_GETENV")
D = _env("D_HELPER")
E = environ.get("E_BARE")
F = unrelated("NOT_AN_ENV_VAR")
"""
    assert environment_reads(source) == {"A_DIRECT", "B_GET", "C_GETENV", "D_HELPER", "E_BARE"}


def test_setting_literals_finds_binding_expressions():
    source = (
        'SCHEDULE = "%ACA_CULL_SCHEDULE%"\nX = "ACA_HUB_ID"\nY = "AcaStorage"\nZ = "aca_lower"\nW = "ACA_ and more"\n'
    )
    assert setting_literals(source) == {"ACA_CULL_SCHEDULE", "ACA_HUB_ID", "AcaStorage"}
