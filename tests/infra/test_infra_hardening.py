"""The review's infrastructure items (L8 and the earlier review's S15): what infra/ changed, and what it keeps on purpose.

What stays as it is must stay as docs/security.md describes it: these tests tie
the Bicep to the reasons written there, so a change to one fails until the
other follows.
"""

from __future__ import annotations

import json
import re

import pytest
from bicepcheck import (
    INFRA,
    ROOT,
    Ref,
    declared,
    evaluate,
    expression,
    get,
    module_params,
    params,
    parse_file,
    resources,
    role_assignments,
    walk,
)

MODULES = INFRA / "modules"
SECURITY_MD = ROOT / "docs" / "security.md"
DOCKERFILE = ROOT / "hub" / "Dockerfile"

# resource types whose public network access docs/security.md accounts for
NETWORKED = (
    "Microsoft.KeyVault/vaults",
    "Microsoft.Storage/storageAccounts",
    "Microsoft.ContainerRegistry/registries",
    "Microsoft.DBforPostgreSQL/flexibleServers",
)


def security_section(heading: str) -> str:
    """The text under ``## heading`` (or ``### heading``) of docs/security.md, up to the next heading of that level."""
    text = SECURITY_MD.read_text()
    for marks in ("## ", "### "):
        start = text.find(f"\n{marks}{heading}\n")
        if start >= 0:
            body = text[start + len(marks) + len(heading) + 2 :]
            end = body.find(f"\n{marks}")
            return body if end < 0 else body[:end]
    raise LookupError(f"docs/security.md has no section {heading!r}")


# --- Key Vault purge protection ------------------------------------------------------------------


def vault_property(name: str, **bindings):
    tree = parse_file(MODULES / "keyvault.bicep")
    (vault,) = resources(tree, "Microsoft.KeyVault/vaults").values()
    return evaluate(tree, get(vault, "properties", name), bindings)


def test_purge_protection_is_a_deployment_choice_never_a_literal_false():
    """ARM refuses enablePurgeProtection: false; off means the property is left out (null)."""
    assert vault_property("enablePurgeProtection", purgeProtection=True) is True
    assert vault_property("enablePurgeProtection", purgeProtection=False) is None
    assert vault_property("enableSoftDelete") is True and vault_property("softDeleteRetentionInDays") == 7
    main = parse_file(INFRA / "main.bicep")
    assert module_params(main, "vault")["purgeProtection"] == Ref("vaultPurgeProtection")
    (parameter,) = [p for p in params((INFRA / "main.bicep").read_text()) if p.name == "vaultPurgeProtection"]
    assert parameter.type == "bool" and parameter.default is False  # why off: docs/security.md
    assert "`vaultPurgeProtection=true`" in security_section("Key Vault purge protection")


# --- public network access -------------------------------------------------------------------------


def public_access_in_bicep() -> dict[str, str]:
    """``<module file>`` → publicNetworkAccess of the one networked resource it deploys."""
    found = {}
    for path in sorted(MODULES.glob("*.bicep")):
        tree = parse_file(path)
        for type_ in NETWORKED:
            for body in resources(tree, type_).values():
                properties = body["properties"]
                access = properties.get("publicNetworkAccess", get(properties, "network", "publicNetworkAccess")
                                        if "network" in properties else None)
                assert path.name not in found, f"{path.name}: more than one networked resource"
                found[path.name] = access
    return found


def public_access_in_docs() -> dict[str, str]:
    """``<module file>`` → public network access, from the table of docs/security.md."""
    rows = {}
    for line in security_section("Public endpoints").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        module = re.fullmatch(r"`infra/modules/([\w-]+\.bicep)`", cells[1]) if len(cells) > 2 else None
        if module:
            rows[module.group(1)] = cells[2].strip("`")
    return rows


def test_every_public_endpoint_is_in_the_docs_with_its_reason():
    bicep = public_access_in_bicep()
    assert set(bicep) == {"keyvault.bicep", "storage-lifecycle.bicep", "storage-functions.bicep",
                          "storage-homes.bicep", "registry.bicep", "postgres.bicep"}
    assert public_access_in_docs() == bicep


