"""The warm pool: what it holds (``ACA_WARM_POOL``), its slots' rows, and the container app a slot is.

A *slot* is an ordinary container app started ahead of time from a pool
profile (image and size), running the launcher (:mod:`functions.slot_launcher`)
with a key of its own. It holds no user's token and no user's files until a
start binds it: the functions move the user's home folder into the slot's
folder of the home share (``slots/<slot>/home``, one directory rename) and the
hub sends the launcher the user's claim, sealed with the slot's key; the
launcher becomes the user's ``jupyterhub-singleuser``. A slot serves one user
once and is deleted when that server stops (the home moves back first).

Rows: the status table, partition ``<hub id>~slots``, one row per slot (its
app's name): the profile, the environment, the state (``creating`` →
``ready`` → ``leased`` → ``bound``), the address, the slot's key sealed with
the hub's sealing key, and once leased the server it serves. A lease is one
ETag-conditional update, so two starts never get the same slot.
"""

from __future__ import annotations

import base64
import random
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from .app_body import CONTAINER_NAME, TAG_HUB, tag_value
from .pool_profiles import PoolProfile
from .settings import Settings

SLOTS_PARTITION = "{hub_id}~slots"
TAG_SLOT = "aca-slot"  # the pool profile a slot app belongs to
SLOT_PREFIX = "ws-"
SLOT_DIR = "/mnt/slot"  # where a slot mounts its folder of the home share; the user's home arrives as home/
LAUNCHER_DIR = "/mnt/launcher"
LAUNCHER_FILE = "slot_launcher.py"
LAUNCHER_SOURCE = Path(__file__).with_name(LAUNCHER_FILE)
#: the launcher's files, each shipped as a secret of the slot and a file of its launcher volume: (secret, file)
LAUNCHER_FILES = (("slot-launcher", LAUNCHER_FILE), ("slot-claims", "slot_claims.py"))
#: the generation a slot's reservation is released with: above any clock's milliseconds, so the release is
#: never mistaken for an older request's (a slot's name is never used again)
SLOT_DONE = 2**62
SLOT_KEY_SECRET = "slot-key"


class Lost(Exception):
    """The slot row changed since it was read (another invocation leased or retired it)."""


def new_slot_name() -> str:
    """A fresh, unguessable container app name (no user's server key starts with ``ws-``)."""
    return SLOT_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


def slot_folder(slot: str) -> str:
    """The slot's folder of the home share; the user's home is moved to ``<folder>/home``."""
    return f"slots/{slot}"


@dataclass(frozen=True)
class Slot:
    """One slot's row."""

    name: str
    pool: str
    environment_id: str
    state: str  # creating, ready, leased, bound
    key_sealed: str = field(default="", repr=False)  # the slot's Fernet key, sealed with the hub's sealing key
    url: str = ""
    server_key: str = ""
    user: str = ""
    generation: int = 0
    created: float = 0.0
    updated: float = 0.0
    etag: str | None = None


