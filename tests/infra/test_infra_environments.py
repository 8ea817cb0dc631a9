"""The pool of Container Apps environments (main.bicep's environmentCount): one is today's deployment, N are wired.

Evaluated from the Bicep for a given count (``bicepcheck.evaluate``/``instances``):
what each loop deploys, and what each instance is given. Module outputs stay
expressions (``extraEnvironments[1].outputs.id``), which is what tells that the
right environment's value reaches the right place.
"""

import ipaddress
import json

import pytest
from bicepcheck import (
    INFRA,
    ROOT,
    Loop,
    Ref,
    declared,
    evaluate,
    expression,
    get,
    instances,
    known,
    module_params,
    output,
    params,
    parse_file,
    resource,
    resources,
    variable,
)

from functions.environments import parse_environments

MAIN = INFRA / "main.bicep"
MODULES = INFRA / "modules"
DEPLOY_MD = ROOT / "docs" / "deploy.md"

# Every module main.bicep deployed before the pool had more than one environment: with
# environmentCount = 1 exactly these are deployed, the registry ones as before on their condition.
TODAY_MODULES = {
    "identities": "modules/identities.bicep",
    "monitoring": "modules/monitoring.bicep",
    "workbook": "modules/workbook.bicep",
    "network": "modules/network.bicep",
    "lifecycleStorage": "modules/storage-lifecycle.bicep",
    "functionsStorage": "modules/storage-functions.bicep",
    "homesStorage": "modules/storage-homes.bicep",
    "postgres": "modules/postgres.bicep",
    "vault": "modules/keyvault.bicep",
    "appsEnvironment": "modules/environment.bicep",
    "customRoles": "modules/custom-roles.bicep",
    "environmentAccess": "modules/environment-access.bicep",
    "usersAccess": "modules/users-access.bicep",
    "existingHub": "modules/fetch-container-image.bicep",
    "hub": "modules/hub.bicep",
    "functions": "modules/functions.bicep",
}
TODAY_CONDITIONAL_MODULES = {
    "registry": "modules/registry.bicep",
    "existingRegistryAccess": "modules/registry-access.bicep",
}

# The network's subnets before: exactly these two, as the literal was written.
TODAY_SUBNETS = """[
  {
    name: 'apps'
    properties: {
      addressPrefix: appsSubnetPrefix
      delegations: [
        {
          name: 'containerapps'
          properties: {
            serviceName: 'Microsoft.App/environments'
          }
        }
      ]
    }
  }
  {
    name: 'postgres'
    properties: {
      addressPrefix: postgresSubnetPrefix
      delegations: [
        {
          name: 'postgres'
          properties: {
            serviceName: 'Microsoft.DBforPostgreSQL/flexibleServers'
          }
        }
      ]
    }
  }
]"""

ENV_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-x/providers/Microsoft.App/managedEnvironments/{}"
HUB_API_URL = "https://hub.example.org/hub/api"  # functions.bicep gets main.bicep's '${publicUrl}hub/api'
HUB_SUBNET = "10.42.0.0/23"  # main.bicep gives functions.bicep its appsSubnetPrefix


def main():
    return parse_file(MAIN)


def count_param():
    return {p.name: p for p in params(MAIN.read_text())}["environmentCount"]


# two, three and the most the parameter allows
COUNTS = [2, 3, count_param().decorator("max_value")["argument"]]


def deployed(tree, name, count):
    return instances(tree, "module", name, {"environmentCount": count})


def defaults(path) -> dict:
    return {p.name: p.default for p in params(path.read_text()) if p.has_default}


def subnets(extra_prefixes: list) -> list:
    network = parse_file(MODULES / "network.bicep")
    (vnet,) = resources(network, "Microsoft.Network/virtualNetworks").values()
    return evaluate(network, get(vnet, "properties", "subnets"), {"extraAppsSubnetPrefixes": extra_prefixes})


def aca_environments(environment_id: str, extra_ids: list, budget: int = 100) -> str:
    functions = parse_file(MODULES / "functions.bicep")
    bindings = {"environmentId": environment_id, "extraEnvironmentIds": extra_ids, "environmentCoreBudget": budget,
                "hubApiUrl": HUB_API_URL, "hubSubnetPrefix": HUB_SUBNET}
    value = evaluate(functions, variable(functions, "appSettings")["ACA_ENVIRONMENTS"], bindings)
    assert isinstance(value, str) and known(value), value
    return value


