"""Which folder of the home share is a user's home: the functions' own rule, and an owner record per folder.

A server's home is never taken from a message. The functions derive it from
the user name (:func:`acaspawner.naming.home_folder`, 128 bits of hash) and
record, in the status table (partition ``<hub id>~homes``, one row per
folder), which user a folder belongs to when they first make or use it. A
folder recorded for another user is never mounted for, nor deleted on behalf
of, anyone else, and the share's root is never anyone's home.

Homes made before the 128-bit names are ``<slug>-<48 bits>``
(:func:`~acaspawner.naming.legacy_home_folder`). Such a folder keeps serving
its user: the first start that finds it unrecorded records it as that user's.
"""

from __future__ import annotations

import logging
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from acaspawner.naming import home_folder, legacy_home_folder

from .homes import HomeFolders

log = logging.getLogger(__name__)

OWNERS_PARTITION = "{hub_id}~homes"


class HomeTaken(Exception):
    """The folder a user's rule names is recorded for another user."""


class HomeOwners:
    """Owner records of home folders: one table row per folder, written once, removed with the folder."""

    def __init__(self, table: Any, hub_id: str):
        self.table = table
        self.partition = OWNERS_PARTITION.format(hub_id=hub_id)

    def owner(self, folder: str) -> str | None:
        try:
            return str(self.table.get_entity(self.partition, folder)["user"])
        except ResourceNotFoundError:
            return None

    def claim(self, folder: str, user: str) -> bool:
        """Record ``folder`` as ``user``'s; True when it is theirs (now or already), False when another's."""
        try:
            self.table.create_entity({"PartitionKey": self.partition, "RowKey": folder, "user": user})
            return True
        except ResourceExistsError:
            return self.owner(folder) == user

    def release(self, folder: str, user: str) -> None:
        """Forget ``folder``'s record if it is ``user``'s (its folder is gone)."""
        try:
            entity = self.table.get_entity(self.partition, folder)
        except ResourceNotFoundError:
            return
        if entity.get("user") == user:
            try:
                self.table.delete_entity(self.partition, folder, etag=entity.metadata["etag"],
                                         match_condition=MatchConditions.IfNotModified)
            except ResourceNotFoundError:
                pass


class UserHomes:
    """The users' homes of one hub: folders in the share, and who owns each."""

    def __init__(self, folders: HomeFolders, owners: HomeOwners):
        self.folders = folders
        self.owners = owners

    @staticmethod
    def names(user: str) -> tuple[str, ...]:
        """The folders ``user``'s home may be: its 128-bit name, and the name homes had before."""
        return home_folder(user), legacy_home_folder(user)

    def prepare(self, user: str) -> str:
        """``user``'s home folder, made if missing and recorded as theirs; raises :class:`HomeTaken`."""
        current, legacy = self.names(user)
        owner = self.owners.owner(legacy)
        if owner == user or (owner is None and self.folders.exists(legacy) and self.owners.claim(legacy, user)):
            self.folders.ensure(legacy)
            return legacy
        if not self.owners.claim(current, user):
            raise HomeTaken(f"the home folder {current} is recorded for another user")
        self.folders.ensure(current)
        return current

    def remove(self, user: str) -> list[str]:
        """Delete ``user``'s home folders (only those recorded as theirs); the folders removed."""
        removed = []
        for folder in self.names(user):
            if self.owners.owner(folder) != user:
                continue
            self.folders.delete(folder)
            self.owners.release(folder, user)
            removed.append(folder)
        return removed
