"""Users' home folders: folders of the one Azure Files share behind the home storage.

Whether ACA creates a missing ``subPath`` folder is undocumented, so a start
creates it through the Files API before the app exists; a delete may remove
it (``ACA_HOME_DELETE_ON_DELETE``). Which folder is whose is decided in
:mod:`functions.user_homes`; :class:`HomeFolders` is the share as it needs it.

In Azure the client authenticates with the functions' identity (token with
the ``backup`` intent). With ``ACA_HOME_FILES_TOKEN`` set it sends that
token instead, trusting ``ACA_HOME_FILES_CA_BUNDLE``: the local emulator's
Files data plane, reached by the same client code.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from acaspawner.http_env import transport_options
from acaspawner.identity import azure_credential

from .arm import StaticTokenCredential
from .settings import Settings

log = logging.getLogger(__name__)


class HomeFolders(Protocol):
    def ensure(self, sub_path: str) -> None:
        """Create ``sub_path`` (and its parents) if missing."""

    def exists(self, sub_path: str) -> bool:
        """True when ``sub_path`` is a folder of the share."""

    def delete(self, sub_path: str) -> None:
        """Remove ``sub_path`` and everything below it; nothing if it is missing. Never the share's root."""

    def move(self, source: str, target: str) -> None:
        """Rename folder ``source`` to ``target`` (atomic; ``target`` must not exist, its parent must)."""


class AzureFilesHomes:
    """Home folders in an Azure Files share, reached with the functions' identity."""

    def __init__(self, account_url: str, share_name: str, credential: Any, *, connection_verify: str | bool = True):
        from azure.storage.fileshare import ShareClient

        # token access to file data needs the "backup" intent (Storage File Data Privileged Contributor)
        self.share = ShareClient(account_url, share_name, credential=credential, token_intent="backup",
                                 **transport_options(connection_verify))

    def ensure(self, sub_path: str) -> None:
        path = ""
        for part in _folder(sub_path).split("/"):
            path = f"{path}/{part}" if path else part
            try:
                self.share.get_directory_client(path).create_directory()
            except ResourceExistsError as e:
                if getattr(e, "error_code", None) != "ResourceAlreadyExists":
                    raise  # e.g. ResourceTypeMismatch: a file where the folder should be

    def exists(self, sub_path: str) -> bool:
        try:
            self.share.get_directory_client(_folder(sub_path)).get_directory_properties()
        except ResourceNotFoundError:
            return False
        return True

    def delete(self, sub_path: str) -> None:
        try:
            self._delete_tree(_folder(sub_path))
        except ResourceNotFoundError:
            pass

    def move(self, source: str, target: str) -> None:
        self.share.get_directory_client(_folder(source)).rename_directory(_folder(target))

    def _delete_tree(self, path: str) -> None:
        directory = self.share.get_directory_client(path)
        for item in directory.list_directories_and_files():
            child = f"{path}/{item['name']}"
            if item["is_directory"]:
                self._delete_tree(child)
            else:
                directory.delete_file(item["name"])
        directory.delete_directory()


def _folder(sub_path: str) -> str:
    """``sub_path`` as a folder below the share's root; the root itself, ``.`` or ``..`` are refused."""
    folder = sub_path.strip("/")
    if not folder or any(part in ("", ".", "..") for part in folder.split("/")):
        raise ValueError(f"not a folder below the share's root: {sub_path!r}")
    return folder


def make_homes(settings: Settings) -> HomeFolders | None:
    """The home folders of this deployment, or None when no home share is configured."""
    if not settings.home_folders_configured:
        return None
    if settings.home_files_token:
        credential: Any = StaticTokenCredential(settings.home_files_token)
    else:
        credential = azure_credential(settings.client_id)
    return AzureFilesHomes(settings.home_files_account_url, settings.home_share_name, credential,
                           connection_verify=settings.home_files_ca_bundle or True)
