"""Users' home folders: sub paths of the one Azure Files share behind the home storage.

Whether ACA creates a missing ``subPath`` folder is undocumented, so a start
creates it through the Files API before the app exists; a delete may remove
it (``ACA_HOME_DELETE_ON_DELETE``). :class:`HomeFolders` is the small
interface the lifecycle uses, so tests can swap the share for a recorder.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from acaspawner.identity import azure_credential

from .settings import Settings

log = logging.getLogger(__name__)


class HomeFolders(Protocol):
    def ensure(self, sub_path: str) -> None:
        """Create ``sub_path`` (and its parents) if missing."""

    def delete(self, sub_path: str) -> None:
        """Remove ``sub_path`` and everything below it; nothing if it is missing."""


class AzureFilesHomes:
    """Home folders in an Azure Files share, reached with the functions' identity."""

    def __init__(self, account_url: str, share_name: str, credential: Any, *, connection_verify: str | bool = True):
        from azure.storage.fileshare import ShareClient

        # token access to file data needs the "backup" intent (Storage File Data Privileged Contributor)
        self.share = ShareClient(account_url, share_name, credential=credential, token_intent="backup",
                                 connection_verify=connection_verify)

    def ensure(self, sub_path: str) -> None:
        path = ""
        for part in sub_path.strip("/").split("/"):
            path = f"{path}/{part}" if path else part
            try:
                self.share.get_directory_client(path).create_directory()
            except ResourceExistsError:
                pass

    def delete(self, sub_path: str) -> None:
        try:
            self._delete_tree(sub_path.strip("/"))
        except ResourceNotFoundError:
            pass

    def _delete_tree(self, path: str) -> None:
        directory = self.share.get_directory_client(path)
        for item in directory.list_directories_and_files():
            child = f"{path}/{item['name']}"
            if item["is_directory"]:
                self._delete_tree(child)
            else:
                directory.delete_file(item["name"])
        directory.delete_directory()


def make_homes(settings: Settings) -> HomeFolders | None:
    """The home folders of this deployment, or None when no home share is configured."""
    if not settings.home_folders_configured:
        return None
    credential = azure_credential(settings.client_id)
    return AzureFilesHomes(settings.home_files_account_url, settings.home_share_name, credential)
