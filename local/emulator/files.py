"""An Azure Files data-plane stand-in: the FileREST subset ``azure-storage-file-share`` uses, over HTTPS.

Azurite has no Files service; this serves real directories instead, ``<root>/<account>/<share>/…``
(see :mod:`.files_store`), at IP-style URLs like Azurite's: the account URL is
``https://127.0.0.1:<port>/<account>``. The certificate comes from the ARM emulator's test CA
(:mod:`.certs`), so one CA bundle serves both. Served, by ``restype``/``comp``:

* shares: Create Share, Get Share Properties (a share exists when its directory does);
* directories: Create, Get Properties, Delete, List Directories and Files (paged), Rename;
* files: Create, Put Range (update/clear), Get File (ranges), Get File Properties, Delete, Rename.

Authentication is Azure Files' OAuth: a non-empty ``Authorization: Bearer`` token (not checked
further) and ``x-ms-file-request-intent: backup``. What is sourced and what is a guess is listed
in ``local/emulator/README.md`` ("Azure Files (data plane)").
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from .certs import server_ssl_context
from .files_store import (
    MAX_FILE_SIZE,
    FilesError,
    Share,
    auth_error,
    bad_header,
    decode_marker,
    entry_headers,
    error_xml,
    http_date,
    listing_xml,
    missing_header,
    split_path,
    unsupported,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_VERSION = "2026-10-06"  # answered when a request names no x-ms-version (the pinned SDK's)
MAX_PUT_RANGE = 4 * 1024 * 1024
MAX_LIST_RESULTS = 5000
RECENT_REQUESTS = 200
INTENT_HEADER = "x-ms-file-request-intent"
_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
_SHARE = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]*)")
_INTEGER = re.compile(r"-?[0-9]+")

Handler = Callable[[web.BaseRequest, Share, list[str]], Awaitable[web.StreamResponse]]


def _flag(request: web.BaseRequest, header: str) -> bool:
    return request.headers.get(header, "").strip().lower() == "true"


class FileService:
    """The Azure Files stand-in: an aiohttp HTTPS server over ``root``.

    ``state_dir`` holds the test CA (``ca.pem``): pass the ARM emulator's state directory to
    share its CA; by default it is ``root`` (account names cannot clash with ``ca.pem``).
    """

    def __init__(self, root: str | Path, host: str = "127.0.0.1", *, port: int = 0,
                 state_dir: str | Path | None = None) -> None:
        self.root = Path(root)
        self.host = host
        self.state_dir = Path(state_dir) if state_dir is not None else self.root
        self._port = port
        self._runner: web.ServerRunner | None = None
        self._ca_bundle: Path | None = None
        self._requests = 0
        self._operations: collections.Counter[str] = collections.Counter()
        self._failures: collections.Counter[str] = collections.Counter()
        self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_REQUESTS)
        share, directory, file = "share", "directory", None
        self._routes: dict[tuple[str, str | None, str | None], tuple[str, Handler]] = {
            ("PUT", share, None): ("CreateShare", self.create_share),
            ("GET", share, None): ("GetShareProperties", self.share_properties),
            ("HEAD", share, None): ("GetShareProperties", self.share_properties),
            ("PUT", directory, None): ("CreateDirectory", self.create_directory),
            ("GET", directory, None): ("GetDirectoryProperties", self.directory_properties),
            ("HEAD", directory, None): ("GetDirectoryProperties", self.directory_properties),
            ("DELETE", directory, None): ("DeleteDirectory", self.delete_directory),
            ("GET", directory, "list"): ("ListDirectoriesAndFiles", self.list_directory),
            ("PUT", directory, "rename"): ("RenameDirectory", self.rename),
            ("PUT", file, None): ("CreateFile", self.create_file),
            ("PUT", file, "range"): ("PutRange", self.put_range),
            ("PUT", file, "rename"): ("RenameFile", self.rename),
            ("GET", file, None): ("GetFile", self.get_file),
            ("HEAD", file, None): ("GetFileProperties", self.file_properties),
            ("DELETE", file, None): ("DeleteFile", self.delete_file),
        }

    # ---- life and what clients need ---------------------------------------------------------

    async def start(self) -> FileService:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ssl_context, self._ca_bundle = server_ssl_context(self.state_dir, self.host, "localhost", "127.0.0.1")
        # a bare server, no router: a route pattern would not match paths holding a decoded newline
        self._runner = web.ServerRunner(web.Server(self._dispatch), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=ssl_context).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FileService:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def endpoint(self) -> str:
        """``https://<host>:<port>``; an account's URL is ``{endpoint}/{account}`` (:meth:`account_url`)."""
        return f"https://{self.host}:{self._port}"

    def account_url(self, account: str) -> str:
        return f"{self.endpoint}/{account}"

    @property
    def ca_bundle(self) -> Path:
        """The CA certificate clients pass as ``connection_verify``."""
        assert self._ca_bundle is not None, "file service not started"
        return self._ca_bundle

    def share_dir(self, account: str, share: str, *, create: bool = False) -> Path:
        """The directory holding share ``share`` of ``account`` (made, with its parents, if ``create``)."""
        if not _ACCOUNT.fullmatch(account) or not _SHARE.fullmatch(share):
            raise ValueError(f"not a storage account and share name Azure accepts: {account!r}, {share!r}")
        path = self.root / account / share
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def stats(self) -> dict[str, Any]:
        """Requests per operation, refusals, and the last requests' method, path, operation and status."""
        return {
            "requests": self._requests,
            "operations": dict(self._operations),
            "auth_failures": self._failures["auth"],
            "intent_failures": self._failures["intent"],
            "recent": list(self._recent),
        }

    # ---- the pipeline every request passes -------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        operation = "?"
        self._requests += 1
        try:
            self._authenticate(request)
            restype, comp = request.query.get("restype"), request.query.get("comp")
            route = self._routes.get((request.method, restype, comp))
            if route is None:
                if any(key[1:] == (restype, comp) for key in self._routes):
                    raise FilesError(405, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb.")
                raise unsupported(f"restype={restype!r} comp={comp!r}")
            operation, handler = route
            self._operations[operation] += 1
            share, names = self._locate(request.raw_path.partition("?")[0], trailing_slash=restype == "directory")
            if restype == "share" and names:
                raise unsupported("A share operation on a path below the share")
            response = await handler(request, share, names)
        except FilesError as err:
            body = None if request.method == "HEAD" else error_xml(err, request_id)
            response = web.Response(status=err.status, body=body, content_type="application/xml",
                                    headers={"x-ms-error-code": err.code, **err.headers})
        except Exception:
            log.exception("Azure Files emulator: %s %s failed", request.method, request.path)
            err = FilesError(500, "InternalError", "The server encountered an internal error.")
            response = web.Response(status=500, body=error_xml(err, request_id), content_type="application/xml",
                                    headers={"x-ms-error-code": err.code})
        response.headers.update({
            "x-ms-request-id": request_id,
            "x-ms-version": request.headers.get("x-ms-version", DEFAULT_VERSION),
            "Date": formatdate(time.time(), usegmt=True),
        })
        if "x-ms-client-request-id" in request.headers:
            response.headers["x-ms-client-request-id"] = request.headers["x-ms-client-request-id"]
        self._recent.append({"method": request.method, "path": request.path, "operation": operation,
                             "status": response.status})
        return response

    def _authenticate(self, request: web.BaseRequest) -> None:
        auth = request.headers.get("Authorization")
        if auth is None:
            self._failures["auth"] += 1
            raise auth_error("NoAuthenticationInformation")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._failures["auth"] += 1
            raise auth_error("InvalidAuthenticationInfo")
        intent = request.headers.get(INTENT_HEADER)
        if intent is None:
            self._failures["intent"] += 1
            raise missing_header(INTENT_HEADER)
        if intent.strip().lower() != "backup":
            self._failures["intent"] += 1
            raise bad_header(INTENT_HEADER, intent)

    def _locate(self, raw_path: str, *, trailing_slash: bool = False) -> tuple[Share, list[str]]:
        """The share and the names below it of a raw (percent-encoded) ``/<account>/<share>/<path>``."""
        account, _, rest = raw_path[1:].partition("/")
        share_name, _, below = rest.partition("/")
        if not _ACCOUNT.fullmatch(account) or not _SHARE.fullmatch(share_name):
            raise FilesError(400, "InvalidResourceName", "The specified resource name contains invalid characters.")
        return Share(self.root, account, share_name), split_path(below, trailing_slash=trailing_slash)

    @staticmethod
    async def _disk(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _rename_source(self, value: str, share: Share, is_dir: bool) -> list[str]:
        """The names of ``x-ms-file-rename-source``: a URL of the same share, or a path below it."""
        url = urlsplit(value)
        if not url.scheme:
            return split_path(url.path.lstrip("/"), trailing_slash=is_dir)
        source_share, names = self._locate(url.path, trailing_slash=is_dir)
        if (source_share.account, source_share.share) != (share.account, share.share):
            raise FilesError(400, "InvalidInput", "The rename source must be in the destination's share.")
        return names

    # ---- shares -----------------------------------------------------------------------------

    async def create_share(self, request: web.BaseRequest, share: Share, names: list[str]) -> web.Response:
        entry = await self._disk(share.create)
        return web.Response(status=201, headers={"ETag": entry.etag, "Last-Modified": http_date(entry.mtime_ns)})

    async def share_properties(self, request: web.BaseRequest, share: Share, names: list[str]) -> web.Response:
        entry = await self._disk(share.directory, [])
        return web.Response(status=200, headers={"ETag": entry.etag, "Last-Modified": http_date(entry.mtime_ns)})

    # ---- directories ------------------------------------------------------------------------

    async def create_directory(self, request: web.BaseRequest, share: Share, names: list[str]) -> web.Response:
        return web.Response(status=201, headers=entry_headers(await self._disk(share.create_directory, names)))

    async def directory_properties(self, request: web.BaseRequest, share: Share, names: list[str]) -> web.Response:
        return web.Response(status=200, headers=entry_headers(await self._disk(share.directory, names)))

    async def delete_directory(self, request: web.BaseRequest, share: Share, names: list[str]) -> web.Response:
        await self._disk(share.delete_directory, names)
        return web.Response(status=202)

    async def list_directory(self, request: web.BaseRequest, share: Share, names: list[str]) -> web.Response:
        query = request.query
        prefix = query.get("prefix", "")
        max_results = _max_results(query.get("maxresults"))
        after = decode_marker(query["marker"]) if query.get("marker") else None
        include = {item.strip().lower() for item in query.get("include", "").split(",")}
        extended = _flag(request, "x-ms-file-extended-info")
        own, entries = await self._disk(share.list_directory, names)
        entries = [e for e in entries if e.name.startswith(prefix) and (after is None or e.name >= after)]
        body = listing_xml(service_endpoint=f"{self.endpoint}/{share.account}/", share=share.share,
                           path="/".join(names), query=dict(query), own=own, page=entries[:max_results],
                           next_name=entries[max_results].name if len(entries) > max_results else None,
                           include=include, extended=extended)
        return web.Response(status=200, body=body, content_type="application/xml")

    async def rename(self, request: web.BaseRequest, share: Share, target: list[str]) -> web.Response:
        is_dir = request.query.get("restype") == "directory"
        source = request.headers.get("x-ms-file-rename-source")
        if not source:
            raise missing_header("x-ms-file-rename-source")
        entry = await self._disk(share.rename, self._rename_source(source, share, is_dir), target, is_dir=is_dir,
                                 replace=_flag(request, "x-ms-file-rename-replace-if-exists"))
        return web.Response(status=200, headers=entry_headers(entry))

    # ---- files ------------------------------------------------------------------------------

    async def create_file(self, request: web.BaseRequest, share: Share, names: list[str]) -> web.Response:
        if "x-ms-type" not in request.headers:
            raise missing_header("x-ms-type")
        if request.headers["x-ms-type"].lower() != "file":
            raise bad_header("x-ms-type", request.headers["x-ms-type"])
        if "x-ms-content-length" not in request.headers:
            raise missing_header("x-ms-content-length")
        size = _int_header(request, "x-ms-content-length", MAX_FILE_SIZE)
        return web.Response(status=201, headers=entry_headers(await self._disk(share.create_file, names, size)))

    async def put_range(self, request: web.BaseRequest, share: Share, names: list[str]) -> web.Response:
        if "x-ms-structured-body" in request.headers:
            raise unsupported("A structured (CRC64-framed) body")
        start, end = _range(request, required=True)
        assert end is not None
        write = request.headers.get("x-ms-write", "").lower()
        length = request.content_length or 0
        if write == "update":
            if length > MAX_PUT_RANGE:
                raise FilesError(413, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum "
                                 "permissible limit.", MaxLimit=str(MAX_PUT_RANGE))
            if length != end - start + 1:
                raise bad_header("Content-Length", str(length))
            try:
                data: bytes | None = await request.content.readexactly(length)
            except asyncio.IncompleteReadError:
                raise bad_header("Content-Length", str(length)) from None
        elif write == "clear":
            if length:
                raise bad_header("Content-Length", str(length))
            data = None
        else:
            raise bad_header("x-ms-write", write) if write else missing_header("x-ms-write")
        entry = await self._disk(share.write_range, names, start, end, data)
        return web.Response(status=201, headers={"ETag": entry.etag, "Last-Modified": http_date(entry.mtime_ns)})

    async def get_file(self, request: web.BaseRequest, share: Share, names: list[str]) -> web.Response:
        wanted = _range(request, required=False)
        if wanted is None:
            entry, data = await self._disk(share.read, names)
            return web.Response(status=200, body=data, headers={**entry_headers(entry), "Accept-Ranges": "bytes"})
        start, end = wanted
        entry, data = await self._disk(share.read, names, start, end)
        headers = {**entry_headers(entry), "Accept-Ranges": "bytes",
                   "Content-Range": f"bytes {start}-{start + len(data) - 1}/{entry.size}"}
        return web.Response(status=206, body=data, headers=headers)

    async def file_properties(self, request: web.BaseRequest, share: Share, names: list[str]) -> web.StreamResponse:
        entry = await self._disk(share.file, names)
        response = web.StreamResponse(status=200, headers=entry_headers(entry))
        response.content_length = entry.size
        return response

    async def delete_file(self, request: web.BaseRequest, share: Share, names: list[str]) -> web.Response:
        await self._disk(share.delete_file, names)
        return web.Response(status=202)


# ---- request parsing ------------------------------------------------------------------------

def _int_header(request: web.BaseRequest, name: str, maximum: int) -> int:
    value = request.headers[name]
    if not _INTEGER.fullmatch(value) or not 0 <= int(value) <= maximum:
        raise bad_header(name, value)
    return int(value)


def _range(request: web.BaseRequest, *, required: bool) -> tuple[int, int | None] | None:
    """``(start, end)`` of ``x-ms-range`` (which wins) or ``Range``; ``end`` is required for writes."""
    name = "x-ms-range" if "x-ms-range" in request.headers else "Range"
    value = request.headers.get(name)
    if value is None:
        if required:
            raise missing_header("Range")
        return None
    match = _RANGE.fullmatch(value.strip())
    if match is None or (required and not match[2]) or (match[2] and int(match[2]) < int(match[1])):
        raise bad_header(name, value)
    return int(match[1]), int(match[2]) if match[2] else None


def _max_results(value: str | None) -> int:
    if value is None:
        return MAX_LIST_RESULTS
    if not _INTEGER.fullmatch(value):
        raise FilesError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the "
                         "request URI is invalid.", QueryParameterName="maxresults", QueryParameterValue=value)
    if int(value) <= 0:
        raise FilesError(400, "OutOfRangeQueryParameterValue", "One of the query parameters specified in the "
                         "request URI is outside the permissible range.", QueryParameterName="maxresults",
                         QueryParameterValue=value)
    return min(int(value), MAX_LIST_RESULTS)


# ---- for synchronous callers ----------------------------------------------------------------

class FileServiceThread:
    """A :class:`FileService` on its own event loop in a daemon thread, for synchronous callers.

    ``with FileServiceThread(root) as files: ...`` (or ``start()`` / ``close()``); the properties
    and :meth:`share_dir` are those of the service.
    """

    def __init__(self, root: str | Path, host: str = "127.0.0.1", **kwargs: Any) -> None:
        self.service = FileService(root, host, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="azure-files-emulator", daemon=True)

    def start(self, timeout: float = 30.0) -> FileServiceThread:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.service.start(), self._loop).result(timeout)
        except BaseException:
            self._stop_loop(timeout)
            raise
        return self

    def close(self, timeout: float = 30.0) -> None:
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self.service.stop(), self._loop).result(timeout)
            finally:
                self._stop_loop(timeout)

    def _stop_loop(self, timeout: float) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> FileServiceThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        return self.service.endpoint

    @property
    def ca_bundle(self) -> Path:
        return self.service.ca_bundle

    def account_url(self, account: str) -> str:
        return self.service.account_url(account)

    def share_dir(self, account: str, share: str, *, create: bool = False) -> Path:
        return self.service.share_dir(account, share, create=create)

    @property
    def stats(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            return self.service.stats

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(30)