# --- the parameter ---------------------------------------------------------------------------


def test_environment_count_parameter():
    p = count_param()
    assert p.type == "int" and p.default == 1
    assert p.decorator("min_value")["argument"] == 1
    # at most the default regional quota of environments per subscription (15)
    assert 1 < p.decorator("max_value")["argument"] <= 15
    assert "docs/deploy.md" in p.decorator("description")["argument"]


# --- one environment: today's deployment -----------------------------------------------------


def test_one_environment_deploys_todays_modules_and_nothing_more():
    tree = main()
    declared_modules = declared(tree, "module")
    counts = {}
    for name, attributes in declared_modules.items():
        if name in TODAY_CONDITIONAL_MODULES:
            assert attributes["detail"]["path"] == TODAY_CONDITIONAL_MODULES[name]
            continue
        counts[name] = len(deployed(tree, name, 1))
    assert {name: n for name, n in counts.items() if n} == dict.fromkeys(TODAY_MODULES, 1)
    for name, path in TODAY_MODULES.items():
        assert declared_modules[name]["detail"]["path"] == path, name
        assert not isinstance(declared_modules[name]["config"], Loop), name
    # what main.bicep deploys itself: the two resource groups, as before
    assert set(resources(tree)) == {"hubGroup", "usersGroup"}
    # the new ones are loops, empty with one environment
    new = {name for name in declared_modules if name not in TODAY_MODULES | TODAY_CONDITIONAL_MODULES}
    assert new == {"extraEnvironments", "extraEnvironmentDns", "extraEnvironmentAccess"}
    assert all(isinstance(declared_modules[name]["config"], Loop) for name in new)


def test_one_environment_keeps_the_environment_and_network_of_today():
    tree = main()
    (environment,) = deployed(tree, "appsEnvironment", 1)
    assert environment["name"] == "environment"
    assert environment["params"]["name"] == "cae-${token}"
    assert environment["params"]["internal"] is False
    assert environment["params"]["infrastructureSubnetId"] == expression("network.outputs.appsSubnetId")
    (network,) = deployed(tree, "network", 1)
    assert network["params"]["extraAppsSubnetPrefixes"] == []
    assert subnets([]) == expression(TODAY_SUBNETS)
    (functions,) = deployed(tree, "functions", 1)
    assert functions["params"]["extraEnvironmentIds"] == []
    assert functions["params"]["environmentId"] == expression("appsEnvironment.outputs.id")


def test_one_environment_sets_the_one_element_pool():
    raw = aca_environments(ENV_ID.format("cae-a"), [], budget=80)
    assert json.loads(raw) == [{"id": ENV_ID.format("cae-a"), "cores": 80}]
    (budget,) = parse_environments(raw, ENV_ID.format("cae-a"))
    assert budget.cores == 80


def test_only_internal_environments_get_a_private_dns_zone():
    """With one environment the only private DNS zone is PostgreSQL's, as before."""
    tree = main()
    zones = set()
    for name in declared(tree, "module"):
        if name in TODAY_CONDITIONAL_MODULES or not deployed(tree, name, 1):
            continue
        path = MODULES / declared(tree, "module")[name]["detail"]["path"].removeprefix("modules/")
        if resources(parse_file(path), "Microsoft.Network/privateDnsZones"):
            zones.add(name)
    assert zones == {"postgres"}


