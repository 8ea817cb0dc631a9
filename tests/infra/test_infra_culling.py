"""What infra/main.bicep deploys for the culler and the hub's limits (review M3 and L5), and that the docs say so."""

from __future__ import annotations

import re

import pytest
from bicepcheck import (
    INFRA,
    ROOT,
    DeploymentFailure,
    Ref,
    declared,
    evaluate,
    module_params,
    params,
    parse_file,
    walk,
)

MAIN_BICEP = INFRA / "main.bicep"
SETTINGS_MD = ROOT / "docs" / "settings.md"
CULLER_MD = ROOT / "docs" / "culler.md"
HUB_CONFIG = ROOT / "hub" / "jupyterhub_config.py"


def markdown_table(path, heading: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first table under ``## heading`` of a Markdown file."""
    text = path.read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows[2:]]  # past the header and its rule


def main_defaults() -> dict:
    return {p.name: p.default for p in params(MAIN_BICEP.read_text())}


def functions_argument(name: str, **bindings):
    """What main.bicep passes to the functions' module parameter ``name`` for these parameter values."""
    main = parse_file(MAIN_BICEP)
    return evaluate(main, module_params(main, "functions")[name], bindings)


# --- L5: culling users never deletes homes -----------------------------------------------------------


@pytest.mark.parametrize("cull_users", [False, True])
@pytest.mark.parametrize("delete_homes", [False, True])
def test_culling_users_with_home_deletion_is_refused_at_deployment(cull_users, delete_homes):
    bindings = {"cullUsers": cull_users, "homeDeleteOnDelete": delete_homes}
    if cull_users and delete_homes:
        with pytest.raises(DeploymentFailure, match="cullUsers and homeDeleteOnDelete cannot both be true"):
            functions_argument("homeDeleteOnDelete", **bindings)
    else:
        assert functions_argument("homeDeleteOnDelete", **bindings) is delete_homes
        assert functions_argument("cullUsers", **bindings) is cull_users


def test_home_deletion_reaches_no_module_unchecked():
    """Every module gets homeDeleteOnDelete only through the checked variable (so ARM evaluates the check)."""
    main = parse_file(MAIN_BICEP)
    for module in declared(main, "module"):
        for value in walk(module_params(main, module)):
            assert value != Ref("homeDeleteOnDelete"), module
    assert module_params(main, "functions")["homeDeleteOnDelete"] == Ref("checkedHomeDeleteOnDelete")


def test_admins_are_spared_when_users_are_culled():
    assert functions_argument("cullAdminUsers") is True  # servers only: admins' idle servers are stopped too
    assert functions_argument("cullAdminUsers", cullUsers=True) is False
    # an operator may still choose otherwise
    assert functions_argument("cullAdminUsers", cullUsers=True, cullAdminUsers=True) is True


# --- M3: servers kept "active" are culled after a maximum age ----------------------------------------


def test_servers_have_a_maximum_age_by_default():
    max_age = main_defaults()["cullMaxAge"]
    assert isinstance(max_age, int) and 0 < max_age <= 24 * 3600
    assert functions_argument("cullMaxAge") == max_age
    assert functions_argument("cullMaxAge", cullMaxAge=0) == 0


def test_the_docs_give_what_infra_deploys_instead():
    """docs/settings.md lists each culler setting main.bicep deploys other than the functions' own default."""
    rows = {row[0]: row for row in markdown_table(SETTINGS_MD, "Where `infra/` deploys other values")}
    assert set(rows) == {"`ACA_CULL_MAX_AGE`", "`ACA_CULL_ADMIN_USERS`"}
    assert rows["`ACA_CULL_MAX_AGE`"][1] == "`cullMaxAge`"
    assert rows["`ACA_CULL_MAX_AGE`"][2] == f"`{main_defaults()['cullMaxAge']}`"
    assert rows["`ACA_CULL_ADMIN_USERS`"][1] == "`cullAdminUsers`"
    assert rows["`ACA_CULL_ADMIN_USERS`"][2] == "`true`; `false` when `cullUsers` is true"
    culler = CULLER_MD.read_text()
    assert f"`cullMaxAge`) deploys `{main_defaults()['cullMaxAge']}`" in culler
    assert "`homeDeleteOnDelete`" in culler and "refuse" in culler


# --- M3: the hub's limits --------------------------------------------------------------------------


def test_the_hub_limits_are_documented_with_the_defaults_azure_gets():
    from test_hub_config import LIMITS

    rows = {row[0].strip("`"): row for row in markdown_table(SETTINGS_MD, "Hub (environment variables of the hub app)")}
    assert set(LIMITS) <= set(rows)
    defaults = main_defaults()
    for name, (_trait, default) in LIMITS.items():
        parameter = re.fullmatch(r"`(\w+)`", rows[name][1]).group(1)
        assert defaults[parameter] == default, name
        assert rows[name][3] == f"`{default}`", name
