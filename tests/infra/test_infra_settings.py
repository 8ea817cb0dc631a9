"""infra/ sets every setting the code reads, under the names and defaults the code uses."""

import re

import pytest
from bicepcheck import (
    INFRA,
    ROOT,
    Call,
    Loop,
    Ref,
    check_env,
    check_settings,
    container_env,
    declared,
    environment_reads,
    expression,
    get,
    module_params,
    objects,
    params,
    parse_file,
    resources,
    setting_literals,
    strip_comments,
    top_level_declarations,
    variable,
)

from acaspawner.storage_config import DEFAULT_QUEUE, DEFAULT_TABLE, poison_queue_name
from acaspawner.traits import AcaSpawnerConfig

SETTINGS_MD = ROOT / "docs" / "settings.md"
FUNCTIONS_BICEP = INFRA / "modules" / "functions.bicep"
HUB_BICEP = INFRA / "modules" / "hub.bicep"
MAIN_BICEP = INFRA / "main.bicep"
HUB_CONFIG = ROOT / "hub" / "jupyterhub_config.py"

# Documented settings that must NOT be set in Azure: the connection-string form of
# the queue/table connection (production is identity-based) and the emulator's.
NOT_IN_AZURE = {"AcaStorage", "ACA_ARM_ENDPOINT", "ACA_ARM_CA_BUNDLE", "ACA_ARM_TOKEN", "ACA_HOME_FILES_CA_BUNDLE",
                "ACA_HOME_FILES_TOKEN"}
# What the hub config reads only for local development (Azurite).
HUB_LOCAL_ONLY = {"ACA_STORAGE_CONNECTION_STRING"}
# Flex Consumption rejects these (runtime and deployment live in functionAppConfig).
FLEX_REJECTS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
}


def settings_table() -> dict[str, str]:
    """Setting name → default column of the Function App table of docs/settings.md."""
    text = SETTINGS_MD.read_text()
    section = text.split("## Function App", 1)[1].split("\n## ", 1)[0]
    found = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        # a remark in parentheses is not a default: `false`, `true` (`false` when ...)
        defaults = re.findall(r"`([^`]+)`", re.sub(r"\([^()]*\)", "", cells[2]))
        for i, name in enumerate(names):
            found[name] = defaults[i] if len(defaults) == len(names) else cells[2]
    return found


def documented_settings() -> set[str]:
    return set(settings_table())


def settings_in_code() -> set[str]:
    """``ACA_*``/``AcaStorage*`` literals in the function app's Python sources (whatever exists yet).

    The warm servers' launcher is shipped into the warm servers, not run by the Function App: the variables it
    reads are the ones the functions give each warm server's container (``ACA_SLOT_*``), no app settings.
    """
    from functions.warm_pool import LAUNCHER_FILES

    shipped = {file for _, file in LAUNCHER_FILES}
    sources = sorted(p for p in (ROOT / "functions").rglob("*.py") if p.name not in shipped)
    if (ROOT / "function_app.py").exists():
        sources.append(ROOT / "function_app.py")
    names = set()
    for path in sources:
        names |= setting_literals(path.read_text())
    return names - WARM_SERVER_ENV


# what the functions put into a warm server's container environment (functions/warm_pool.py): no app settings
WARM_SERVER_ENV = {"ACA_SLOT_DIR", "ACA_SLOT_HOST", "ACA_SLOT_KEY"}


def required_in_azure(names: set[str]) -> set[str]:
    required = names - NOT_IN_AZURE
    if "AcaStorage" in names:  # the connection is used: Azure sets its identity-based form
        required |= {"AcaStorage__queueServiceUri", "AcaStorage__tableServiceUri"}
    return required


def app_settings() -> dict:
    """Key → value (pycep's, normalised) of ``var appSettings`` in functions.bicep."""
    return variable(parse_file(FUNCTIONS_BICEP), "appSettings")


def literal(value) -> str:
    """A literal as the settings table writes it (``false``, ``10``, ``delete``)."""
    assert isinstance(value, bool | int | str) and not isinstance(value, Ref), value
    return str(value).lower() if isinstance(value, bool) else str(value)


def module_arguments(tree, name: str) -> list:
    """What every module of ``tree`` passes to its parameter ``name``."""
    arguments = (module_params(tree, module) for module in declared(tree, "module"))
    return [given[name] for given in arguments if name in given]