class SlotRows:
    """The slot rows of one hub, each change ETag-conditional."""

    def __init__(self, table: TableClient, hub_id: str):
        self.table = table
        self.partition = SLOTS_PARTITION.format(hub_id=hub_id)

    def _slot(self, entity: Any) -> Slot:
        generation = entity.get("generation", 0)
        return Slot(name=entity["RowKey"], pool=entity.get("pool", ""), environment_id=entity.get("environment_id", ""),
                    state=entity.get("state", ""), key_sealed=entity.get("key_sealed", ""), url=entity.get("url", ""),
                    server_key=entity.get("server_key", ""), user=entity.get("user", ""),
                    generation=int(getattr(generation, "value", generation) or 0),
                    created=float(entity.get("created", 0.0)), updated=float(entity.get("updated", 0.0)),
                    etag=entity.metadata.get("etag"))

    def _entity(self, slot: Slot, now: float) -> dict[str, Any]:
        return {"PartitionKey": self.partition, "RowKey": slot.name, "pool": slot.pool,
                "environment_id": slot.environment_id, "state": slot.state, "key_sealed": slot.key_sealed,
                "url": slot.url, "server_key": slot.server_key, "user": slot.user,
                "generation": (slot.generation, "Edm.Int64"), "created": slot.created, "updated": now}

    def all(self) -> list[Slot]:
        return [self._slot(e) for e in self.table.query_entities("PartitionKey eq @p",
                                                                  parameters={"p": self.partition})]

    def get(self, name: str) -> Slot | None:
        try:
            return self._slot(self.table.get_entity(self.partition, name))
        except ResourceNotFoundError:
            return None

    def create(self, slot: Slot, now: float) -> Slot:
        try:
            meta = self.table.create_entity(self._entity(slot, now))
        except ResourceExistsError as e:
            raise Lost(slot.name) from e
        return replace(slot, etag=meta["etag"], updated=now)

    def update(self, slot: Slot, now: float, **changes: Any) -> Slot:
        """``slot`` with ``changes``, written only if its row is still as read; raises :class:`Lost`."""
        changed = replace(slot, **changes)
        try:
            meta = self.table.update_entity(self._entity(changed, now), mode=UpdateMode.REPLACE, etag=slot.etag,
                                            match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError) as e:
            raise Lost(slot.name) from e
        return replace(changed, etag=meta["etag"], updated=now)

    def delete(self, slot: Slot) -> None:
        try:
            self.table.delete_entity(self.partition, slot.name, etag=slot.etag,
                                     match_condition=MatchConditions.IfNotModified)
        except ResourceNotFoundError:
            pass
        except ResourceModifiedError as e:
            raise Lost(slot.name) from e

    def lease(self, pool: str, server_key: str, user: str, generation: int, now: float) -> Slot | None:
        """The slot an earlier delivery of this start leased or bound, else a ready slot of ``pool`` taken for
        ``server_key`` (one conditional write); None when none is free. One query finds both.

        Each start tries the ready slots in its own random order: a class starting at once would otherwise
        all race for the same oldest slot, one conditional write each, and the last start lose n times."""
        # the SDK takes a parameter's name up to the next space: none may touch a parenthesis
        query = "PartitionKey eq @p and ( server_key eq @key or ( state eq 'ready' and pool eq @pool ) )"
        found = [self._slot(e) for e in self.table.query_entities(
            query, parameters={"p": self.partition, "key": server_key, "pool": pool})]
        held = next((s for s in found if s.server_key == server_key and s.generation == generation
                     and s.state in ("leased", "bound")), None)
        if held is not None:
            return held
        ready = [s for s in found if s.state == "ready" and s.pool == pool]
        random.shuffle(ready)
        for slot in ready:
            try:
                return self.update(slot, now, state="leased", server_key=server_key, user=user,
                                   generation=generation)
            except Lost:
                continue  # another start took it: the next one
        return None

def build_slot_app(name: str, profile: PoolProfile, settings: Settings, environment_id: str, slot_key: str,
                   hub_id: str) -> dict[str, Any]:
    """The ARM body of a slot: the profile's image running the launcher, its folder of the home share mounted,
    internal plain-http ingress like every server's, the slot key and the launcher as secrets (never plain env)."""
    launcher = [{"name": secret, "value": LAUNCHER_SOURCE.with_name(file).read_text(encoding="utf-8")}
                for secret, file in LAUNCHER_FILES]
    container = {
        "name": CONTAINER_NAME,
        "image": profile.image,
        "command": ["python", f"{LAUNCHER_DIR}/{LAUNCHER_FILE}"],
        "env": [{"name": "ACA_SLOT_KEY", "secretRef": SLOT_KEY_SECRET}, {"name": "ACA_SLOT_DIR", "value": SLOT_DIR},
                {"name": "ACA_SLOT_HOST", "value": "0.0.0.0"}, {"name": "PORT", "value": "8888"}],
        "resources": {"cpu": profile.cpu, "memory": profile.memory},
        "volumeMounts": [{"volumeName": "home", "mountPath": SLOT_DIR, "subPath": slot_folder(name)},
                         {"volumeName": "launcher", "mountPath": LAUNCHER_DIR}],
    }
    home = {"name": "home", "storageType": "AzureFile", "storageName": settings.home_storage_name}
    if settings.home_mount_options:
        home["mountOptions"] = settings.home_mount_options
    return {
        "location": settings.location,
        "tags": {TAG_HUB: tag_value(hub_id), TAG_SLOT: profile.name},
        "properties": {
            "environmentId": environment_id,
            "configuration": {
                "activeRevisionsMode": "Single",
                "ingress": {"external": False, "targetPort": 8888, "transport": "http", "allowInsecure": True},
                "secrets": [{"name": SLOT_KEY_SECRET, "value": slot_key}, *launcher],
            },
            "template": {
                "containers": [container],
                "scale": {"minReplicas": 1, "maxReplicas": 1},
                "volumes": [home, {"name": "launcher", "storageType": "Secret",
                                   "secrets": [{"secretRef": secret, "path": file} for secret, file in LAUNCHER_FILES]}],
            },
        },
    }