def test_the_reason_for_public_endpoints_holds_the_function_app_is_not_in_the_network():
    """docs/security.md keeps the endpoints public because the Flex Consumption app reaches them from outside the VNet."""
    tree = parse_file(MODULES / "functions.bicep")
    (site,) = resources(tree, "Microsoft.Web/sites").values()
    assert "virtualNetworkSubnetId" not in site["properties"]
    (registry,) = resources(parse_file(MODULES / "registry.bicep"), "Microsoft.ContainerRegistry/registries").values()
    assert get(registry, "sku", "name") == "Basic"  # network rules and private endpoints need Premium
    assert get(registry, "properties", "adminUserEnabled") is False


# --- the functions' file role: on the homes account, which holds the homes share and nothing else ----------


def test_the_homes_account_holds_one_share_so_its_role_reaches_no_further():
    """Why the role is not scoped to the share (docs/security.md): the account is the share."""
    tree = parse_file(MODULES / "storage-homes.bicep")
    types = {attributes["type"] for attributes in declared(tree, "resource").values()}
    assert types == {
        "Microsoft.Storage/storageAccounts",
        "Microsoft.Storage/storageAccounts/fileServices",
        "Microsoft.Storage/storageAccounts/fileServices/shares",
        "Microsoft.Authorization/roleAssignments",
    }
    assert len(resources(tree, "Microsoft.Storage/storageAccounts/fileServices/shares")) == 1
    (assignment,) = role_assignments((MODULES / "storage-homes.bicep").read_text())
    assert (assignment.role, assignment.principal, assignment.scope) == (
        "Storage File Data Privileged Contributor", "functionsPrincipalId", "account")
    # nothing else is put in that account: no other module names it
    main = parse_file(INFRA / "main.bicep")
    account = expression("homesStorage.outputs.accountName")
    users = {m for m in declared(main, "module") if any(v == account for v in walk(module_params(main, m)))}
    assert users == {"appsEnvironment", "extraEnvironments"}  # environment storage for the SMB mounts
    assert "fileshares" in security_section("The functions' file role").lower()


# --- the hub image -----------------------------------------------------------------------------------


def test_the_proxy_runs_on_a_node_lts_line_still_supported():
    dockerfile = DOCKERFILE.read_text()
    node = re.search(r"^FROM node:(\d+)-(\w+)-slim AS proxy$", dockerfile, re.MULTILINE)
    major, debian = int(node.group(1)), node.group(2)
    # even majors are the LTS lines; Node 20's support ended 2026-04-30, 22's ends 2027-04-30
    assert major % 2 == 0 and major >= 24
    # node is copied into the Python stage: the same Debian release, the same libc
    assert re.search(rf"^FROM python:3\.11-slim-{debian}$", dockerfile, re.MULTILINE)
    # and configurable-http-proxy accepts it (engines of the version the tests run, when installed)
    chp = ROOT / "node_modules" / "configurable-http-proxy" / "package.json"
    if chp.exists():
        engines = json.loads(chp.read_text())["engines"]["node"]
        assert int(re.fullmatch(r">=\s*(\d+)", engines).group(1)) <= major


def test_what_is_left_as_it_is_is_as_the_docs_say():
    """docs/security.md, "Left as they are": no peer traffic encryption, user names from upn by default."""
    left = security_section("Left as they are")
    for path in MODULES.glob("*.bicep"):
        assert "peerTrafficConfiguration" not in path.read_text(), path.name
    assert "`peerTrafficConfiguration`" in left
    defaults = {p.name: p.default for p in params((INFRA / "main.bicep").read_text())}
    assert defaults["aadUsernameClaim"] == "upn" and "`upn`" in left and "`oid`" in left


@pytest.mark.parametrize("path", sorted(MODULES.glob("*.bicep")), ids=lambda p: p.name)
def test_no_module_turns_purge_protection_off_explicitly(path):
    """A literal ``enablePurgeProtection: false`` fails the deployment (ARM: it cannot be set to false)."""
    assert not re.search(r"enablePurgeProtection:\s*false", path.read_text())