def test_settings_table_is_read():
    table = settings_table()
    assert len(table) > 30
    assert table["ACA_LIFECYCLE_QUEUE"] == "aca-lifecycle"
    assert "AcaStorage__queueServiceUri" in table and "AZURE_CLIENT_ID" in table


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.bicep")), ids=lambda p: p.name)
def test_pycep_reads_every_bicep_file(path):
    """pycep parses the file (a BicepSyntaxError names the line otherwise) and loses no declaration."""
    tree = parse_file(path)
    for kind, names in top_level_declarations(path.read_text()).items():
        # pycep names a nested resource <parent>__<child>
        in_tree = [name.rsplit("__", 1)[-1] for name in declared(tree, kind)]
        assert sorted(in_tree) == sorted(names), (kind, "see bicepcheck's docstring: what pycep loses")


def test_function_app_sets_every_documented_setting():
    assert (
        check_settings(FUNCTIONS_BICEP.read_text(), required_in_azure(documented_settings()), forbidden=NOT_IN_AZURE)
        == []
    )


def test_function_app_sets_every_setting_the_code_reads():
    assert (
        check_settings(FUNCTIONS_BICEP.read_text(), required_in_azure(settings_in_code()), forbidden=NOT_IN_AZURE) == []
    )


def test_function_app_sets_nothing_unknown():
    """A setting the Bicep sets but neither the docs nor the code know is a typo."""
    ours = {k for k in app_settings() if k.startswith(("ACA_", "AcaStorage"))}
    assert ours - documented_settings() - settings_in_code() == set()


def test_function_app_settings_are_wired_to_the_site():
    (site,) = resources(parse_file(FUNCTIONS_BICEP), "Microsoft.Web/sites").values()
    wired = get(site, "properties", "siteConfig", "appSettings")
    assert isinstance(wired, Loop) and wired.source == Call("items", {"arg_1": Ref("appSettings")})
    assert wired.condition is None
    assert wired.body == expression(f"{{ name: {wired.item}.key, value: {wired.item}.value }}")
    assert get(site, "properties", "keyVaultReferenceIdentity") == Ref("identityId")


def test_function_app_settings_flex_consumption_accepts():
    assert set(app_settings()) & FLEX_REJECTS == set()


def test_function_secrets_are_key_vault_references():
    values = app_settings()
    for name in ("ACA_SEALING_KEYS", "ACA_HUB_API_TOKEN"):
        assert isinstance(values[name], str) and not isinstance(values[name], Ref), name
        assert re.fullmatch(r"@Microsoft\.KeyVault\(SecretUri=\$\{vaultUris\.\w+\}\)", values[name]), name


def test_function_storage_is_identity_based():
    values = app_settings()
    assert values["AcaStorage__credential"] == values["AzureWebJobsStorage__credential"] == "managedidentity"
    assert not isinstance(values["AcaStorage__credential"], Ref)
    assert values["AcaStorage__clientId"] == values["AZURE_CLIENT_ID"] == Ref("identityClientId")
    assert values["AzureWebJobsStorage__clientId"] == Ref("identityClientId")


def hub_config_reads() -> set[str]:
    return environment_reads(HUB_CONFIG.read_text())


def test_hub_config_reads_are_found():
    reads = hub_config_reads()
    assert {"ACA_HUB_ID", "JUPYTERHUB_PUBLIC_URL", "ACA_CULL_USERS", "OAUTH_CLIENT_ID"} <= reads
    assert len(reads) > 25


def test_hub_app_sets_every_variable_the_config_reads():
    assert check_env(HUB_BICEP.read_text(), hub_config_reads() - HUB_LOCAL_ONLY, forbidden=HUB_LOCAL_ONLY) == []


def test_hub_app_sets_nothing_the_config_does_not_read():
    assert container_env(HUB_BICEP.read_text()) - hub_config_reads() == set()


def test_hub_env_is_wired_and_secret_refs_exist():
    hub = parse_file(HUB_BICEP)
    (app,) = resources(hub, "Microsoft.App/containerApps").values()
    assert get(app, "properties", "template", "containers", 0, "env") == Ref("containerEnv")
    assert get(app, "properties", "configuration", "secrets") == Ref("vaultSecrets")
    refs = {o["secretRef"] for o in objects(variable(hub, "containerEnv")) if "secretRef" in o}
    secrets = {o["name"] for name in ("requiredVaultSecrets", "oauthVaultSecret") for o in objects(variable(hub, name))}
    assert refs and refs <= secrets


