"""infra/ sets every setting the code reads, under the names and defaults the code uses."""

import re

import pytest
from bicepcheck import (
    INFRA,
    ROOT,
    check_balanced,
    check_env,
    check_settings,
    declaration_block,
    environment_reads,
    name_entries,
    object_keys,
    setting_literals,
    strip_comments,
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
NOT_IN_AZURE = {"AcaStorage", "ACA_ARM_ENDPOINT", "ACA_ARM_CA_BUNDLE", "ACA_ARM_TOKEN"}
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
        defaults = re.findall(r"`([^`]+)`", cells[2])
        for i, name in enumerate(names):
            found[name] = defaults[i] if len(defaults) == len(names) else cells[2]
    return found


def documented_settings() -> set[str]:
    return set(settings_table())


def settings_in_code() -> set[str]:
    """``ACA_*``/``AcaStorage*`` literals in the function app's Python sources (whatever exists yet)."""
    sources = sorted((ROOT / "functions").rglob("*.py"))
    if (ROOT / "function_app.py").exists():
        sources.append(ROOT / "function_app.py")
    names = set()
    for path in sources:
        names |= setting_literals(path.read_text())
    return names


def required_in_azure(names: set[str]) -> set[str]:
    required = names - NOT_IN_AZURE
    if "AcaStorage" in names:  # the connection is used: Azure sets its identity-based form
        required |= {"AcaStorage__queueServiceUri", "AcaStorage__tableServiceUri"}
    return required


def app_settings() -> dict[str, str]:
    """Key → value text of ``var appSettings`` in functions.bicep."""
    block = declaration_block(FUNCTIONS_BICEP.read_text(), "var", "appSettings")
    values = {}
    for line in strip_comments(block).splitlines():
        found = re.match(r"\s*([A-Za-z_]\w*):\s*(.+?)\s*$", line)
        if found:
            values[found.group(1)] = found.group(2)
    assert set(values) == set(object_keys(block))
    return values


def test_settings_table_is_read():
    table = settings_table()
    assert len(table) > 30
    assert table["ACA_LIFECYCLE_QUEUE"] == "aca-lifecycle"
    assert "AcaStorage__queueServiceUri" in table and "AZURE_CLIENT_ID" in table


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.bicep")), ids=lambda p: p.name)
def test_bicep_files_are_balanced(path):
    assert check_balanced(path.read_text()) == []


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
    text = strip_comments(FUNCTIONS_BICEP.read_text())
    assert re.search(r"appSettings:\s*\[\s*for\s+(\w+)\s+in\s+items\(appSettings\)", text)
    assert "keyVaultReferenceIdentity: identityId" in text


def test_function_app_settings_flex_consumption_accepts():
    assert set(app_settings()) & FLEX_REJECTS == set()


def test_function_secrets_are_key_vault_references():
    values = app_settings()
    for name in ("ACA_SEALING_KEYS", "ACA_HUB_API_TOKEN"):
        assert values[name].startswith("'@Microsoft.KeyVault(SecretUri=${"), name


def test_function_storage_is_identity_based():
    values = app_settings()
    assert values["AcaStorage__credential"] == "'managedidentity'"
    assert values["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert values["AcaStorage__clientId"] == values["AZURE_CLIENT_ID"] == "identityClientId"
    assert values["AzureWebJobsStorage__clientId"] == "identityClientId"


def hub_config_reads() -> set[str]:
    return environment_reads(HUB_CONFIG.read_text())


def test_hub_config_reads_are_found():
    reads = hub_config_reads()
    assert {"ACA_HUB_ID", "JUPYTERHUB_PUBLIC_URL", "ACA_CULL_USERS", "OAUTH_CLIENT_ID"} <= reads
    assert len(reads) > 25


def test_hub_app_sets_every_variable_the_config_reads():
    assert check_env(HUB_BICEP.read_text(), hub_config_reads() - HUB_LOCAL_ONLY, forbidden=HUB_LOCAL_ONLY) == []


def test_hub_app_sets_nothing_the_config_does_not_read():
    names = name_entries(declaration_block(HUB_BICEP.read_text(), "var", "containerEnv"))
    assert names - hub_config_reads() == set()


def test_hub_env_is_wired_and_secret_refs_exist():
    text = strip_comments(HUB_BICEP.read_text())
    assert "env: containerEnv" in text
    refs = set(re.findall(r"secretRef:\s*'([^']+)'", text))
    secrets = set(re.findall(r"\{\s*name:\s*'([^']+)',\s*keyVaultUrl:", text))
    assert refs and refs <= secrets


def test_queue_and_table_names_agree_everywhere():
    main = strip_comments(MAIN_BICEP.read_text())

    def var(name):
        return re.search(rf"^var {name} = '([^']*)'$", main, re.MULTILINE).group(1)

    assert var("lifecycleQueueName") == DEFAULT_QUEUE == "aca-lifecycle"
    assert var("poisonQueueName") == poison_queue_name(DEFAULT_QUEUE)
    assert var("statusTableName") == DEFAULT_TABLE == "acaservers"
    table = settings_table()
    assert table["ACA_LIFECYCLE_QUEUE"] == DEFAULT_QUEUE
    assert table["ACA_STATUS_TABLE"] == DEFAULT_TABLE
    # the literals appear once; everything else uses the variables
    assert main.count(f"'{DEFAULT_QUEUE}'") == 1 and main.count(f"'{DEFAULT_TABLE}'") == 1
    assert len(re.findall(r"queueName: lifecycleQueueName", main)) == 3  # storage, hub, functions
    assert len(re.findall(r"tableName: statusTableName", main)) == 3
    assert app_settings()["ACA_LIFECYCLE_QUEUE"] == "queueName"
    assert app_settings()["ACA_STATUS_TABLE"] == "tableName"


def test_documented_defaults_are_what_azure_gets():
    """Tunables set explicitly in main.bicep carry the documented default values."""
    main = strip_comments(MAIN_BICEP.read_text())
    table = settings_table()
    explicit = {
        "ACA_SEAL_MAX_AGE": "sealMaxAge",
        "ACA_ARM_POLL_INTERVAL": "armPollInterval",
        "ACA_SPAWN_DEADLINE": "spawnDeadline",
        "ACA_CULL_CONCURRENCY": "cullConcurrency",
        "ACA_CULL_PAGE_SIZE": "cullPageSize",
        "ACA_RECONCILE_MAX_ARM_CALLS": "reconcileMaxArmCalls",
        "ACA_CULL_ADMIN_USERS": "cullAdminUsers",
        "ACA_CULL_DEFAULT_SERVERS": "cullDefaultServers",
        "ACA_CULL_NAMED_SERVERS": "cullNamedServers",
        "ACA_REMOVE_NAMED_SERVERS": "removeNamedServers",
        "ACA_CULL_DRY_RUN": "cullDryRun",
    }
    for setting, argument in explicit.items():
        value = re.search(rf"^\s*{argument}: (\S+)$", main, re.MULTILINE).group(1)
        assert value == table[setting], setting
    parameters = {
        "ACA_CULL_SCHEDULE": "cullSchedule",
        "ACA_CULL_TIMEOUT": "cullTimeout",
        "ACA_CULL_MAX_AGE": "cullMaxAge",
        "ACA_CULL_USERS": "cullUsers",
        "ACA_RECONCILE_SCHEDULE": "reconcileSchedule",
        "ACA_STUCK_AFTER": "stuckAfter",
        "ACA_STOP_MODE": "stopMode",
        "ACA_MAX_CPU": "maxCpu",
        "ACA_MAX_MEMORY": "maxMemory",
        "ACA_HOME_DELETE_ON_DELETE": "homeDeleteOnDelete",
    }
    for setting, parameter in parameters.items():
        default = re.search(rf"^param {parameter} \w+ = '?([^'\n]*)'?$", main, re.MULTILINE).group(1)
        assert default == table[setting], setting


def test_spawn_deadline_is_below_the_hub_start_timeout():
    """A start Azure has not finished fails in the functions before the spawner gives up on it."""
    main = strip_comments(MAIN_BICEP.read_text())
    deadline = int(re.search(r"^\s*spawnDeadline: (\d+)$", main, re.MULTILINE).group(1))
    start_timeout = int(re.search(r"^param startTimeout int = (\d+)$", main, re.MULTILINE).group(1))
    assert deadline < start_timeout
    assert deadline < AcaSpawnerConfig.class_traits()["start_timeout"].default_value  # 600, as docs/settings.md says
