"""The checker itself: it must find what is wrong, not just agree with the real files."""

import pytest
from bicepcheck import (
    BicepSyntaxError,
    Call,
    DeploymentFailure,
    If,
    Loop,
    Op,
    Ref,
    check_env,
    check_params,
    check_role_ids,
    check_settings,
    declared,
    environment_reads,
    evaluate,
    expression,
    instances,
    known,
    module_params,
    params,
    parse,
    render,
    resource,
    resource_types,
    role_assignments,
    role_definition_sources,
    setting_literals,
    strip_comments,
    top_level_declarations,
    variable,
    walk,
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


def test_no_settings_object_is_an_error():
    with pytest.raises(LookupError):
        check_settings("var other = {\n  ACA_HUB_ID: 'x'\n}\n", {"ACA_HUB_ID"})
    with pytest.raises(LookupError):
        check_settings("var appSettings = union(a, b)\n", {"ACA_HUB_ID"})


HUB_SNIPPET = """
var secretEnv = { name: 'ACA_SEALING_KEYS', secretRef: 'sealing-keys' }
var containerEnv = [
  { name: 'ACA_HUB_ID', value: hubId }
  // { name: 'ACA_SINGLEUSER_IMAGE', value: image }
  cond ? { name: 'OAUTH_CLIENT_SECRET', secretRef: 'oauth' } : { name: 'OAUTH_CLIENT_SECRET', value: '' }
  secretEnv
]
var other = [
  { name: 'JUPYTERHUB_DB_URL', value: 'x' }
]
resource hub 'Microsoft.App/containerApps@2024-03-01' = {
  name: 'hub'
  properties: {
    template: {
      containers: [
        {
          name: 'hub'
          env: containerEnv
        }
      ]
    }
  }
}
"""


def test_a_missing_env_var_is_reported():
    problems = check_env(
        HUB_SNIPPET,
        {"ACA_HUB_ID", "OAUTH_CLIENT_SECRET", "ACA_SEALING_KEYS", "ACA_SINGLEUSER_IMAGE", "JUPYTERHUB_DB_URL"},
    )
    assert problems == [
        "environment variable ACA_SINGLEUSER_IMAGE is not set on the container app",  # a comment
        "environment variable JUPYTERHUB_DB_URL is not set on the container app",  # a variable the app does not use
    ]


def test_env_vars_are_those_of_a_container_app():
    assert check_env(HUB_SNIPPET, set(), forbidden={"ACA_HUB_ID"}) == [
        "environment variable ACA_HUB_ID must not be set in Azure"
    ]
    with pytest.raises(LookupError):  # no container app at all
        check_env("var containerEnv = [\n  { name: 'A', value: 'x' }\n]\n", {"A"})
    unreadable = HUB_SNIPPET.replace("env: containerEnv", "env: filter(containerEnv, e => e.value != '')")
    with pytest.raises(LookupError):  # an env it cannot enumerate fails instead of passing
        check_env(unreadable, {"ACA_HUB_ID"})


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
param enabled bool = false
"""
    found = {p.name: p for p in params(text)}
    assert found["dbPassword"].secure and not found["dbPassword"].has_default
    assert found["dbPassword"].decorator("min_length") == {"type": "min_length", "argument": 16}
    assert found["dbPassword"].line == 7
    assert not found["mode"].secure and found["mode"].default == "a"
    assert found["mode"].decorator("allowed")["argument"] == ["a", "b"]
    assert not found["cookieSecret"].secure  # decorators do not leak past the resource
    assert found["enabled"].has_default and found["enabled"].default is False and found["enabled"].type == "bool"
    assert check_params(text) == [":19: parameter cookieSecret looks secret but is not @secure()"]


ROLES = {
    "Storage Queue Data Message Sender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
}


def test_unknown_role_name_is_reported():
    text = "var x = builtinRoles['Storage Queue Data Message Sender']\nvar y = builtinRoles['Owner']\nvar z = builtinRoles.AcrPull\n"
    assert check_role_ids(text, ROLES, "x.bicep") == ["x.bicep: role 'Owner' is not in infra/builtin-roles.json"]
    commented = "// var y = builtinRoles['Owner']\nvar s = 'builtinRoles[\\'Owner\\']'\n"
    assert check_role_ids(commented, ROLES) == []  # neither a comment nor a string references a role


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


ROLE_SOURCES = """
var builtinRoles = loadJsonContent('../builtin-roles.json')
var reader = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtinRoles['AcrPull'])
resource custom 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: 'x'
}
resource a 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: registry
  properties: {
    roleDefinitionId: reader
    principalId: pullPrincipalId
  }
}
resource b 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enabled) {
  properties: {
    roleDefinitionId: custom.id
    principalId: identity.properties.principalId
  }
}
resource c 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', someId)
    principalId: p
  }
}
param operatorRoleId string
param otherId string
resource d 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  properties: {
    roleDefinitionId: operatorRoleId
    principalId: p
  }
}
resource e 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  properties: {
    // roleDefinitionId: reader
    roleDefinitionId: otherId
    principalId: p
  }
}
"""


def test_role_definition_must_come_from_the_table_or_a_custom_role():
    assert role_definition_sources(ROLE_SOURCES) == [
        "c: roleDefinitionId subscriptionResourceId('Microsoft.Authorization/roleDefinitions', someId) "
        "is neither a table role nor a custom role",
        "e: roleDefinitionId otherId is neither a table role nor a custom role",
    ]


def test_role_assignments_name_role_principal_and_scope():
    found = {a.resource: (a.role, a.principal, a.scope) for a in role_assignments(ROLE_SOURCES)}
    assert found == {
        "a": ("AcrPull", "pullPrincipalId", "registry"),  # through the variable
        "b": ("custom", "identity.properties.principalId", "resourceGroup"),  # a conditional resource too
        "c": ("subscriptionResourceId('Microsoft.Authorization/roleDefinitions', someId)", "p", "resourceGroup"),
        "d": ("operatorRoleId", "p", "resourceGroup"),
        "e": ("otherId", "p", "resourceGroup"),
    }


def test_references_literals_and_expressions_are_told_apart():
    tree = parse("var literal = 'hubId'\nvar reference = hubId\nvar quoted = {\n  'azd-service-name': 'hub'\n}\n")
    assert variable(tree, "literal") == "hubId" and not isinstance(variable(tree, "literal"), Ref)
    assert variable(tree, "reference") == Ref("hubId") != "hubId"
    assert variable(tree, "quoted") == {"azd-service-name": "hub"}  # pycep keeps the quotes of a key
    assert expression("hubGroup.id") == Op("property_accessor", {"operand_1": Ref("hubGroup"), "operand_2": Ref("id")})
    assert expression("toLower(name)") == Call("to_lower", {"string_to_change": Ref("name")})
    assert expression("'http://${name}:8081'") == "http://${name}:8081"
    assert render(expression("empty(a) ? 'x' : b.outputs.c[0].d")) == "empty(a) ? 'x' : b.outputs.c[0].d"
    with pytest.raises(LookupError):
        variable(tree, "missing")


def test_resources_and_modules_are_read_past_conditions_and_loops():
    tree = parse(
        """