# --- N environments ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", COUNTS)
def test_environments_two_to_n_are_internal_and_like_the_first(count):
    tree = main()
    (first,) = deployed(tree, "appsEnvironment", count)
    extra = deployed(tree, "extraEnvironments", count)
    assert len(extra) == count - 1
    assert [body["name"] for body in extra] == [f"environment-{k}" for k in range(2, count + 1)]
    same = {
        key: value
        for key, value in first["params"].items()
        if key not in ("name", "infrastructureSubnetId", "internal")
    }
    # the same workload profiles, homes storage (account, share, storage name) and logs
    assert {"dedicatedWorkloadProfiles", "homesAccountName", "homeStorageName", "homeShareName"} <= set(same)
    for k, body in enumerate(extra, start=2):
        assert body["scope"] == Ref("hubGroup")
        assert body["params"]["name"] == f"cae-${{token}}-{k}"
        assert body["params"]["internal"] is True
        assert body["params"]["infrastructureSubnetId"] == expression(f"network.outputs.extraAppsSubnetIds[{k - 2}]")
        assert {key: value for key, value in body["params"].items() if key in same} == same
    names = [first["params"]["name"]] + [body["params"]["name"] for body in extra]
    assert len(set(names)) == count


def test_the_environment_module_sets_internal_and_exposes_the_static_ip():
    environment = parse_file(MODULES / "environment.bicep")
    managed = resource(environment, "managedEnvironment")
    assert get(managed, "properties", "vnetConfiguration") == {
        "infrastructureSubnetId": Ref("infrastructureSubnetId"),
        "internal": Ref("internal"),
    }
    assert output(environment, "staticIp") == expression("managedEnvironment.properties.staticIp")
    assert output(environment, "defaultDomain") == expression("managedEnvironment.properties.defaultDomain")
    homes = resource(environment, "homes")
    assert homes["parent"] == Ref("managedEnvironment") and homes["name"] == Ref("homeStorageName")


