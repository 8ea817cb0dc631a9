"""Environment storages (Azure Files) and the volumes a replica mounts, as local directories.

An environment storage (``managedEnvironments/{env}/storages/{name}``) names
an Azure Files share by account and share name. Its share is the directory
``<files root>/<account>/<share>``, the same one the emulator's Files data
plane (:mod:`.files`) serves, so what the functions create through the
Files API is what the app sees in its mount.

A process cannot be given a mount, so a mount is the local directory that
stands for it: ``share/subPath`` for an ``AzureFile`` volume, a fresh
directory per replica for an ``EmptyDir`` one, and for a ``Secret`` one a
fresh directory per replica holding one file per secret (the app's secrets,
or those the volume lists, each under its ``path``). The container's mount paths
are rewritten to those directories in its args and env, the way ports are
(:mod:`.apps`), and a mount at the image's home becomes ``HOME`` and the
working directory. A local process is not confined to its mounts: it could
walk out of them, which a container cannot. See README.md, "Volumes", for
what is sourced and what is a guess.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import bad_request

ACCESS_MODES = ("ReadOnly", "ReadWrite")
_STORAGE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")
KINDS = {"azureFile": "AzureFile", "nfsAzureFile": "NfsAzureFile"}  # storage property → volume storageType
SECRET_FILE_MODE = 0o400  # a guess: ACA does not publish the mode of its secret files (see README.md)


class MountError(Exception):
    """A volume that cannot be mounted when the replica starts: the revision fails to provision."""


@dataclass
class EnvironmentStorage:
    """An Azure Files share (SMB, or NFS) made available to the apps of one environment."""

    name: str
    environment_id: str
    kind: str  # the volume storageType that may use it: AzureFile (SMB) or NfsAzureFile
    properties: dict[str, str]  # as written, without the account key
    account_name: str
    share_name: str

    @property
    def access_mode(self) -> str:
        return self.properties.get("accessMode", "ReadWrite")

    def resource(self) -> dict[str, Any]:
        """The storage as ARM answers it: never with its account key."""
        key = next(k for k, v in KINDS.items() if v == self.kind)
        return {
            "id": f"{self.environment_id}/storages/{self.name}",
            "name": self.name,
            "type": "Microsoft.App/managedEnvironments/storages",
            "properties": {key: dict(self.properties)},
        }


class Storages:
    """The storages of every environment; each share is a directory under ``files_root``."""

    def __init__(self, files_root: Path) -> None:
        self.files_root = files_root
        self._by_env: dict[str, dict[str, EnvironmentStorage]] = {}

    def share_dir(self, account_name: str, share_name: str) -> Path:
        return self.files_root / account_name / share_name

    def put(self, environment_id: str, name: str, body: Mapping[str, Any]) -> tuple[EnvironmentStorage, bool]:
        """Create or replace a storage; (storage, created)."""
        if not _STORAGE_NAME.match(name):
            raise bad_request("InvalidParameterValue", f"The storage name '{name}' is invalid: use 1-32 letters, "
                              "digits and '-', starting and ending with a letter or digit.")
        props = body.get("properties") or {}
        given = [key for key in KINDS if props.get(key)]
        if len(given) != 1:
            raise bad_request("InvalidRequestContent", f"The storage '{name}' needs exactly one of azureFile, "
                              "nfsAzureFile.")
        key = given[0]
        share = dict(props[key])
        if key == "azureFile":
            needed = ["accountName", "shareName"]
            if not share.get("accountKey") and not share.get("accountKeyVaultProperties"):
                needed.append("accountKey")
        else:
            needed = ["server", "shareName"]
        missing = [k for k in needed if not share.get(k)]
        if missing:
            raise bad_request("InvalidRequestContent", f"The {key} storage '{name}' needs {', '.join(missing)}.")
        share.setdefault("accessMode", "ReadWrite")
        if share["accessMode"] not in ACCESS_MODES:
            raise bad_request("InvalidParameterValue", f"accessMode must be one of {', '.join(ACCESS_MODES)}.")
        share.pop("accountKey", None)
        if key == "azureFile":
            account, share_name = str(share["accountName"]), str(share["shareName"])
        else:  # server <account>.file.core.windows.net, share /<account>/<share>
            account, share_name = str(share["server"]).split(".")[0], str(share["shareName"]).rstrip("/").split("/")[-1]
        storages = self._by_env.setdefault(environment_id.lower(), {})
        created = name.lower() not in storages
        storages[name.lower()] = storage = EnvironmentStorage(name, environment_id, KINDS[key], share, account,
                                                              share_name)
        return storage, created

    def get(self, environment_id: str, name: str) -> EnvironmentStorage | None:
        return self._by_env.get(environment_id.lower(), {}).get(name.lower())

    def delete(self, environment_id: str, name: str) -> bool:
        return self._by_env.get(environment_id.lower(), {}).pop(name.lower(), None) is not None

    def list(self, environment_id: str) -> list[EnvironmentStorage]:
        return sorted(self._by_env.get(environment_id.lower(), {}).values(), key=lambda s: s.name)


@dataclass(frozen=True)
class Mount:
    """A container path and the local directory standing for it."""

    mount_path: str
    local: Path
    read_only: bool = False


def _volumes(template: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(v.get("name", "")): v for v in template.get("volumes") or []}


def validate_volumes(template: Mapping[str, Any], environment_id: str, storages: Storages, app_name: str,
                     secret_names: Collection[str] = ()) -> None:
    """What ARM refuses at once (400) about an app's volumes and mounts; ``secret_names`` are the app's secrets."""
    volumes = _volumes(template)
    for volume in volumes.values():
        kind = volume.get("storageType") or "EmptyDir"
        if kind in KINDS.values():
            storage_name = str(volume.get("storageName") or "")
            storage = storages.get(environment_id, storage_name)
            if storage is None:
                raise bad_request("ManagedEnvironmentStorageNotFound",
                                  f"Storage {storage_name} not found under managed environment")
            if storage.kind != kind:
                raise bad_request("InvalidParameterValue", f"Volume '{volume.get('name')}' has storageType '{kind}' "
                                  f"but storage {storage_name} is of type '{storage.kind}'.")
        elif kind == "Secret":
            _validate_secret_volume(volume, secret_names)
        elif kind != "EmptyDir":
            raise bad_request("InvalidParameterValue",
                              f"Volume '{volume.get('name')}' has storageType '{kind}', which this emulator does not "
                              "model (AzureFile, NfsAzureFile, EmptyDir and Secret only).")
    for container in [*(template.get("initContainers") or []), *(template.get("containers") or [])]:
        for mount in container.get("volumeMounts") or []:
            name = str(mount.get("volumeName") or "")
            if name not in volumes:
                raise bad_request("ContainerAppInvalidVolumeMount",
                                  f"Invalid Request: Volume '{name}' to mount doesn't defined in the Container App "
                                  f"'{app_name}'.")
            path = str(mount.get("mountPath") or "")
            if not path.startswith("/") or path == "/" or ":" in path:
                raise bad_request("ContainerAppInvalidMountPath",
                                  "Invalid Request: Invalid mount path was given. mountPath is required when mounting "
                                  f"volume '{name}'. mountPath must not contain ':'.")


def _validate_secret_volume(volume: Mapping[str, Any], secret_names: Collection[str]) -> None:
    """A Secret volume names only the app's secrets, each at a relative path of its own."""
    name = volume.get("name")
    paths: set[str] = set()
    for item in volume.get("secrets") or []:
        ref = str(item.get("secretRef") or "")
        if not ref:
            raise bad_request("InvalidParameterValue", f"Volume '{name}': every item of secrets needs a secretRef.")
        if ref not in secret_names:
            raise bad_request("ContainerAppSecretRefNotFound", f"SecretRef '{ref}' defined for volume '{name}' not "
                              "found.")
        path = str(item.get("path") or ref)
        if _bad_relative_path(path):
            raise bad_request("InvalidParameterValue", f"Volume '{name}': the path '{path}' of secret '{ref}' must be "
                              "a relative path without '..'.")
        if path in paths:
            raise bad_request("InvalidParameterValue", f"Volume '{name}': more than one secret at path '{path}'.")
        paths.add(path)


