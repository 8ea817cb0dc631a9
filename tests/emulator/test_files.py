"""The Azure Files stand-in (local/emulator/files.py) against the real azure-storage-file-share client.

Every SDK call goes over HTTPS to a FileService on a background thread; raw requests (http.client,
which sends the path byte for byte) cover what the SDK cannot send: traversal attempts, missing
tokens and intent headers, malformed ranges.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.fileshare import ShareClient

from functions.homes import AzureFilesHomes
from local.emulator.certs import load_or_create_ca
from local.emulator.client import StaticTokenCredential
from local.emulator.files import FileService, FileServiceThread

ACCOUNT, SHARE, TOKEN = "acct", "homes", "secret-token-never-logged"
BEARER = {"Authorization": f"Bearer {TOKEN}", "x-ms-file-request-intent": "backup", "x-ms-version": "2026-10-06"}
UNICODE_NAME = "Émilie O'Brien+test ünï 📁"


@pytest.fixture
def files(tmp_path: Path) -> Iterator[FileServiceThread]:
    with FileServiceThread(tmp_path / "files", state_dir=tmp_path / "state") as service:
        service.share_dir(ACCOUNT, SHARE, create=True)
        yield service


@pytest.fixture
def share_dir(files: FileServiceThread) -> Path:
    return files.share_dir(ACCOUNT, SHARE)


def client(files: FileServiceThread, share: str = SHARE, token: str = TOKEN) -> ShareClient:
    return ShareClient(files.account_url(ACCOUNT), share, credential=StaticTokenCredential(token),
                       token_intent="backup", connection_verify=str(files.ca_bundle))


@pytest.fixture
def share(files: FileServiceThread) -> Iterator[ShareClient]:
    with client(files) as share_client:
        yield share_client


def raw(files: FileServiceThread, method: str, path: str, headers: dict[str, str] | None = None,
        body: bytes = b"") -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request with ``path`` sent exactly as given; (status, headers, body)."""
    endpoint = urlsplit(files.endpoint)
    context = ssl.create_default_context(cafile=str(files.ca_bundle))
    conn = http.client.HTTPSConnection(endpoint.hostname, endpoint.port, context=context, timeout=30)
    try:
        conn.request(method, path, body=body, headers=BEARER if headers is None else headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def error_of(body: bytes) -> dict[str, str]:
    assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?><Error>'), body
    return {child.tag: child.text or "" for child in ET.fromstring(body)}


def tree(root: Path) -> dict[str, Any]:
    """Everything below ``root`` (links not followed): kind, size and content hash per path."""
    found: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if kind == "file" and path.is_file() else None
            found[str(path.relative_to(root))] = (kind, st.st_size if kind == "file" else None, digest)
    return found


# ---- shares -------------------------------------------------------------------------------------

def test_a_share_is_there_when_its_directory_is(files: FileServiceThread, share: ShareClient):
    assert share.get_share_properties().name == SHARE
    with client(files, "elsewhere") as missing, pytest.raises(ResourceNotFoundError) as err:
        missing.get_share_properties()
    assert err.value.error_code == "ShareNotFound"
    with client(files, "elsewhere") as missing, pytest.raises(ResourceNotFoundError) as err:
        missing.get_directory_client("x").create_directory()
    assert err.value.error_code == "ShareNotFound"


def test_create_share_makes_its_directory(files: FileServiceThread):
    with client(files, "new-share") as new:
        new.create_share()
        assert files.share_dir(ACCOUNT, "new-share").is_dir()
        with pytest.raises(ResourceExistsError) as err:
            new.create_share()
    assert err.value.error_code == "ShareAlreadyExists"


def test_an_invalid_share_or_account_name_is_400(files: FileServiceThread):
    for path in ("/acct/Bad_Share?restype=share", "/acct/a--b?restype=share", "/AC/homes?restype=share"):
        status, headers, body = raw(files, "PUT", path)
        assert (status, headers["x-ms-error-code"]) == (400, "InvalidResourceName"), path
    with pytest.raises(ValueError):
        files.share_dir(ACCOUNT, "Bad_Share")


def test_the_service_shares_the_arm_emulators_ca(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    ca_pem = load_or_create_ca(state).cert_pem.bytes()
    with FileServiceThread(tmp_path / "files", state_dir=state) as service:
        assert service.ca_bundle == state / "ca.pem"
        assert service.ca_bundle.read_bytes() == ca_pem


# ---- directories --------------------------------------------------------------------------------

def test_create_directory(share: ShareClient, share_dir: Path):
    share.get_directory_client("a").create_directory()
    share.get_directory_client("a/b c").create_directory()
    assert (share_dir / "a" / "b c").is_dir()
    with pytest.raises(ResourceExistsError) as err:
        share.get_directory_client("a").create_directory()
    assert err.value.error_code == "ResourceAlreadyExists"
    with pytest.raises(ResourceNotFoundError) as err:
        share.get_directory_client("missing/child").create_directory()
    assert err.value.error_code == "ParentNotFound"
    assert not (share_dir / "missing").exists()


def test_create_directory_where_a_file_is_is_a_type_mismatch(share: ShareClient, share_dir: Path):
    (share_dir / "taken").write_bytes(b"x")
    with pytest.raises(ResourceExistsError) as err:
        share.get_directory_client("taken").create_directory()
    assert err.value.error_code == "ResourceTypeMismatch"
    with pytest.raises(ResourceNotFoundError) as err:  # a file is no parent
        share.get_directory_client("taken/child").create_directory()
    assert err.value.error_code == "ParentNotFound"


def test_directory_properties(share: ShareClient, share_dir: Path):
    (share_dir / "d").mkdir()
    properties = share.get_directory_client("d").get_directory_properties()
    assert properties.is_directory and properties.etag.startswith('"0x') and properties.last_modified is not None
    assert properties.file_id == str((share_dir / "d").stat().st_ino)
    assert share.get_directory_client("d").exists()
    assert not share.get_directory_client("nope").exists()
    (share_dir / "f").write_bytes(b"")
    with pytest.raises(ResourceNotFoundError) as err:
        share.get_directory_client("f").get_directory_properties()
    assert err.value.error_code == "ResourceNotFound"
    assert share.get_directory_client("").get_directory_properties().is_directory  # the share's root


def test_delete_directory(share: ShareClient, share_dir: Path):
    (share_dir / "full" / "inner").mkdir(parents=True)
    with pytest.raises(ResourceExistsError) as err:
        share.get_directory_client("full").delete_directory()
    assert err.value.error_code == "DirectoryNotEmpty"
    share.get_directory_client("full/inner").delete_directory()
    share.get_directory_client("full").delete_directory()
    assert list(share_dir.iterdir()) == []
    with pytest.raises(ResourceNotFoundError) as err:
        share.get_directory_client("full").delete_directory()
    assert err.value.error_code == "ResourceNotFound"


def test_the_shares_root_cannot_be_deleted(files: FileServiceThread, share_dir: Path):
    status, headers, body = raw(files, "DELETE", f"/{ACCOUNT}/{SHARE}?restype=directory")
    assert (status, headers["x-ms-error-code"]) == (409, "CannotDeleteFileOrDirectory")
    assert share_dir.is_dir()


def test_a_trailing_slash_on_a_directory_is_dropped(files: FileServiceThread, share_dir: Path):
    status, _, _ = raw(files, "PUT", f"/{ACCOUNT}/{SHARE}/d/?restype=directory")
    assert status == 201 and (share_dir / "d").is_dir()


# ---- listing ------------------------------------------------------------------------------------

def test_list_directories_and_files(share: ShareClient, share_dir: Path):
    (share_dir / "top" / "sub dir").mkdir(parents=True)
    (share_dir / "top" / UNICODE_NAME).write_bytes(b"12345")
    (share_dir / "top" / "a.txt").write_bytes(b"")
    listed = {item["name"]: item for item in share.get_directory_client("top").list_directories_and_files()}
    assert set(listed) == {"sub dir", UNICODE_NAME, "a.txt"}
    assert listed["sub dir"]["is_directory"] and not listed["a.txt"]["is_directory"]
    assert listed[UNICODE_NAME]["size"] == 5
    by_prefix = share.get_directory_client("top").list_directories_and_files(name_starts_with="s")
    assert [item["name"] for item in by_prefix] == ["sub dir"]
    with pytest.raises(ResourceNotFoundError):
        list(share.get_directory_client("missing").list_directories_and_files())


def test_listing_pages_with_next_marker(share: ShareClient, share_dir: Path):
    names = [f"n{i:02d}" for i in range(7)]
    for name in names:
        (share_dir / name).mkdir()
    pages = [[item["name"] for item in page]
             for page in share.get_directory_client("").list_directories_and_files(results_per_page=3).by_page()]
    assert pages == [names[0:3], names[3:6], names[6:7]]


def test_listing_xml_and_query_checks(files: FileServiceThread, share_dir: Path):
    for name in ("a", "b", "c"):
        (share_dir / name).write_bytes(name.encode())
    status, headers, body = raw(files, "GET", f"/{ACCOUNT}/{SHARE}?restype=directory&comp=list&maxresults=2")
    assert status == 200 and headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(body)
    assert (root.tag, root.get("ShareName"), root.get("DirectoryPath")) == ("EnumerationResults", SHARE, "")
    assert root.findtext("MaxResults") == "2" and root.find("Marker") is None
    assert [e.findtext("Name") for e in root.find("Entries")] == ["a", "b"]
    assert root.find("Entries/File/Properties").findtext("Content-Length") == "1"
    marker = root.findtext("NextMarker")
    status, _, body = raw(files, "GET", f"/{ACCOUNT}/{SHARE}?restype=directory&comp=list&marker={quote(marker)}")
    root = ET.fromstring(body)
    assert root.findtext("Marker") == marker and root.findtext("NextMarker") == ""
    assert [e.findtext("Name") for e in root.find("Entries")] == ["c"]
    for query, code in (("maxresults=0", "OutOfRangeQueryParameterValue"), ("maxresults=x", "InvalidQueryParameterValue"),
                        ("marker=%25%25", "InvalidContinuationToken")):
        status, headers, body = raw(files, "GET", f"/{ACCOUNT}/{SHARE}?restype=directory&comp=list&{query}")
        assert (status, headers["x-ms-error-code"], error_of(body)["Code"]) == (400, code, code), query


def test_listing_with_include_and_extended_info(share: ShareClient, share_dir: Path):
    (share_dir / "f").write_bytes(b"xy")
    (item,) = share.list_directories_and_files(include=["timestamps", "Etag", "Attributes"], include_extended_info=True)
    assert item["file_id"] == str((share_dir / "f").stat().st_ino)
    assert item["etag"].startswith('"0x') and item["file_attributes"] == "Archive"
    assert item["last_modified"] is not None and item["last_write_time"].endswith("Z")


def test_listing_leaves_out_links_special_files_and_unaddressable_names(share: ShareClient, share_dir: Path,
                                                                        tmp_path: Path):
    (share_dir / "kept").mkdir()
    (share_dir / "link").symlink_to(tmp_path)
    os.mkfifo(share_dir / "fifo")
    (share_dir / "a:b").write_bytes(b"")  # a name Azure Files forbids
    os.close(os.open(os.fsencode(share_dir) + b"/\xff\xfe", os.O_CREAT | os.O_WRONLY))  # not UTF-8
    assert [item["name"] for item in share.list_directories_and_files()] == ["kept"]


def test_names_too_long_for_the_disk_are_400(share: ShareClient, share_dir: Path):
    with pytest.raises(HttpResponseError) as err:
        share.get_directory_client("é" * 200).create_directory()  # 200 characters, 400 bytes
    assert (err.value.status_code, err.value.error_code) == (400, "InvalidFileOrDirectoryPathName")
    share.get_directory_client("e" * 255).create_directory()
    assert (share_dir / ("e" * 255)).is_dir()


# ---- rename -------------------------------------------------------------------------------------

def test_rename_directory_moves_the_tree_in_one_rename(share: ShareClient, share_dir: Path):
    (share_dir / "src" / "inner").mkdir(parents=True)
    (share_dir / "src" / "inner" / "f").write_bytes(b"data")
    (share_dir / "to").mkdir()
    inode = (share_dir / "src").stat().st_ino
    renamed = share.get_directory_client("src").rename_directory(f"to/{UNICODE_NAME}")
    assert renamed.get_directory_properties().is_directory
    moved = share_dir / "to" / UNICODE_NAME
    assert moved.stat().st_ino == inode  # os.rename, not copy and delete
    assert (moved / "inner" / "f").read_bytes() == b"data" and not (share_dir / "src").exists()


def test_rename_directory_refusals(share: ShareClient, share_dir: Path):
    (share_dir / "src" / "child").mkdir(parents=True)
    (share_dir / "other").mkdir()
    (share_dir / "a-file").write_bytes(b"keep")
    before = tree(share_dir)
    source = share.get_directory_client("src")
    cases = [
        ({"new_name": "other"}, ResourceExistsError, "ResourceAlreadyExists"),
        ({"new_name": "other", "overwrite": True}, ResourceExistsError, "ResourceAlreadyExists"),
        ({"new_name": "a-file"}, ResourceExistsError, "ResourceAlreadyExists"),
        ({"new_name": "a-file", "overwrite": True}, ResourceExistsError, "ResourceTypeMismatch"),
        ({"new_name": "src/child/x"}, HttpResponseError, "InvalidInput"),
        ({"new_name": "missing/x"}, ResourceNotFoundError, "ParentNotFound"),
    ]
    for kwargs, error, code in cases:
        with pytest.raises(error) as err:
            source.rename_directory(**kwargs)
        assert err.value.error_code == code, kwargs
    with pytest.raises(ResourceNotFoundError) as err:
        share.get_directory_client("nope").rename_directory("new")
    assert err.value.error_code == "ResourceNotFound"
    assert tree(share_dir) == before


def test_rename_source_must_be_in_the_same_share(files: FileServiceThread, share_dir: Path):
    files.share_dir(ACCOUNT, "second", create=True)
    (files.share_dir(ACCOUNT, "second") / "d").mkdir()
    headers = {**BEARER, "x-ms-file-rename-source": f"{files.endpoint}/{ACCOUNT}/second/d"}
    status, response_headers, _ = raw(files, "PUT", f"/{ACCOUNT}/{SHARE}/d?restype=directory&comp=rename", headers)
    assert (status, response_headers["x-ms-error-code"]) == (400, "InvalidInput")
    assert (files.share_dir(ACCOUNT, "second") / "d").is_dir() and not (share_dir / "d").exists()


def test_rename_file(share: ShareClient, share_dir: Path):
    (share_dir / "one").write_bytes(b"1")
    (share_dir / "two").write_bytes(b"2")
    (share_dir / "dir").mkdir()
    with pytest.raises(ResourceExistsError) as err:
        share.get_file_client("one").rename_file("two")
    assert err.value.error_code == "ResourceAlreadyExists"
    with pytest.raises(ResourceExistsError):
        share.get_file_client("one").rename_file("dir", overwrite=True)
    share.get_file_client("one").rename_file("two", overwrite=True)
    assert (share_dir / "two").read_bytes() == b"1" and not (share_dir / "one").exists()
    share.get_file_client("two").rename_file(f"dir/{UNICODE_NAME}")
    assert (share_dir / "dir" / UNICODE_NAME).read_bytes() == b"1"


# ---- files --------------------------------------------------------------------------------------

def test_create_upload_download_and_delete_a_file(share: ShareClient, share_dir: Path):
    data = os.urandom(9 * 1024 * 1024 + 7)  # more than two 4 MiB ranges
    file = share.get_file_client(UNICODE_NAME)
    file.upload_file(data)
    assert (share_dir / UNICODE_NAME).read_bytes() == data
    assert file.download_file().readall() == data
    assert file.download_file(offset=4 * 1024 * 1024 - 3, length=10).readall() == data[4 * 1024 * 1024 - 3:][:10]
    properties = file.get_file_properties()
    assert properties.size == len(data) and properties.etag.startswith('"0x') and properties.last_modified
    file.delete_file()
    assert not (share_dir / UNICODE_NAME).exists()
    with pytest.raises(ResourceNotFoundError) as err:
        file.delete_file()
    assert err.value.error_code == "ResourceNotFound"


def test_create_file_sets_its_size_and_replaces_an_existing_one(share: ShareClient, share_dir: Path):
    (share_dir / "f").write_bytes(b"old content")
    share.get_file_client("f").create_file(4)
    assert (share_dir / "f").read_bytes() == b"\0" * 4
    assert share.get_file_client("f").download_file().readall() == b"\0" * 4
    share.get_file_client("empty").create_file(0)
    assert share.get_file_client("empty").download_file().readall() == b""  # 416 on a range, then a plain GET
    with pytest.raises(ResourceNotFoundError) as err:
        share.get_file_client("missing/f").create_file(1)
    assert err.value.error_code == "ParentNotFound"
    (share_dir / "d").mkdir()
    with pytest.raises(ResourceExistsError) as err:
        share.get_file_client("d").create_file(1)
    assert err.value.error_code == "ResourceTypeMismatch"


def test_put_range_update_and_clear(share: ShareClient, share_dir: Path):
    file = share.get_file_client("f")
    file.create_file(1536)
    file.upload_range(b"a" * 1000, offset=3, length=1000)
    assert (share_dir / "f").read_bytes() == b"\0" * 3 + b"a" * 1000 + b"\0" * 533
    file.clear_range(offset=512, length=512)  # the SDK only clears 512-byte aligned ranges
    assert (share_dir / "f").read_bytes() == b"\0" * 3 + b"a" * 509 + b"\0" * 1024
    with pytest.raises(HttpResponseError) as err:
        file.upload_range(b"xy", offset=1535, length=2)
    assert (err.value.status_code, err.value.error_code) == (416, "InvalidRange")


def test_put_range_header_checks(files: FileServiceThread, share_dir: Path):
    (share_dir / "f").write_bytes(b"0123456789")
    path = f"/{ACCOUNT}/{SHARE}/f?comp=range"
    cases = [
        ({"Range": "bytes=0-3", "x-ms-write": "update"}, b"abc", "InvalidHeaderValue"),  # length mismatch
        ({"Range": "bytes=0-", "x-ms-write": "update"}, b"abc", "InvalidHeaderValue"),  # no end
        ({"Range": "bytes=0-2"}, b"abc", "MissingRequiredHeader"),
        ({"x-ms-write": "update"}, b"abc", "MissingRequiredHeader"),
        ({"Range": "bytes=0-2", "x-ms-write": "clear"}, b"abc", "InvalidHeaderValue"),  # clear takes no body
    ]
    for headers, body, code in cases:
        status, response_headers, _ = raw(files, "PUT", path, {**BEARER, **headers}, body)
        assert (status, response_headers["x-ms-error-code"]) == (400, code), headers
    for value in ("-1", "²", "1.5", str(4 * 1024**4 + 1)):
        status, response_headers, _ = raw(files, "PUT", f"/{ACCOUNT}/{SHARE}/g",
                                          {**BEARER, "x-ms-type": "file", "x-ms-content-length": value})
        assert (status, response_headers["x-ms-error-code"]) == (400, "InvalidHeaderValue"), value
    assert not (share_dir / "g").exists()
    status, _, _ = raw(files, "PUT", path, {**BEARER, "Range": "bytes=0-0", "x-ms-range": "bytes=8-9",
                                           "x-ms-write": "update"}, b"XY")
    assert status == 201 and (share_dir / "f").read_bytes() == b"01234567XY"  # x-ms-range wins


def test_get_file_ranges_answer_206(files: FileServiceThread, share_dir: Path):
    (share_dir / "f").write_bytes(b"0123456789")
    status, headers, body = raw(files, "GET", f"/{ACCOUNT}/{SHARE}/f", {**BEARER, "x-ms-range": "bytes=2-4"})
    assert (status, body, headers["Content-Range"]) == (206, b"234", "bytes 2-4/10")
    status, headers, body = raw(files, "GET", f"/{ACCOUNT}/{SHARE}/f", {**BEARER, "Range": "bytes=7-"})
    assert (status, body, headers["Content-Range"]) == (206, b"789", "bytes 7-9/10")
    status, headers, body = raw(files, "GET", f"/{ACCOUNT}/{SHARE}/f")
    assert (status, body, headers["Content-Length"], headers["x-ms-type"]) == (200, b"0123456789", "10", "File")
    status, headers, _ = raw(files, "GET", f"/{ACCOUNT}/{SHARE}/f", {**BEARER, "Range": "bytes=10-"})
    assert (status, headers["x-ms-error-code"]) == (416, "InvalidRange")


def test_file_operations_on_a_directory_find_no_file(share: ShareClient, share_dir: Path):
    (share_dir / "d").mkdir()
    for call in (lambda f: f.get_file_properties(), lambda f: f.download_file(), lambda f: f.delete_file()):
        with pytest.raises(ResourceNotFoundError):
            call(share.get_file_client("d"))
    assert (share_dir / "d").is_dir()


def test_file_properties_head(files: FileServiceThread, share_dir: Path):
    (share_dir / "f").write_bytes(b"12345")
    status, headers, body = raw(files, "HEAD", f"/{ACCOUNT}/{SHARE}/f")
    assert (status, headers["Content-Length"], headers["x-ms-type"], body) == (200, "5", "File", b"")
    status, headers, body = raw(files, "HEAD", f"/{ACCOUNT}/{SHARE}/missing")
    assert (status, headers["x-ms-error-code"], body) == (404, "ResourceNotFound", b"")


# ---- errors and headers -------------------------------------------------------------------------

def test_every_answer_carries_request_id_version_and_date(files: FileServiceThread, share_dir: Path):
    (share_dir / "f").write_bytes(b"x")
    for method, path in (("GET", f"/{ACCOUNT}/{SHARE}/f"), ("GET", f"/{ACCOUNT}/{SHARE}/missing"),
                         ("PUT", f"/{ACCOUNT}/{SHARE}/d?restype=directory"), ("GET", f"/{ACCOUNT}/{SHARE}?comp=stats")):
        status, headers, _ = raw(files, method, path, {**BEARER, "x-ms-client-request-id": "abc"})
        assert headers["x-ms-request-id"] and headers["x-ms-version"] == "2026-10-06" and headers["Date"], path
        assert headers["x-ms-client-request-id"] == "abc"


def test_error_bodies_have_azure_storages_shape(files: FileServiceThread):
    status, headers, body = raw(files, "DELETE", f"/{ACCOUNT}/{SHARE}/missing?restype=directory")
    error = error_of(body)
    assert status == 404 and headers["x-ms-error-code"] == error["Code"] == "ResourceNotFound"
    assert error["Message"].startswith("The specified directory does not exist.\nRequestId:")
    assert headers["x-ms-request-id"] in error["Message"] and "\nTime:" in error["Message"]


def test_unserved_operations_and_verbs(files: FileServiceThread):
    status, headers, _ = raw(files, "PUT", f"/{ACCOUNT}/{SHARE}/f?comp=metadata")
    assert (status, headers["x-ms-error-code"]) == (400, "UnsupportedQueryParameter")
    status, headers, _ = raw(files, "POST", f"/{ACCOUNT}/{SHARE}/f")
    assert (status, headers["x-ms-error-code"]) == (405, "UnsupportedHttpVerb")


# ---- authentication -----------------------------------------------------------------------------

def test_a_request_without_a_token_is_401(files: FileServiceThread, share_dir: Path):
    status, headers, body = raw(files, "PUT", f"/{ACCOUNT}/{SHARE}/d?restype=directory",
                                {"x-ms-file-request-intent": "backup"})
    assert (status, headers["x-ms-error-code"], error_of(body)["Code"]) == (401, "NoAuthenticationInformation",
                                                                             "NoAuthenticationInformation")
    assert headers["WWW-Authenticate"].startswith("Bearer ")
    for auth in ("Bearer ", "Bearer", "SharedKey acct:c2lnbmF0dXJl"):
        status, headers, _ = raw(files, "PUT", f"/{ACCOUNT}/{SHARE}/d?restype=directory",
                                 {"Authorization": auth, "x-ms-file-request-intent": "backup"})
        assert (status, headers["x-ms-error-code"]) == (401, "InvalidAuthenticationInfo"), auth
    assert not (share_dir / "d").exists()
    assert files.stats["auth_failures"] == 4


def test_the_sdk_with_an_empty_token_is_refused(files: FileServiceThread, share_dir: Path):
    with client(files, token="") as anonymous, pytest.raises(ClientAuthenticationError):
        anonymous.get_directory_client("d").create_directory()
    assert not (share_dir / "d").exists()


def test_a_bearer_request_needs_the_backup_intent(files: FileServiceThread, share_dir: Path):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    status, response_headers, body = raw(files, "PUT", f"/{ACCOUNT}/{SHARE}/d?restype=directory", headers)
    error = error_of(body)
    assert (status, error["Code"], error["HeaderName"]) == (400, "MissingRequiredHeader", "x-ms-file-request-intent")
    assert response_headers["x-ms-error-code"] == "MissingRequiredHeader"
    status, response_headers, _ = raw(files, "PUT", f"/{ACCOUNT}/{SHARE}/d?restype=directory",
                                      {**headers, "x-ms-file-request-intent": "restore"})
    assert (status, response_headers["x-ms-error-code"]) == (400, "InvalidHeaderValue")
    assert not (share_dir / "d").exists()
    assert files.stats["intent_failures"] == 2


# ---- staying inside the share -------------------------------------------------------------------

TRAVERSALS = [
    "..%2F..%2Fescaped", "%2e%2e/escaped", "a/../../escaped", "..", "%2E%2E%2Fsecond%2Fescaped",
    "/escaped", "%2Fescaped", "a//escaped", "a%2F%2Fescaped", "a%00b", "a%5C..%5Cescaped", "a%3Ab", "a%0Ab",
    "%FF%FE", ".",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_attempts_fail_and_touch_nothing(files: FileServiceThread, share_dir: Path, tmp_path: Path,
                                                   target: str):
    files.share_dir(ACCOUNT, "second", create=True)
    (share_dir / "a").mkdir()
    before = tree(tmp_path)
    base = f"/{ACCOUNT}/{SHARE}/{target}"
    attempts = [("PUT", f"{base}?restype=directory", {}), ("PUT", base, {"x-ms-type": "file",
                                                                          "x-ms-content-length": "1"}),
                ("DELETE", f"{base}?restype=directory", {}), ("DELETE", base, {}), ("GET", base, {}),
                ("PUT", f"/{ACCOUNT}/{SHARE}/new?restype=directory&comp=rename",
                 {"x-ms-file-rename-source": f"{files.endpoint}{base}"}),
                ("PUT", f"{base}?restype=directory&comp=rename",
                 {"x-ms-file-rename-source": f"{files.endpoint}/{ACCOUNT}/{SHARE}/a"})]
    for method, path, headers in attempts:
        status, _, _ = raw(files, method, path, {**BEARER, **headers})
        assert status == 400, (method, path, status)
    assert tree(tmp_path) == before


def test_traversal_through_the_sdk_is_refused(share: ShareClient, tmp_path: Path):
    before = tree(tmp_path)
    for path in ("../escaped", "../../escaped", "a/../../escaped"):
        with pytest.raises(HttpResponseError) as err:
            share.get_directory_client(path).create_directory()
        assert (err.value.status_code, err.value.error_code) == (400, "InvalidResourceName")
    assert tree(tmp_path) == before


def test_links_that_leave_the_share_are_not_followed(share: ShareClient, share_dir: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret").write_bytes(b"secret")
    (share_dir / "dir-link").symlink_to(outside)
    (share_dir / "file-link").symlink_to(outside / "secret")
    before = tree(tmp_path)
    refused = [
        lambda: share.get_directory_client("dir-link/new").create_directory(),
        lambda: share.get_directory_client("dir-link/dir").get_directory_properties(),
        lambda: share.get_directory_client("dir-link/dir").delete_directory(),
        lambda: list(share.get_directory_client("dir-link").list_directories_and_files()),
        lambda: share.get_directory_client("dir-link").delete_directory(),
        lambda: share.get_directory_client("dir-link").rename_directory("moved"),
        lambda: share.get_file_client("dir-link/secret").download_file(),
        lambda: share.get_file_client("dir-link/planted").create_file(3),
        lambda: share.get_file_client("file-link").download_file(),
        lambda: share.get_file_client("file-link").get_file_properties(),
        lambda: share.get_file_client("file-link").upload_range(b"x", offset=0, length=1),
        lambda: share.get_file_client("file-link").delete_file(),
        lambda: share.get_file_client("file-link").create_file(1),
        lambda: share.get_file_client("file-link").rename_file("moved"),
    ]
    for index, call in enumerate(refused):
        with pytest.raises(HttpResponseError):
            call()
        assert tree(tmp_path) == before, index


def test_a_share_directory_that_is_a_link_is_no_share(files: FileServiceThread, tmp_path: Path):
    (tmp_path / "outside").mkdir()
    files.share_dir(ACCOUNT, "linked").symlink_to(tmp_path / "outside")
    with client(files, "linked") as linked, pytest.raises(ResourceNotFoundError) as err:
        linked.get_directory_client("x").create_directory()
    assert err.value.error_code == "ShareNotFound"
    assert list((tmp_path / "outside").iterdir()) == []


# ---- stats --------------------------------------------------------------------------------------

def test_stats_count_operations_and_keep_recent_requests_without_tokens(files: FileServiceThread,
                                                                        share: ShareClient):
    share.get_directory_client("d").create_directory()
    share.get_file_client("d/f").upload_file(b"x")
    list(share.get_directory_client("d").list_directories_and_files())
    stats = files.stats
    assert stats["operations"]["CreateDirectory"] == 1 and stats["operations"]["CreateFile"] == 1
    assert stats["operations"]["PutRange"] == 1 and stats["operations"]["ListDirectoriesAndFiles"] == 1
    assert {"method": "PUT", "path": f"/{ACCOUNT}/{SHARE}/d", "operation": "CreateDirectory",
            "status": 201} in stats["recent"]
    assert TOKEN not in repr(stats)


# ---- the product's home folders against it ------------------------------------------------------

@pytest.fixture
def homes(files: FileServiceThread) -> AzureFilesHomes:
    return AzureFilesHomes(files.account_url(ACCOUNT), SHARE, StaticTokenCredential(),
                           connection_verify=str(files.ca_bundle))


def test_homes_ensure_creates_a_nested_path_idempotently(homes: AzureFilesHomes, share_dir: Path):
    homes.ensure(f"users/{UNICODE_NAME}/work")
    assert (share_dir / "users" / UNICODE_NAME / "work").is_dir()
    (share_dir / "users" / UNICODE_NAME / "work" / "notebook.ipynb").write_text("{}")
    homes.ensure(f"/users/{UNICODE_NAME}/work/")
    assert (share_dir / "users" / UNICODE_NAME / "work" / "notebook.ipynb").read_text() == "{}"


def test_homes_delete_removes_a_tree(homes: AzureFilesHomes, share: ShareClient, share_dir: Path):
    homes.ensure("users/alice/a/b")
    share.get_file_client("users/alice/top.txt").upload_file(b"top")
    share.get_file_client("users/alice/a/b/deep file.txt").upload_file(b"deep")
    (share_dir / "users" / "alice" / "a" / "empty dir").mkdir()
    homes.ensure("users/bob")
    homes.delete("users/alice")
    assert not (share_dir / "users" / "alice").exists()
    assert (share_dir / "users" / "bob").is_dir()


def test_homes_delete_of_a_missing_path_is_quiet(homes: AzureFilesHomes, share_dir: Path, files: FileServiceThread):
    homes.delete("users/nobody")
    homes.delete("nowhere/at/all")
    assert list(share_dir.iterdir()) == []
    assert files.stats["operations"].get("DeleteDirectory", 0) == 0


# ---- in an event loop ---------------------------------------------------------------------------

async def test_the_service_runs_in_an_event_loop(tmp_path: Path):
    async with FileService(tmp_path / "files", state_dir=tmp_path / "state") as service:
        service.share_dir(ACCOUNT, SHARE, create=True)
        context = ssl.create_default_context(cafile=str(service.ca_bundle))
        async with aiohttp.ClientSession() as session:
            url = f"{service.account_url(ACCOUNT)}/{SHARE}/d?restype=directory"
            async with session.put(url, headers=BEARER, ssl=context) as response:
                assert response.status == 201
        assert (service.share_dir(ACCOUNT, SHARE) / "d").is_dir()
        assert service.stats["operations"] == {"CreateDirectory": 1}