@pytest.mark.parametrize("count", COUNTS)
def test_each_environment_has_its_own_subnet_in_the_network(count):
    tree = main()
    (network,) = deployed(tree, "network", count)
    prefixes = network["params"]["extraAppsSubnetPrefixes"]
    assert len(prefixes) == count - 1 and known(prefixes)
    every = subnets(prefixes)
    assert [s["name"] for s in every] == ["apps", "postgres"] + [f"apps-{k}" for k in range(2, count + 1)]
    for s in every[2:]:
        assert get(s, "properties", "delegations") == [
            {"name": "containerapps", "properties": {"serviceName": "Microsoft.App/environments"}}
        ]
    main_defaults = defaults(MAIN)
    vnet = ipaddress.ip_network(main_defaults["vnetAddressPrefix"])
    ranges = [
        ipaddress.ip_network(main_defaults["appsSubnetPrefix"]),
        ipaddress.ip_network(main_defaults["postgresSubnetPrefix"]),
    ]
    ranges += [ipaddress.ip_network(prefix) for prefix in prefixes]
    for i, a in enumerate(ranges):
        assert a.subnet_of(vnet), a
        # workload-profiles environments need /27 or larger; these are as large as the first (/23)
        assert a.prefixlen <= 27
        for b in ranges[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    network_tree = parse_file(MODULES / "network.bicep")
    ids = evaluate(network_tree, output(network_tree, "extraAppsSubnetIds"), {"extraAppsSubnetPrefixes": prefixes})
    assert [get(i.args, "resource_name_2") for i in ids] == [f"apps-{k}" for k in range(2, count + 1)]
    assert all(i.args["resource_type"] == "Microsoft.Network/virtualNetworks/subnets" for i in ids)


@pytest.mark.parametrize("count", COUNTS)
def test_each_internal_environment_gets_a_dns_zone_linked_to_the_network(count):
    tree = main()
    dns = deployed(tree, "extraEnvironmentDns", count)
    assert len(dns) == count - 1
    for j, body in enumerate(dns):
        assert body["name"] == f"environment-dns-{j + 2}"
        assert body["scope"] == Ref("hubGroup")
        assert body["params"]["defaultDomain"] == expression(f"extraEnvironments[{j}].outputs.defaultDomain")
        assert body["params"]["staticIp"] == expression(f"extraEnvironments[{j}].outputs.staticIp")
        assert body["params"]["vnetId"] == expression("network.outputs.vnetId")


def test_the_dns_zone_sends_every_app_name_to_the_static_ip():
    dns = parse_file(MODULES / "environment-dns.bicep")
    zone = resource(dns, "zone")
    assert zone["name"] == Ref("defaultDomain") and zone["location"] == "global"
    records = resources(dns, "Microsoft.Network/privateDnsZones/A")
    # `*`: <app>.<default domain>, the name of an app with (network-only) external ingress
    assert [(r["parent"], r["name"]) for r in records.values()] == [(Ref("zone"), "*")]
    (record,) = records.values()
    assert get(record, "properties", "aRecords") == [{"ipv4Address": Ref("staticIp")}]
    (link,) = resources(dns, "Microsoft.Network/privateDnsZones/virtualNetworkLinks").values()
    assert link["parent"] == Ref("zone")
    assert get(link, "properties") == {"registrationEnabled": False, "virtualNetwork": {"id": Ref("vnetId")}}


@pytest.mark.parametrize("count", COUNTS)
def test_the_functions_may_join_every_environment(count):
    tree = main()
    (first,) = deployed(tree, "environmentAccess", count)
    access = deployed(tree, "extraEnvironmentAccess", count)
    assert len(access) == count - 1
    assert first["params"]["environmentName"] == expression("appsEnvironment.outputs.name")
    for j, body in enumerate(access):
        assert body["name"] == f"environment-access-{j + 2}"
        assert body["scope"] == Ref("hubGroup")  # the custom role is assignable in the hub's group only
        assert body["params"]["environmentName"] == expression(f"extraEnvironments[{j}].outputs.name")
        for key in ("functionsPrincipalId", "environmentJoinerRoleId", "pullIdentityName"):
            assert body["params"][key] == first["params"][key], key
        # a role on the pull identity, not on an environment: granted once, by environmentAccess
        assert body["params"]["allowPullIdentityAssignment"] is False
    assert module_params(tree, "environmentAccess")["allowPullIdentityAssignment"] == expression(
        "userImagesFromRegistry && !empty(registryServer)"
    )
    (functions,) = deployed(tree, "functions", count)
    assert {Ref("environmentAccess"), Ref("extraEnvironmentAccess")} <= set(functions["dependsOn"])


@pytest.mark.parametrize("count", COUNTS)
def test_aca_environments_lists_every_environment(count):
    tree = main()
    (functions,) = deployed(tree, "functions", count)
    assert functions["params"]["extraEnvironmentIds"] == [
        expression(f"extraEnvironments[{j}].outputs.id") for j in range(count - 1)
    ]
    assert module_params(tree, "functions")["environmentCoreBudget"] == Ref("environmentCoreBudget")
    # servers there accept only the hub's proxy: its environment's subnet
    assert module_params(tree, "functions")["hubSubnetPrefix"] == Ref("appsSubnetPrefix")
    ids = [ENV_ID.format("cae-a")] + [ENV_ID.format(f"cae-a-{k}") for k in range(2, count + 1)]
    raw = aca_environments(ids[0], ids[1:])
    # the others: the network's ingress for their apps, and the hub API at an address that resolves there
    others = [{"id": i, "cores": 100, "vnet_ingress": True, "hub_api_url": HUB_API_URL, "allow_from": [HUB_SUBNET]}
              for i in ids[1:]]
    assert json.loads(raw) == [{"id": ids[0], "cores": 100}, *others]
    pool = parse_environments(raw, ids[0])  # what the functions read from it
    assert [b.id for b in pool] == ids and all(b.cores == 100 for b in pool)
    assert [b.vnet_ingress for b in pool] == [False] + [True] * (len(ids) - 1)
    assert all(b.hub_api_url == HUB_API_URL for b in pool[1:]) and pool[0].hub_api_url == ""


@pytest.mark.parametrize("count", COUNTS)
def test_deployment_names_stay_unique(count):
    tree = main()
    names = []
    for name in declared(tree, "module"):
        if name not in TODAY_CONDITIONAL_MODULES:
            names += [body["name"] for body in deployed(tree, name, count)]
    assert len(names) == len(set(names)), sorted(names)


def test_deploy_md_explains_more_than_one_environment():
    text = DEPLOY_MD.read_text()
    assert "\n### More than one environment\n" in text or "\n## More than one environment\n" in text
    section = text.split("More than one environment\n", 1)[1].split("\n## ", 1)[0]
    for needed in ("environmentCount", "100", "private DNS", "staticIp", "Not verified"):
        assert needed in section, needed