def _bad_relative_path(path: str) -> bool:
    parts = path.split("/")
    return path.startswith("/") or "\x00" in path or any(part in ("", ".", "..") for part in parts)


def secret_files(volume: Mapping[str, Any], secrets: Mapping[str, str | None]) -> dict[str, str]:
    """Relative path → value of each file of a Secret volume: the listed secrets, or every secret of the app.

    A Key Vault reference has no value locally: its file is empty, as its env
    variable is (:func:`.apps.build_launch`).
    """
    items = volume.get("secrets") or [{"secretRef": name} for name in secrets]
    return {str(item.get("path") or item["secretRef"]): secrets.get(str(item["secretRef"])) or "" for item in items}


def _write_secret_volume(directory: Path, files: Mapping[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for relative, value in files.items():
        target = directory.joinpath(*relative.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # written aside and renamed: a second container of the replica finds a read-only file already there
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, SECRET_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(value)
        os.chmod(temporary, SECRET_FILE_MODE)  # whatever the umask
        os.replace(temporary, target)


def resolve_mounts(container: Mapping[str, Any], template: Mapping[str, Any], environment_id: str,
                   storages: Storages, replica_dir: Path,
                   secrets: Mapping[str, str | None] | None = None) -> list[Mount]:
    """The local directories of ``container``'s mounts when its replica starts; raises MountError.

    ``secrets`` (the app's, name → value) fill its Secret volumes.
    """
    volumes = _volumes(template)
    mounts = []
    for entry in container.get("volumeMounts") or []:
        volume = volumes[str(entry["volumeName"])]
        sub_path = str(entry.get("subPath") or "")
        parts = PurePosixPath(sub_path).parts
        if sub_path.startswith("/") or ".." in parts or "\x00" in sub_path:
            raise MountError(f"volumeMounts.subPath: Invalid value: {sub_path!r}: must be a relative path "
                             "without '..'")
        if (volume.get("storageType") or "EmptyDir") == "EmptyDir":
            local = replica_dir / "volumes" / str(volume["name"])
            local.mkdir(parents=True, exist_ok=True)
            local = local.joinpath(*parts)
            local.mkdir(parents=True, exist_ok=True)
            mounts.append(Mount(str(entry["mountPath"]), local))
            continue
        if volume.get("storageType") == "Secret":
            directory = replica_dir / "volumes" / str(volume["name"])
            _write_secret_volume(directory, secret_files(volume, secrets or {}))
            local = directory.joinpath(*parts)
            if not local.exists():
                raise MountError(f"mounting volume '{volume['name']}' failed: subPath '{sub_path}' is not a secret "
                                 "of the volume")
            mounts.append(Mount(str(entry["mountPath"]).rstrip("/"), local, read_only=True))
            continue
        storage = storages.get(environment_id, str(volume.get("storageName") or ""))
        if storage is None:
            raise MountError(f"storage {volume.get('storageName')!r} is no longer defined in the environment")
        share = storages.share_dir(storage.account_name, storage.share_name)
        if not share.is_dir():
            raise MountError(f"mounting volume '{volume['name']}' failed: the file share "
                             f"'{storage.share_name}' of account '{storage.account_name}' does not exist")
        local = share.joinpath(*parts)
        if not local.is_dir() or local.is_symlink():
            raise MountError(f"mounting volume '{volume['name']}' failed: subPath '{sub_path}' is not a folder "
                             f"of the file share '{storage.share_name}'")
        mounts.append(Mount(str(entry["mountPath"]).rstrip("/"), local, storage.access_mode == "ReadOnly"))
    return mounts


def local_path(path: str, mounts: Sequence[Mount]) -> Path | None:
    """The local directory standing for container path ``path``, if a mount covers it."""
    for mount in sorted(mounts, key=lambda m: len(m.mount_path), reverse=True):
        if path == mount.mount_path or path.startswith(mount.mount_path + "/"):
            rest = path[len(mount.mount_path):].strip("/")
            return mount.local.joinpath(*rest.split("/")) if rest else mount.local
    return None


def rewrite_paths(values: Iterable[str], mounts: Sequence[Mount]) -> list[str]:
    """``values`` with every mount path (at a path boundary) replaced by its local directory."""
    if not mounts:
        return list(values)
    ordered = sorted(mounts, key=lambda m: len(m.mount_path), reverse=True)
    pattern = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(m.mount_path) for m in ordered) + r")(?=$|[/\s:;,'\"=])")
    local = {m.mount_path: str(m.local) for m in ordered}
    return [pattern.sub(lambda match: local[match.group(1)], value) for value in values]

