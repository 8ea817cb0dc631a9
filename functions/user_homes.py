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

A home *lent* to a warm server (:mod:`functions.slot_binding`) lives in that
server's folder until the server stops; its owner record names the warm
server and the user's server it serves. While it is lent no other server of
the user gets a home (an empty folder in its place would be mounted, and its
return would have nowhere to go): such a start ends with :class:`HomeLent`.
"""

from __future__ import annotations

import logging
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from acaspawner.naming import home_folder, legacy_home_folder

from .homes import HomeFolders

log = logging.getLogger(__name__)

OWNERS_PARTITION = "{hub_id}~homes"


class HomeTaken(Exception):
    """The folder a user's rule names is recorded for another user."""


class HomeLent(Exception):
    """The user's home is lent to the warm server of another of their servers."""


class HomeOwners:
    """Owner records of home folders: one table row per folder, removed with the folder; a lending is noted on it."""

    def __init__(self, table: Any, hub_id: str):
        self.table = table
        self.partition = OWNERS_PARTITION.format(hub_id=hub_id)

    def record(self, folder: str) -> dict[str, Any] | None:
        """``folder``'s owner record (``user``, and ``lent``/``lent_server`` while lent), None without one."""
        try:
            return self.table.get_entity(self.partition, folder)
        except ResourceNotFoundError:
            return None

    def owner(self, folder: str) -> str | None:
        record = self.record(folder)
        return None if record is None else str(record["user"])

    def claim(self, folder: str, user: str) -> bool:
        """Record ``folder`` as ``user``'s; True when it is theirs (now or already), False when another's."""
        try:
            self.table.create_entity({"PartitionKey": self.partition, "RowKey": folder, "user": user})
            return True
        except ResourceExistsError:
            return self.owner(folder) == user

    @staticmethod
    def lending(record: dict[str, Any]) -> tuple[str, str]:
        """The warm server an owner record's folder is lent to and the server key it serves (``("", "")``)."""
        return str(record.get("lent", "")), str(record.get("lent_server", ""))

    def lent(self, folder: str) -> tuple[str, str]:
        """The warm server ``folder`` is lent to and the server key it serves (``("", "")``: not lent)."""
        record = self.record(folder)
        return ("", "") if record is None else self.lending(record)

    def mark_lent(self, folder: str, user: str, slot: str, server_key: str) -> None:
        """Note that ``folder`` (``user``'s) goes to warm server ``slot`` for ``server_key``.

        Raises :class:`HomeTaken` (another user's) or :class:`HomeLent` (lent for another server)."""
        for _ in range(5):
            try:
                entity = self.table.get_entity(self.partition, folder)
            except ResourceNotFoundError:
                raise HomeTaken(f"the home folder {folder} is not recorded for user {user!r}") from None
            if entity.get("user") != user:
                raise HomeTaken(f"the home folder {folder} is not recorded for user {user!r}")
            if entity.get("lent") and entity.get("lent_server") != server_key:
                raise HomeLent(f"the home is in use by the warm server {entity['lent']}")
            try:
                self.table.update_entity({**entity, "lent": slot, "lent_server": server_key}, mode=UpdateMode.REPLACE,
                                         etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified)
                return
            except ResourceModifiedError:
                continue
        raise HomeLent(f"the owner record of {folder} kept changing")

    def clear_lent(self, folder: str, slot: str) -> None:
        """Forget that ``folder`` is lent, if it is lent to ``slot``."""
        for _ in range(5):
            try:
                entity = self.table.get_entity(self.partition, folder)
            except ResourceNotFoundError:
                return
            if entity.get("lent") != slot:
                return
            try:
                self.table.update_entity({**entity, "lent": "", "lent_server": ""}, mode=UpdateMode.REPLACE,
                                         etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified)
                return
            except ResourceModifiedError:
                continue

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

    def prepare(self, user: str, server_key: str = "") -> str:
        """``user``'s home folder for server ``server_key``, made if missing and recorded as theirs.

        Raises :class:`HomeTaken` (recorded for another user) and :class:`HomeLent` (lent to the warm server
        of another of the user's servers). A home lent for ``server_key`` itself is not made again."""
        current, legacy = self.names(user)
        record = self.owners.record(current)
        if record is not None and record.get("user") == user:  # the usual case: one read says it all
            folder, (slot, lent_for) = current, HomeOwners.lending(record)
        else:
            owner = self.owners.owner(legacy)
            if owner == user or (owner is None and self.folders.exists(legacy) and self.owners.claim(legacy, user)):
                folder = legacy
            elif record is None and self.owners.claim(current, user):
                folder = current
            else:
                raise HomeTaken(f"the home folder {current} is recorded for another user")
            slot, lent_for = self.owners.lent(folder)
        if slot and lent_for != server_key:
            raise HomeLent(f"the home is in use by another of the user's servers (warm server {slot})")
        if not slot:
            self.folders.ensure(folder)
        return folder

    def folder_of(self, user: str) -> str | None:
        """The folder recorded as ``user``'s home, if any."""
        return next((f for f in reversed(self.names(user)) if self.owners.owner(f) == user), None)

    def lend(self, user: str, folder: str, target: str) -> None:
        """Move ``user``'s home ``folder`` (noted as lent, :meth:`HomeOwners.mark_lent`) to ``target``.

        Again after a redelivery: a home already at ``target`` stays there."""
        if self.owners.owner(folder) != user:
            raise HomeTaken(f"the home folder {folder} is not recorded for user {user!r}")
        if self.folders.exists(target) and not self.folders.exists(folder):
            return
        self.folders.move(folder, target)

    def return_home(self, user: str, source: str, slot: str) -> bool:
        """Move a home lent to warm server ``slot`` (now at ``source``) back to ``user``'s recorded folder.

        True when nothing of the user's is left at ``source`` (the slot's folder may go); False when the home
        could not go back (its folder exists again): then both stay, and the error is logged."""
        folder = self.folder_of(user)
        if folder is None:  # the user's homes were removed meanwhile: keep this one where it is
            if self.folders.exists(source):
                log.error("home of %r at %s not moved back: the user has no home folder recorded", user, source)
                return False
            return True
        if self.folders.exists(source):
            if self.folders.exists(folder):  # never overwrite, never delete: keep both, and say so
                log.error("home of %r at %s not moved back: %s exists already", user, source, folder)
                return False
            self.folders.move(source, folder)
        self.owners.clear_lent(folder, slot)
        return True

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