resource app 'Microsoft.App/containerApps@2024-03-01' = if (deploy) {
  name: 'app'
  properties: {
    environmentId: environmentId
  }
}
resource old 'Microsoft.App/managedEnvironments@2024-03-01' existing = {
  name: 'env'
}
module access 'modules/access.bicep' = [for (p, i) in principals: {
  name: 'access-${i}'
  params: {
    principalId: p
  }
}]
"""
    )
    assert isinstance(declared(tree, "resource")["app"]["config"], If)
    assert resource(tree, "app")["properties"] == {"environmentId": Ref("environmentId")}
    assert declared(tree, "resource")["old"]["existing"] is True
    assert resource_types(tree) == {
        "app": "Microsoft.App/containerApps@2024-03-01",
        "old": "Microsoft.App/managedEnvironments@2024-03-01",
    }
    loop = declared(tree, "module")["access"]["config"]
    assert isinstance(loop, Loop) and (loop.item, loop.index, loop.source) == ("p", "i", Ref("principals"))
    assert module_params(tree, "access") == {"principalId": Ref("p")}


def test_what_pycep_drops_is_noticed_by_comparing_declarations():
    """pycep keeps only the last of several resources nested in one body: the text still has both."""
    text = """
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st'
  resource queues 'queueServices' = {
    name: 'default'
  }
  resource tables 'tableServices' = {
    name: 'default'
  }
}
"""
    in_tree = [name.rsplit("__", 1)[-1] for name in declared(parse(text), "resource")]
    assert sorted(in_tree) != sorted(top_level_declarations(text)["resource"]) == ["account", "queues", "tables"]


# what the module docstring says pycep 0.7.1 cannot parse: a newer pycep that can should update the docstring
UNREADABLE = {
    "multi-parameter lambda": "var total = reduce(xs, 0, (acc, x) => acc + x)\n",
    "spread": "var merged = {\n  ...base\n  extra: 1\n}\n",
    "decorated type member": "type t = {\n  @description('d')\n  a: string\n}\n",
    "literal union parameter type": "param mode 'a' | 'b'\n",
    "object parameter type": "param p {\n  a: string\n}\n",
    "resource-typed parameter": "param sa resource 'Microsoft.Storage/storageAccounts@2023-01-01'\n",
    "assert": "assert ok = true\n",
    "expression over lines": "var v = (a\n  && b)\n",
    "loop filter with a space": "var v = [for x in xs: if (x > 0) x]\n",
    "comment on a last line without newline": "var v = 1\n// end",
    "odd ''' count": "var v = 'x' // '''\n",
}


@pytest.mark.parametrize("source", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_what_pycep_cannot_read_is_as_documented(source):
    with pytest.raises(BicepSyntaxError):
        parse(source)


def test_pycep_groups_operators_right_to_left_as_documented():
    """No precedence: compare such values with expression() of the same text, never evaluate them."""
    assert render(expression("!a && b")) == "!(a && b)"
    assert render(expression("a * b + c")) == "(a * (b + c))"
    assert render(expression("a.b == c")) == "a.(b == c)"
    # the safe-dereference and non-null operators are read but dropped
    assert expression("a.?b") == expression("a.b") and expression("a!") == expression("a")


def test_syntax_errors_name_the_place():
    with pytest.raises(BicepSyntaxError, match=r"x\.bicep:3:"):
        parse("var a = {\n  b: [\n}\n", "x.bicep")


def test_comments_are_stripped_but_not_inside_strings():
    text = "var a = '} // not a comment ${b['{']}' // a comment {\nvar c = '''\n{ multi // still text\n'''\n"
    stripped = strip_comments(text)
    assert "not a comment" in stripped and "still text" in stripped
    assert "a comment {" not in stripped
    assert len(stripped) == len(text) and stripped.count("\n") == text.count("\n")
    assert strip_comments("/* a\nb */var x = 1\n") == "    \n    var x = 1\n"
    with pytest.raises(BicepSyntaxError):
        strip_comments("var a = 'unterminated\n")


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


EVALUATED_SNIPPET = """
param count int = 3
param prefix string = '10.42.64.0/18'
var token = toLower(uniqueString('x'))
var indexes = range(0, count - 1)
var names = [for i in indexes: 'env-${i + 2}']
var prefixes = [for i in indexes: cidrSubnet(prefix, 23, i)]
var ambiguous = count - 1 + 2
var pool = string(concat([
  'first'
], names))
module extra 'x.bicep' = [for i in indexes: {
  name: 'extra-${i + 2}'
  params: {
    id: other.outputs.ids[i]
    label: '${token}-${i + 2}'
    internal: i >= 0
  }
}]
module maybe 'y.bicep' = if (count > 1) {
  name: 'maybe'
}
module unsure 'z.bicep' = if (!useIt && count > 1) {
  name: 'unsure'
}
module odd 'w.bicep' = [for i in indexes: if(i > 0) {
  name: 'odd-${i}'
}]
"""


def test_evaluate_computes_what_the_parameters_decide():
    tree = parse(EVALUATED_SNIPPET)
    assert evaluate(tree, Ref("names")) == ["env-2", "env-3"]  # the default, 3
    assert evaluate(tree, Ref("names"), {"count": 1}) == []
    assert evaluate(tree, Ref("names"), {"count": 5}) == ["env-2", "env-3", "env-4", "env-5"]
    assert evaluate(tree, Ref("prefixes")) == ["10.42.64.0/23", "10.42.66.0/23"]
    assert evaluate(tree, Ref("pool")) == '["first","env-2","env-3"]'
    with pytest.raises(ValueError, match="negative"):
        evaluate(tree, Ref("names"), {"count": 0})


def test_evaluate_leaves_nested_operators_and_unknowns_alone():
    tree = parse(EVALUATED_SNIPPET)
    # pycep reads `count - 1 + 2` as count - (1 + 2): computing it would give the wrong number
    assert not known(evaluate(tree, Ref("ambiguous")))
    assert evaluate(tree, Ref("token")) == Ref("token")
    assert evaluate(tree, expression("other.outputs.ids[1]")) == expression("other.outputs.ids[1]")
    assert evaluate(tree, Ref("unbound")) == Ref("unbound")


def test_instances_are_the_bodies_per_item_with_the_item_filled_in():
    tree = parse(EVALUATED_SNIPPET)
    extra = instances(tree, "module", "extra")
    assert [body["name"] for body in extra] == ["extra-2", "extra-3"]
    assert extra[1]["params"]["id"] == expression("other.outputs.ids[1]")
    assert extra[1]["params"]["label"] == "${token}-3"  # unknown part kept as written
    assert extra[0]["params"]["internal"] is True
    assert instances(tree, "module", "extra", {"count": 1}) == []
    assert instances(tree, "module", "maybe") == [{"name": "maybe"}]
    assert instances(tree, "module", "maybe", {"count": 1}) == []
    assert [body["name"] for body in instances(tree, "module", "odd", {"count": 4})] == ["odd-1", "odd-2"]
    with pytest.raises(LookupError, match="unsure"):
        instances(tree, "module", "unsure")


def test_cidr_subnet_is_bicep_s():
    # the example of Bicep's documentation (bicep-functions-cidr)
    docs = parse("var v4subnets = [for i in range(0, 5): cidrSubnet('10.144.0.0/20', 24, i)]\n")
    assert evaluate(docs, Ref("v4subnets")) == [f"10.144.{i}.0/24" for i in range(5)]
    with pytest.raises(ValueError, match="no such subnet"):
        evaluate(docs, expression("cidrSubnet('10.144.0.0/20', 24, 16)"))


GUARDED_SNIPPET = """
param a bool = false
param b bool = false
param c bool = !a
var both = a && b
var either = a || b
var checked = both ? fail('a and b together') : b
var unknownCondition = other.outputs.flag ? fail('maybe') : b
"""


def test_evaluate_computes_logic_and_reaches_fail_only_on_the_branch_taken():
    tree = parse(GUARDED_SNIPPET)
    assert evaluate(tree, Ref("c")) is True and evaluate(tree, Ref("c"), {"a": True}) is False
    for a in (False, True):
        for b in (False, True):
            bindings = {"a": a, "b": b}
            assert evaluate(tree, Ref("both"), bindings) is (a and b)
            assert evaluate(tree, Ref("either"), bindings) is (a or b)
            if a and b:
                with pytest.raises(DeploymentFailure, match="a and b together"):
                    evaluate(tree, Ref("checked"), bindings)
            else:
                assert evaluate(tree, Ref("checked"), bindings) is b
    # a condition known only during the deployment: fail() stays as written, not raised
    residual = evaluate(tree, variable(tree, "unknownCondition"))
    assert not known(residual) and Call("fail", {"arg_1": "maybe"}) in list(walk(residual))
