"""The Azure Files stand-in's vocabulary (errors, names, XML bodies) and the share on disk.

One share is one real directory. A path inside a share is a list of names (see :func:`split_path`).
Every operation walks it from the share's directory one component at a time with ``O_NOFOLLOW``
directory descriptors, so a request can never leave its share: symbolic links are never followed
(they are invisible to reads and listings, and a name they occupy is taken), and ``..`` never
gets this far.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote

# https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-shares--directories--files--and-metadata
INVALID_NAME_CHARS = frozenset('"\\/:|<>*?') | frozenset(chr(c) for c in range(0x20))
MAX_NAME_LENGTH = 255
MAX_FILE_SIZE = 4 * 1024**4  # 4 TiB, Create File's x-ms-content-length limit
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO someone put in the share must not hang the server
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'
CHALLENGE = ("Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize "
             "resource_id=https://storage.azure.com")


class FilesError(Exception):
    """An Azure Storage error answer: HTTP status, error code, message and extra detail elements."""

    def __init__(self, status: int, code: str, message: str, **details: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers: dict[str, str] = {}


def not_found(what: str = "resource") -> FilesError:
    return FilesError(404, "ResourceNotFound", f"The specified {what} does not exist.")


def parent_not_found() -> FilesError:
    return FilesError(404, "ParentNotFound", "The specified parent path does not exist.")


def auth_error(code: str) -> FilesError:
    err = FilesError(401, code, "Server failed to authenticate the request. "
                     "Please refer to the information in the www-authenticate header.")
    err.headers["WWW-Authenticate"] = CHALLENGE
    return err


def missing_header(name: str) -> FilesError:
    return FilesError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not "
                      "specified.", HeaderName=name)


def bad_header(name: str, value: str) -> FilesError:
    return FilesError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct "
                      "format.", HeaderName=name, HeaderValue=value)


def unsupported(what: str) -> FilesError:
    return FilesError(400, "UnsupportedQueryParameter", f"{what} is not served by the local Azure Files emulator.")


def invalid_name(name: str) -> FilesError:
    return FilesError(400, "InvalidResourceName", "The specified resource name contains invalid characters.",
                      ResourceName=name)


def split_path(raw: str, *, trailing_slash: bool = False) -> list[str]:
    """The names in a still percent-encoded path below the share (``%2F`` separates like ``/``).

    Refused with 400: undecodable bytes, empty names (``a//b``, a leading ``/``), ``.``, ``..``,
    and names with characters Azure Files forbids. ``trailing_slash`` drops one trailing ``/``
    (Azure removes it from directory names).
    """
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise FilesError(400, "InvalidUri", "The requested URI does not represent any resource on the server.") from None
    if not decoded:
        return []
    if trailing_slash and decoded.endswith("/"):
        decoded = decoded[:-1]
    names = decoded.split("/")
    for name in names:
        check_name(name)
    return names


def check_name(name: str) -> None:
    if name in ("", ".", "..") or not INVALID_NAME_CHARS.isdisjoint(name):
        raise invalid_name(name)
    if len(name) > MAX_NAME_LENGTH or len(name.encode("utf-8")) > MAX_NAME_LENGTH:  # Linux counts bytes
        raise FilesError(400, "InvalidFileOrDirectoryPathName", "The specified name is too long.")


def addressable(name: str) -> bool:
    """Whether a name found on disk can be named in a request (not, say, undecodable bytes or ``a:b``)."""
    try:
        name.encode("utf-8")
        check_name(name)
    except (UnicodeEncodeError, FilesError):
        return False
    return True


@dataclass(frozen=True)
class Entry:
    """What a stat of one directory or file says, in the terms the API answers with."""

    name: str
    is_dir: bool
    size: int
    mtime_ns: int
    ctime_ns: int
    file_id: int
    parent_id: int

    @classmethod
    def of(cls, name: str, st: os.stat_result, parent_id: int) -> Entry:
        return cls(name, stat.S_ISDIR(st.st_mode), 0 if stat.S_ISDIR(st.st_mode) else st.st_size,
                   st.st_mtime_ns, st.st_ctime_ns, st.st_ino, parent_id)

    @property
    def etag(self) -> str:
        digest = hashlib.blake2b(f"{self.file_id}:{self.mtime_ns}:{self.size}".encode(), digest_size=8).hexdigest()
        return f'"0x{digest.upper()}"'


# ---- wire formats -----------------------------------------------------------------------------

def http_date(ns: int) -> str:
    return formatdate(ns / 1e9, usegmt=True)


def iso(ns: int) -> str:
    """An ISO 8601 UTC time with seven fractional digits, as Azure Files writes them."""
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9 // 100:07d}Z"


def entry_headers(entry: Entry) -> dict[str, str]:
    """The headers Get/Create Directory/File answer with, as far as a local file system knows them."""
    headers = {
        "ETag": entry.etag,
        "Last-Modified": http_date(entry.mtime_ns),
        "x-ms-file-attributes": "Directory" if entry.is_dir else "Archive",
        "x-ms-file-last-write-time": iso(entry.mtime_ns),
        "x-ms-file-change-time": iso(entry.ctime_ns),
        "x-ms-file-id": str(entry.file_id),
        "x-ms-file-parent-id": str(entry.parent_id),
    }
    if not entry.is_dir:
        headers.update({"x-ms-type": "File", "Content-Type": "application/octet-stream"})
    return headers


def _xml(root: ET.Element) -> bytes:
    return _XML_DECLARATION + ET.tostring(root, encoding="unicode").encode("utf-8")


def error_xml(err: FilesError, request_id: str) -> bytes:
    """``<Error><Code/><Message/>…</Error>``, the message ending in the request id and time as Azure's do."""
    root = ET.Element("Error")
    ET.SubElement(root, "Code").text = err.code
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    ET.SubElement(root, "Message").text = f"{err.message}\nRequestId:{request_id}\nTime:{stamp}"
    for name, value in err.details.items():
        # escaped: what a client sent may hold control characters or undecodable bytes, which XML cannot carry
        ET.SubElement(root, name).text = value.encode("unicode_escape").decode("ascii")
    return _xml(root)


def encode_marker(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii")


def decode_marker(marker: str) -> str:
    try:
        return base64.b64decode(marker.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
    except (ValueError, binascii.Error):
        raise FilesError(400, "InvalidContinuationToken", "The specified continuation token is invalid.") from None


def listing_xml(*, service_endpoint: str, share: str, path: str, query: dict[str, str], own: Entry,
                page: list[Entry], next_name: str | None, include: set[str], extended: bool) -> bytes:
    """List Directories and Files' ``EnumerationResults``; ``Marker`` and ``MaxResults`` only when asked."""
    root = ET.Element("EnumerationResults", {"ServiceEndpoint": service_endpoint, "ShareName": share,
                                             "DirectoryPath": path})
    ET.SubElement(root, "Prefix").text = query.get("prefix", "")
    if "marker" in query:
        ET.SubElement(root, "Marker").text = query["marker"]
    if "maxresults" in query:
        ET.SubElement(root, "MaxResults").text = query["maxresults"]
    listed = ET.SubElement(root, "Entries")
    for entry in page:
        item = ET.SubElement(listed, "Directory" if entry.is_dir else "File")
        ET.SubElement(item, "Name").text = entry.name
        if extended:
            ET.SubElement(item, "FileId").text = str(entry.file_id)
        properties = ET.SubElement(item, "Properties")
        if not entry.is_dir:
            ET.SubElement(properties, "Content-Length").text = str(entry.size)
        if "timestamps" in include:
            ET.SubElement(properties, "LastWriteTime").text = iso(entry.mtime_ns)
            ET.SubElement(properties, "ChangeTime").text = iso(entry.ctime_ns)
            ET.SubElement(properties, "Last-Modified").text = http_date(entry.mtime_ns)
        if "etag" in include:
            ET.SubElement(properties, "Etag").text = entry.etag
        if "attributes" in include:
            ET.SubElement(item, "Attributes").text = "Directory" if entry.is_dir else "Archive"
    ET.SubElement(root, "NextMarker").text = "" if next_name is None else encode_marker(next_name)
    if extended:
        ET.SubElement(root, "DirectoryId").text = str(own.file_id)
    return _xml(root)


class Share:
    """One share, ``<base>/<account>/<share>``, and everything below it, reached without following links."""

    def __init__(self, base: Path, account: str, share: str) -> None:
        self.base, self.account, self.share = base, account, share

    @property
    def root(self) -> Path:
        return self.base / self.account / self.share

    # ---- walking ----------------------------------------------------------------------------

    @contextmanager
    def _dir(self, names: list[str], missing: FilesError) -> Iterator[int]:
        """A descriptor of the directory ``names`` (the share itself for ``[]``); ``missing`` if it is not one."""
        fd = os.open(self.base, _DIR_FLAGS & ~os.O_NOFOLLOW)  # the emulator's own root may be a link
        try:
            for depth, name in enumerate([self.account, self.share, *names]):
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        raise
                    if depth < 2:
                        raise FilesError(404, "ShareNotFound", "The specified share does not exist.") from None
                    raise missing from None
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _target(self, dir_fd: int, name: str, want_dir: bool) -> os.stat_result:
        """The stat of ``name`` in ``dir_fd`` if it is a directory (``want_dir``) or a regular file, else 404."""
        st = self._lstat(dir_fd, name)
        if st is None or not (stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISREG(st.st_mode)):
            raise not_found("directory" if want_dir else "file")
        return st

    # ---- share and directories ----------------------------------------------------------------

    def create(self) -> Entry:
        account_dir = self.base / self.account
        account_dir.mkdir(parents=True, exist_ok=True)
        if account_dir.is_symlink():  # the share would be made wherever it points
            raise FilesError(409, "ResourceTypeMismatch", "The account's directory is a link.")
        try:
            os.mkdir(self.root, 0o755)
        except FileExistsError:
            raise FilesError(409, "ShareAlreadyExists", "The specified share already exists.") from None
        return self.directory([])

    def directory(self, names: list[str]) -> Entry:
        with self._dir(names[:-1], not_found("directory")) as fd:
            if not names:
                return Entry.of("", os.fstat(fd), 0)
            return Entry.of(names[-1], self._target(fd, names[-1], want_dir=True), os.fstat(fd).st_ino)

    def create_directory(self, names: list[str]) -> Entry:
        if not names:
            raise FilesError(409, "ResourceAlreadyExists", "The specified resource already exists.")
        with self._dir(names[:-1], parent_not_found()) as fd:
            try:
                os.mkdir(names[-1], 0o755, dir_fd=fd)
            except FileExistsError:
                st = self._lstat(fd, names[-1])
                if st is not None and stat.S_ISREG(st.st_mode):
                    raise FilesError(409, "ResourceTypeMismatch",
                                     "The specified resource type does not match the type of the existing resource.") from None
                raise FilesError(409, "ResourceAlreadyExists", "The specified resource already exists.") from None
            return Entry.of(names[-1], os.stat(names[-1], dir_fd=fd, follow_symlinks=False), os.fstat(fd).st_ino)

    def delete_directory(self, names: list[str]) -> None:
        if not names:
            raise FilesError(409, "CannotDeleteFileOrDirectory", "The root directory of a share cannot be deleted.")
        with self._dir(names[:-1], not_found("directory")) as fd:
            self._target(fd, names[-1], want_dir=True)
            try:
                os.rmdir(names[-1], dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOTEMPTY:
                    raise FilesError(409, "DirectoryNotEmpty", "The specified directory is not empty.") from None
                raise

    def list_directory(self, names: list[str]) -> tuple[Entry, list[Entry]]:
        """The directory and its directories and files, by name.

        Left out: links, FIFOs and the like, and names no request could address.
        """
        with self._dir(names, not_found("directory")) as fd:
            own = Entry.of(names[-1] if names else "", os.fstat(fd), 0)
            entries = []
            with os.scandir(fd) as it:
                for item in it:
                    st = item.stat(follow_symlinks=False)
                    if (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) and addressable(item.name):
                        entries.append(Entry.of(item.name, st, own.file_id))
        return own, sorted(entries, key=lambda e: e.name)

    # ---- files ------------------------------------------------------------------------------

    @contextmanager
    def _open_file(self, names: list[str], flags: int) -> Iterator[tuple[int, int]]:
        """(file descriptor, parent id) of the existing regular file ``names``."""
        if not names:
            raise not_found("file")
        with self._dir(names[:-1], not_found("file")) as dir_fd:
            try:
                fd = os.open(names[-1], flags | _FILE_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP, errno.EISDIR, errno.ENXIO):
                    raise not_found("file") from None
                raise
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise not_found("file")
                yield fd, os.fstat(dir_fd).st_ino
            finally:
                os.close(fd)

    def file(self, names: list[str]) -> Entry:
        with self._open_file(names, os.O_RDONLY) as (fd, parent_id):
            return Entry.of(names[-1], os.fstat(fd), parent_id)

    def create_file(self, names: list[str], size: int) -> Entry:
        """Create the file, or empty an existing one, with ``size`` zero bytes."""
        if not names:
            raise FilesError(409, "ResourceTypeMismatch", "The share's root is a directory.")
        with self._dir(names[:-1], parent_not_found()) as dir_fd:
            try:
                fd = os.open(names[-1], os.O_WRONLY | os.O_CREAT | _FILE_FLAGS, 0o644, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.EISDIR:
                    raise FilesError(409, "ResourceTypeMismatch",
                                     "The specified resource type does not match the type of the existing resource.") from None
                if exc.errno in (errno.ELOOP, errno.ENXIO):
                    raise FilesError(409, "ResourceAlreadyExists", "The specified resource already exists.") from None
                raise
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise FilesError(409, "ResourceAlreadyExists", "The specified resource already exists.")
                os.ftruncate(fd, 0)
                os.ftruncate(fd, size)
                return Entry.of(names[-1], os.fstat(fd), os.fstat(dir_fd).st_ino)
            finally:
                os.close(fd)

    def write_range(self, names: list[str], start: int, end: int, data: bytes | None) -> Entry:
        """Write ``data`` at ``start`` (``None``: zero the range); the range must lie inside the file."""
        with self._open_file(names, os.O_WRONLY) as (fd, parent_id):
            if end >= os.fstat(fd).st_size:
                raise FilesError(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
            if data is None:
                chunk = 1 << 20
                for offset in range(start, end + 1, chunk):
                    os.pwrite(fd, bytes(min(chunk, end + 1 - offset)), offset)
            else:
                os.pwrite(fd, data, start)
            return Entry.of(names[-1], os.fstat(fd), parent_id)

    def read(self, names: list[str], start: int | None = None, end: int | None = None) -> tuple[Entry, bytes]:
        """The file and its bytes ``start``..``end`` (both optional, ``end`` clamped to the file's end).

        A ``start`` at or past the end is 416, as for an empty file asked for any range.
        """
        with self._open_file(names, os.O_RDONLY) as (fd, parent_id):
            entry = Entry.of(names[-1], os.fstat(fd), parent_id)
            if start is None:
                return entry, os.pread(fd, entry.size, 0)
            if start >= entry.size:
                raise FilesError(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
            last = entry.size - 1 if end is None else min(end, entry.size - 1)
            return entry, os.pread(fd, last - start + 1, start)

    def delete_file(self, names: list[str]) -> None:
        if not names:
            raise not_found("file")
        with self._dir(names[:-1], not_found("file")) as fd:
            self._target(fd, names[-1], want_dir=False)
            os.unlink(names[-1], dir_fd=fd)

    # ---- rename -----------------------------------------------------------------------------

    def rename(self, source: list[str], target: list[str], *, is_dir: bool, replace: bool) -> Entry:
        """Move ``source`` to ``target`` with one ``rename(2)``.

        The target's parent must exist; a target directory is never replaced; a target file only
        with ``replace`` and only by a file.
        """
        if not source or not target:
            raise FilesError(400, "InvalidInput", "The share's root directory cannot be renamed or replaced.")
        if is_dir and target[: len(source)] == source and target != source:
            raise FilesError(400, "InvalidInput", "A directory cannot be moved into itself.")
        with (
            self._dir(source[:-1], not_found("directory" if is_dir else "file")) as src_fd,
            self._dir(target[:-1], parent_not_found()) as dst_fd,
        ):
            self._target(src_fd, source[-1], want_dir=is_dir)
            existing = self._lstat(dst_fd, target[-1])
            if existing is not None and target != source:
                if stat.S_ISREG(existing.st_mode) and replace and not is_dir:
                    pass  # rename(2) replaces it atomically
                elif stat.S_ISREG(existing.st_mode) and replace:
                    raise FilesError(409, "ResourceTypeMismatch", "A directory cannot replace a file.")
                else:
                    raise FilesError(409, "ResourceAlreadyExists", "The specified resource already exists.")
            try:
                os.rename(source[-1], target[-1], src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    raise FilesError(400, "InvalidInput", "A directory cannot be moved into itself.") from None
                raise
            return Entry.of(target[-1], os.stat(target[-1], dir_fd=dst_fd, follow_symlinks=False),
                            os.fstat(dst_fd).st_ino)
