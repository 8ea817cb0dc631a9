"""Users' homes on the local stack, made the way the deployment makes them in Azure.

``infra/`` creates a storage account with the ``homes`` file share and adds it
to every Container Apps environment as the environment storage ``homes``
(``infra/modules/environment.bicep``). Here the same two steps go to the
emulator: the share through its Files data plane, the environment storage
through ARM, both with the real SDK clients. :func:`provision_homes` returns
the functions' app settings that point at them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.mgmt.appcontainers import ContainerAppsAPIClient
from azure.storage.fileshare import ShareClient

from .emulator.client import StaticTokenCredential

ACCOUNT = "sthomes"  # the homes storage account (its own, apart from the queue/table account, as in Azure)
SHARE = "homes"
STORAGE_NAME = "homes"
EMULATOR_TOKEN = "local-emulator"  # the emulator's ARM and Files endpoints only check that a token is sent
# SMB needs the account key in Azure; the emulator stores it and never answers it
EMULATOR_ACCOUNT_KEY = "bG9jYWwtZW11bGF0b3Itbm90LWEtc2VjcmV0"


def provision_homes(emulator_info: dict[str, Any], environments: Iterable[str] | None = None) -> dict[str, str]:
    """Create the homes share and the ``homes`` storage on each environment; the functions' home settings.

    ``emulator_info``: what the emulator prints at start (``Emulator.info()``).
    ``environments``: environment names (default: every environment of the emulator).
    """
    ca_bundle = emulator_info["ca_bundle"]
    account_url = f"{emulator_info['files_endpoint']}/{ACCOUNT}"
    share = ShareClient(account_url, SHARE, credential=StaticTokenCredential(EMULATOR_TOKEN), token_intent="backup",
                        connection_verify=ca_bundle)
    try:
        share.create_share()
    except ResourceExistsError:
        pass
    finally:
        share.close()
    names = list(environments) if environments is not None else [e["name"] for e in emulator_info["environments"]]
    client = ContainerAppsAPIClient(StaticTokenCredential(EMULATOR_TOKEN), emulator_info["subscription_id"],
                                    base_url=emulator_info["arm_endpoint"], connection_verify=ca_bundle,
                                    credential_scopes=["https://management.azure.com/.default"])
    try:
        for name in names:
            client.managed_environments_storages.create_or_update(
                emulator_info["resource_group"], name, STORAGE_NAME,
                {"properties": {"azureFile": {"accountName": ACCOUNT, "accountKey": EMULATOR_ACCOUNT_KEY,
                                              "shareName": SHARE, "accessMode": "ReadWrite"}}})
    finally:
        client.close()
    return {
        "ACA_HOME_STORAGE_NAME": STORAGE_NAME,
        "ACA_HOME_FILES_ACCOUNT_URL": account_url,
        "ACA_HOME_SHARE_NAME": SHARE,
        "ACA_HOME_FILES_CA_BUNDLE": ca_bundle,
        "ACA_HOME_FILES_TOKEN": EMULATOR_TOKEN,
    }


def share_dir(emulator_info: dict[str, Any]) -> str:
    """Where the homes share lives on this machine (``<emulator state>/files/<account>/<share>``)."""
    return f"{emulator_info['state_dir']}/files/{ACCOUNT}/{SHARE}"
