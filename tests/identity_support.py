"""A stand-in for the managed identity endpoint that Azure Functions and Container Apps give an app.

In Azure, the platform sets ``IDENTITY_ENDPOINT`` (a loopback URL) and
``IDENTITY_HEADER`` (a secret) in the app's environment; ``DefaultAzureCredential``
then takes the "App Service" managed identity path of azure-identity 1.27
(MSAL's ``_obtain_token_on_app_service`` for the sync credential, azure-identity's
own ``AppServiceCredential`` for the async one), which both send::

    GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=<resource>[&client_id=<user-assigned id>]
    X-IDENTITY-HEADER: $IDENTITY_HEADER

and expect ``{"access_token", "expires_on", "resource", "token_type"}`` back as JSON
(``expires_on`` in epoch seconds). :class:`FakeManagedIdentity` answers exactly
that on 127.0.0.1, records every request, and issues JWTs whose claims a
storage service accepts: ``aud`` the requested resource, ``iss``
``https://sts.windows.net/<tenant>/``, ``tid``, ``oid``, ``iat``/``nbf``/``exp``
(signed with HS256 and a key of the instance; Azurite's ``--oauth basic``
checks everything but the signature).

A test fixture only: production code never imports it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

API_VERSION = "2019-08-01"
STORAGE_RESOURCE = "https://storage.azure.com"
ARM_RESOURCE = "https://management.azure.com"
TOKEN_PATH = "/msi/token"

# every environment variable that would steer DefaultAzureCredential to another source than the endpoint
OTHER_CREDENTIAL_VARIABLES = (
    "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
    "AZURE_TOKEN_CREDENTIALS", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID",
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenRequest:
    """One request the endpoint received: what it was asked for, and whether it answered with a token."""

    method: str
    path: str
    api_version: str
    resource: str
    client_id: str | None
    header_ok: bool
    status: int
    token: str = ""


@dataclass(frozen=True)
class UserAssignedIdentity:
    """A user-assigned managed identity the fake endpoint knows (client id → object id)."""

    client_id: str
    object_id: str
    name: str = "id-test"


class FakeManagedIdentity:
    """The managed identity endpoint of an App Service / Functions / Container Apps host, on 127.0.0.1.

    ``identities`` are the user-assigned identities assigned to the "app"
    (a request naming another client id is refused, as Azure refuses it);
    ``system_assigned`` says whether a request without ``client_id`` gets a
    token. ``audience`` replaces the requested resource in the tokens' ``aud``
    (``None``: the resource itself), so a test can hand out tokens that a
    service must refuse.
    """

    def __init__(
        self,
        identities: tuple[UserAssignedIdentity, ...] = (),
        *,
        tenant_id: str | None = None,
        system_assigned: bool = False,
        lifetime: int = 24 * 3600,
    ) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.identities = {identity.client_id: identity for identity in identities}
        self.system_object_id = str(uuid.uuid4()) if system_assigned else None
        self.lifetime = lifetime
        self.audience: str | None = None
        self.header = secrets.token_urlsafe(24)
        self._signing_key = secrets.token_bytes(32)
        self._requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> FakeManagedIdentity:
        """Listen on a free loopback port and serve from a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fake._answer(self)

            def do_POST(self) -> None:  # noqa: N802
                fake._answer(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-managed-identity", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FakeManagedIdentity:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        """What the platform puts in ``IDENTITY_ENDPOINT``."""
        if self._server is None:
            raise RuntimeError("the fake managed identity endpoint is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{TOKEN_PATH}"

    def environment(self) -> dict[str, str]:
        """The variables the platform sets for an app with a managed identity."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.header}

    @property
    def requests(self) -> list[TokenRequest]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    def asked_for(self) -> set[tuple[str, str | None]]:
        """The distinct ``(resource, client_id)`` pairs that were answered with a token."""
        return {(r.resource, r.client_id) for r in self.requests if r.token}

    @property
    def issued(self) -> list[str]:
        """The tokens handed out, in order."""
        return [r.token for r in self.requests if r.token]

    # --- tokens ------------------------------------------------------------------------------------

    def mint(self, audience: str, *, client_id: str | None = None, lifetime: int | None = None,
             issuer: str | None = None) -> tuple[str, int]:
        """A token for ``audience`` as Microsoft Entra issues it to the identity; returns it with its ``exp``.

        ``lifetime`` may be negative (an expired token); ``issuer`` replaces the tenant's STS issuer.
        """
        now = int(time.time())
        expires = now + (self.lifetime if lifetime is None else lifetime)
        identity = self.identities.get(client_id or "")
        object_id = identity.object_id if identity else (self.system_object_id or str(uuid.uuid4()))
        claims = {
            "aud": audience,
            "iss": issuer or f"https://sts.windows.net/{self.tenant_id}/",
            # Entra back-dates iat/nbf by five minutes against clock skew
            "iat": now - 300,
            "nbf": now - 300,
            "exp": expires,
            "aio": _b64url(secrets.token_bytes(12)),
            "appid": client_id or str(uuid.uuid5(uuid.NAMESPACE_URL, object_id)),
            "appidacr": "2",
            "idp": f"https://sts.windows.net/{self.tenant_id}/",
            "idtyp": "app",
            "oid": object_id,
            "rh": _b64url(secrets.token_bytes(12)),
            "sub": object_id,
            "tid": self.tenant_id,
            "uti": _b64url(secrets.token_bytes(12)),
            "ver": "1.0",
        }
        if identity is not None:
            claims["xms_mirid"] = (f"/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg/providers/"
                                   f"Microsoft.ManagedIdentity/userAssignedIdentities/{identity.name}")
        header = {"typ": "JWT", "alg": "HS256", "kid": "fake-managed-identity"}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = hmac.new(self._signing_key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(signature)}", expires

    def claims(self, token: str) -> dict[str, Any]:
        """The claims of a token this instance issued (its signature checked)."""
        signing_input, _, signature = token.rpartition(".")
        expected = hmac.new(self._signing_key, signing_input.encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64url_decode(signature)):
            raise ValueError("not a token of this endpoint")
        return json.loads(_b64url_decode(signing_input.split(".")[1]))

    # --- the endpoint ------------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        header_ok = hmac.compare_digest(handler.headers.get("X-IDENTITY-HEADER", ""), self.header)
        resource, client_id = query.get("resource", ""), query.get("client_id")
        status, body, token = self._token_response(handler.command, url.path, header_ok, query)
        with self._lock:
            self._requests.append(TokenRequest(handler.command, url.path, query.get("api-version", ""), resource,
                                               client_id, header_ok, status, token))
        payload = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _token_response(self, method: str, path: str, header_ok: bool,
                        query: Mapping[str, str]) -> tuple[int, dict[str, Any], str]:
        """(status, JSON body, token) for one request, refusing what the platform refuses."""

        def refuse(status: int, message: str) -> tuple[int, dict[str, Any], str]:
            return status, {"statusCode": status, "message": message}, ""

        if method != "GET" or path != TOKEN_PATH:
            return refuse(404, f"no such endpoint: {method} {path}")
        if not header_ok:
            return refuse(401, "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER.")
        if query.get("api-version") != API_VERSION:
            return refuse(400, f"api-version must be {API_VERSION}")
        resource = query.get("resource", "")
        if not resource:
            return refuse(400, "The resource parameter is required.")
        if set(query) & {"object_id", "mi_res_id", "principal_id"}:
            return refuse(400, "Only client_id selects a user-assigned identity here.")
        client_id = query.get("client_id")
        if client_id is not None and client_id not in self.identities:
            return refuse(400, "No User Assigned or Delegated Managed Identity found for specified ClientId.")
        if client_id is None and self.system_object_id is None:
            return refuse(400, "No system-assigned managed identity is enabled for this app.")
        token, expires = self.mint(self.audience or resource, client_id=client_id)
        body = {"access_token": token, "expires_on": str(expires), "resource": resource, "token_type": "Bearer"}
        if client_id is not None:
            body["client_id"] = client_id
        return 200, body, token


# --- the environment of an app in Azure ------------------------------------------------------------


def set_azure_environment(monkeypatch: pytest.MonkeyPatch, identity: FakeManagedIdentity,
                          client_id: str | None) -> None:
    """Set the environment as Azure Functions / Container Apps set it for an app with a managed identity.

    Variables that would point ``DefaultAzureCredential`` at another source
    (a service principal, workload identity, another MSI flavour) are removed;
    ``AZURE_CLIENT_ID`` is the user-assigned identity's client id (the app
    setting the infrastructure adds), or absent.
    """
    for name in OTHER_CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in identity.environment().items():
        monkeypatch.setenv(name, value)
    if client_id:
        monkeypatch.setenv("AZURE_CLIENT_ID", client_id)


def trust_ca(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    """Make the unchanged storage clients trust ``ca_file`` (a PEM CA bundle), sync and async, for one test.

    The sync clients (azure-core's requests transport, ``connection_verify``
    left at True) take ``REQUESTS_CA_BUNDLE``. The async ones (aiohttp) use
    an SSL context that aiohttp builds once, when it is imported
    (``aiohttp.connector._SSL_CONTEXT_VERIFIED``); ``SSL_CERT_FILE`` reaches it
    only in a process that sets it before that import, as a container does.
    In a test process aiohttp is long imported, so the context is replaced
    for the test by one that trusts the system's CAs and ``ca_file``.
    """
    import aiohttp.connector

    context = ssl.create_default_context()  # the system's CAs, as aiohttp's own
    context.load_verify_locations(cafile=str(ca_file))
    context.set_alpn_protocols(("http/1.1",))
    monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", context)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))