def test_queue_and_table_names_agree_everywhere():
    main = strip_comments(MAIN_BICEP.read_text())
    tree = parse_file(MAIN_BICEP)
    assert variable(tree, "lifecycleQueueName") == DEFAULT_QUEUE == "aca-lifecycle"
    assert variable(tree, "poisonQueueName") == poison_queue_name(DEFAULT_QUEUE)
    assert variable(tree, "statusTableName") == DEFAULT_TABLE == "acaservers"
    table = settings_table()
    assert table["ACA_LIFECYCLE_QUEUE"] == DEFAULT_QUEUE
    assert table["ACA_STATUS_TABLE"] == DEFAULT_TABLE
    # the literals appear once; everything else uses the variables
    assert main.count(f"'{DEFAULT_QUEUE}'") == 1 and main.count(f"'{DEFAULT_TABLE}'") == 1
    assert module_arguments(tree, "queueName") == [Ref("lifecycleQueueName")] * 3  # storage, hub, functions
    assert module_arguments(tree, "tableName") == [Ref("statusTableName")] * 3
    assert app_settings()["ACA_LIFECYCLE_QUEUE"] == Ref("queueName")
    assert app_settings()["ACA_STATUS_TABLE"] == Ref("tableName")


def test_documented_defaults_are_what_azure_gets():
    """Tunables set explicitly in main.bicep carry the documented default values."""
    main = parse_file(MAIN_BICEP)
    table = settings_table()
    explicit = {
        "ACA_SEAL_MAX_AGE": "sealMaxAge",
        "ACA_ARM_POLL_INTERVAL": "armPollInterval",
        "ACA_SPAWN_DEADLINE": "spawnDeadline",
        "ACA_CULL_CONCURRENCY": "cullConcurrency",
        "ACA_CULL_PAGE_SIZE": "cullPageSize",
        "ACA_RECONCILE_MAX_ARM_CALLS": "reconcileMaxArmCalls",
        "ACA_CULL_DEFAULT_SERVERS": "cullDefaultServers",
        "ACA_CULL_NAMED_SERVERS": "cullNamedServers",
        "ACA_REMOVE_NAMED_SERVERS": "removeNamedServers",
        "ACA_CULL_DRY_RUN": "cullDryRun",
    }
    for setting, argument in explicit.items():
        (value,) = module_arguments(main, argument)
        assert literal(value) == table[setting], setting
    parameters = {
        "ACA_CULL_SCHEDULE": "cullSchedule",
        "ACA_CULL_TIMEOUT": "cullTimeout",
        "ACA_CULL_USERS": "cullUsers",
        "ACA_RECONCILE_SCHEDULE": "reconcileSchedule",
        "ACA_STUCK_AFTER": "stuckAfter",
        "ACA_STOP_MODE": "stopMode",
        "ACA_MAX_CPU": "maxCpu",
        "ACA_MAX_MEMORY": "maxMemory",
        "ACA_HOME_DELETE_ON_DELETE": "homeDeleteOnDelete",
    }
    defaults = {p.name: p.default for p in params(MAIN_BICEP.read_text())}
    for setting, parameter in parameters.items():
        assert literal(defaults[parameter]) == table[setting], setting
    # deployed other than the functions' own default, as docs/settings.md says: test_infra_culling.py
    deployed_otherwise = {"ACA_CULL_MAX_AGE": "cullMaxAge", "ACA_CULL_ADMIN_USERS": "cullAdminUsers"}
    assert set(deployed_otherwise) <= set(table)
    for setting, parameter in deployed_otherwise.items():
        assert setting not in explicit and setting not in parameters
        assert module_arguments(main, parameter) == [Ref(parameter)], setting


def test_spawn_deadline_is_below_the_hub_start_timeout():
    """A start Azure has not finished fails in the functions before the spawner gives up on it."""
    (deadline,) = module_arguments(parse_file(MAIN_BICEP), "spawnDeadline")
    start_timeout = {p.name: p for p in params(MAIN_BICEP.read_text())}["startTimeout"]
    assert start_timeout.type == "int" and isinstance(deadline, int)
    assert deadline < start_timeout.default
    assert deadline < AcaSpawnerConfig.class_traits()["start_timeout"].default_value  # 600, as docs/settings.md says
