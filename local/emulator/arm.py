"""The ARM REST surface: the ``Microsoft.App`` subset that the functions use, at ARM's real paths.

Served (the ``api-version`` values of :mod:`.apiversions`, paths case-insensitive as in ARM):

* ``GET  /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.App/managedEnvironments/{env}``
* ``PUT|GET|DELETE .../managedEnvironments/{env}/storages/{name}`` and ``GET .../storages``
  (Azure Files storages, :mod:`.volumes`)
* ``PUT|PATCH|GET|DELETE .../providers/Microsoft.App/containerApps/{name}``
* ``GET  .../resourceGroups/{rg}/providers/Microsoft.App/containerApps`` and
  ``GET /subscriptions/{s}/providers/Microsoft.App/containerApps`` (paged with ``nextLink``)
* ``POST .../containerApps/{name}/start``, ``/stop``, ``/listSecrets``
* the operation resources the LRO headers point at:
  ``.../locations/{loc}/containerappOperationStatuses/{id}`` (``Azure-AsyncOperation``, after PUT)
  and ``.../locations/{loc}/containerappOperationResults/{id}`` (``Location``, after PATCH,
  DELETE, start, stop)

Every ARM request passes, in order: bearer-token check (401), ``api-version`` check,
throttling (429 + ``Retry-After``), injected 5xx, subscription/resource-group check.
Not ARM: ``GET /_emulator/stats``, ``GET /_emulator/apps``, ``GET /_emulator/environments`` (cores per
environment), ``POST /_emulator/faults`` and
``POST /_emulator/hubs`` (no auth, no throttling) for scripts and benchmarks.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from .apiversions import check_api_version
from .environments import ManagedEnvironment
from .errors import ArmError, bad_request, not_found
from .faults import ErrorInjector, Faults, Stats, Throttle
from .model import AppInfo, Operation
from .operations import Operations
from .volumes import Storages


class ArmBackend(Protocol):
    """What the ARM surface needs of the emulator (:class:`~local.emulator.emulator.Emulator` is one)."""

    subscription_id: str
    resource_group: str
    location: str
    api_versions: tuple[str, ...]
    environments: list[ManagedEnvironment]
    storages: Storages
    _stats: Stats
    _throttle: Throttle
    _errors: ErrorInjector
    _operations: Operations | None

    @property
    def faults(self) -> Faults: ...

    @property
    def stats(self) -> dict[str, Any]: ...

    @property
    def apps(self) -> dict[str, AppInfo]: ...

    @property
    def environment_usage(self) -> dict[str, dict[str, Any]]: ...

    @property
    def ingress_hosts(self) -> list[str]: ...

    def set_faults(self, **changes: Any) -> Faults: ...

    def register_hub(self, host: str, upstream: str) -> None: ...

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourcegroups/(?P<rg>[^/]+)"
_APP = r"/providers/microsoft\.app"
_OPS = _SUB + _APP + r"/locations/(?P<loc>[^/]+)"
_STORAGES = r"/managedenvironments/(?P<env>[^/]+)/storages"
# the object id ARM names in an AuthorizationFailed (the emulator has no real principals)
EMULATOR_PRINCIPAL = "00000000-0000-0000-0000-00000000e1e1"
_ERROR_CODES = {500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)


class ArmApi:
    """aiohttp handlers for the ARM subset, backed by the emulator (an :class:`ArmBackend`)."""

    def __init__(self, emulator: ArmBackend, request_log: Path | None = None) -> None:
        self.emu = emulator
        # one line per ARM request: when, method, path, status, the caller's x-ms-client-request-id (never a body
        # or a header value besides that id: bodies hold secrets)
        self._request_log = open(request_log, "a", buffering=1, encoding="utf-8") if request_log else None  # noqa: SIM115
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", _RG + _APP + r"/managedenvironments/(?P<env>[^/]+)", self.get_environment),
            ("GET", _RG + _APP + _STORAGES, self.list_storages),
            ("GET", _RG + _APP + _STORAGES + r"/(?P<storage>[^/]+)", self.get_storage),
            ("PUT", _RG + _APP + _STORAGES + r"/(?P<storage>[^/]+)", self.put_storage),
            ("DELETE", _RG + _APP + _STORAGES + r"/(?P<storage>[^/]+)", self.delete_storage),
            ("GET", _RG + _APP + r"/containerapps", self.list_apps),
            ("GET", _SUB + _APP + r"/containerapps", self.list_apps),
            ("GET", _RG + _APP + r"/containerapps/(?P<name>[^/]+)", self.get_app),
            ("PUT", _RG + _APP + r"/containerapps/(?P<name>[^/]+)", self.put_app),
            ("PATCH", _RG + _APP + r"/containerapps/(?P<name>[^/]+)", self.patch_app),
            ("DELETE", _RG + _APP + r"/containerapps/(?P<name>[^/]+)", self.delete_app),
            ("POST", _RG + _APP + r"/containerapps/(?P<name>[^/]+)/(?P<action>start|stop)", self.start_stop),
            ("POST", _RG + _APP + r"/containerapps/(?P<name>[^/]+)/listsecrets", self.list_secrets),
            ("GET", _OPS + r"/containerappoperationstatuses/(?P<op>[^/]+)", self.operation_status),
            ("GET", _OPS + r"/containerappoperationresults/(?P<op>[^/]+)", self.operation_result),
        ]
        self.routes = [(m, re.compile(p + r"/?$", re.IGNORECASE), h) for m, p, h in self.routes]

    def application(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get("/_emulator/stats", self.emulator_stats)
        app.router.add_get("/_emulator/apps", self.emulator_apps)
        app.router.add_get("/_emulator/environments", self.emulator_environments)
        app.router.add_post("/_emulator/faults", self.emulator_faults)
        app.router.add_post("/_emulator/hubs", self.emulator_hubs)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    # ---- the pipeline every ARM request passes --------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        emu = self.emu
        emu._stats.requests += 1
        emu._stats.requests_by_method[request.method] += 1
        kind = emu._throttle.kind(request.method)
        headers = {
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-correlation-request-id": request.headers.get("x-ms-client-request-id", str(uuid.uuid4())),
        }
        try:
            self._authenticate(request)
            if "api-version" not in request.query:
                raise bad_request(
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            check_api_version(request.query["api-version"], emu.api_versions, emu.location, request.path)
            kind, retry_after = emu._throttle.take(request.method)
            if retry_after is not None:
                emu._stats.throttled += 1
                raise ArmError(
                    429,
                    "SubscriptionRequestsThrottled",
                    f"Number of '{kind}' requests for subscription '{emu.subscription_id}' actor 'emulator' exceeded. "
                    f"Please try again after '{retry_after}' seconds after additional tokens are available. "
                    "Refer to https://aka.ms/arm-throttling for additional information.",
                    {"Retry-After": str(retry_after)},
                )
            faults = emu.faults
            if emu._errors.hit(faults.error_rate):
                emu._stats.injected_errors += 1
                code = _ERROR_CODES.get(faults.error_status, "InternalServerError")
                raise ArmError(faults.error_status, code, "Encountered internal server error (injected by the emulator).")
            response = await self._route(request)
        except ArmError as err:
            response = err.response()
        response.headers.update(headers)
        response.headers[f"x-ms-ratelimit-remaining-subscription-{kind}s"] = str(emu._throttle.remaining(kind))
        self._log_request(request, response.status)
        return response

    def _log_request(self, request: web.Request, status: int) -> None:
        if self._request_log is None:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        client_id = request.headers.get("x-ms-client-request-id", "-")
        # escaped: a path or header is the caller's text, and must not forge lines of this log
        line = " ".join([stamp, request.method, json.dumps(request.path)[1:-1], str(status),
                         f"client-request-id={json.dumps(client_id[:200])[1:-1]}"])
        self._request_log.write(line + "\n")

    def close(self) -> None:
        if self._request_log is not None:
            self._request_log.close()
            self._request_log = None

    def _authenticate(self, request: web.Request) -> None:
        challenge = {
            "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", '
            'error="invalid_token", error_description="The authentication failed."'
        }
        auth = request.headers.get("Authorization")
        if auth is None:
            self.emu._stats.auth_failures += 1
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.",
                           challenge)
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.emu._stats.auth_failures += 1
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.", challenge)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        for method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match and method == request.method:
                params = match.groupdict()
                self._check_scope(params)
                return await handler(request, params)
        raise ArmError(404, "InvalidResourceType", f"The resource type could not be found for '{request.method} {path}'.")

    def _check_scope(self, params: dict[str, str]) -> None:
        emu = self.emu
        if params["sub"].lower() != emu.subscription_id.lower():
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{params['sub']}' could not be found.")
        if "rg" in params and params["rg"].lower() != emu.resource_group.lower():
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{params['rg']}' could not be found.")

    # ---- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def _op_url(self, request: web.Request, op: Operation, kind: str) -> str:
        emu = self.emu
        location = emu.location.lower().replace(" ", "")
        version = request.query.get("api-version", "")
        url = (
            f"{self._base(request)}/subscriptions/{emu.subscription_id}/providers/Microsoft.App/locations/{location}/"
            f"containerappOperation{kind}/{op.id}?api-version={version}"
        )
        return url + ("&azureAsyncOperation=true" if kind == "Statuses" else "")

    def _retry_after(self) -> dict[str, str]:
        value = self.emu.faults.retry_after
        return {} if value is None else {"Retry-After": str(value)}

    def _accepted(self, request: web.Request, op: Operation) -> web.Response:
        headers = {"Location": self._op_url(request, op, "Results"), **self._retry_after()}
        return web.Response(status=202, headers=headers)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise bad_request("InvalidRequestContent", "The request content was invalid and could not be deserialized.")
        return body

    def _resource(self, name: str) -> dict[str, Any]:
        return self.emu._operations.get(name).resource(self.emu.subscription_id)

    # ---- ARM handlers ---------------------------------------------------------------------------

    async def get_environment(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return _json(self._environment(params["env"]).resource())

    def _environment(self, name: str) -> Any:
        emu = self.emu
        environment = next((e for e in emu.environments if e.name.lower() == name.lower()), None)
        if environment is None:
            raise not_found("Microsoft.App/managedEnvironments", name, emu.resource_group)
        return environment

    async def list_storages(self, request: web.Request, params: dict[str, str]) -> web.Response:
        environment = self._environment(params["env"])
        return _json({"value": [s.resource() for s in self.emu.storages.list(environment.id)]})

    async def get_storage(self, request: web.Request, params: dict[str, str]) -> web.Response:
        environment = self._environment(params["env"])
        storage = self.emu.storages.get(environment.id, params["storage"])
        if storage is None:
            raise not_found(f"Microsoft.App/managedEnvironments/{environment.name}/storages", params["storage"],
                            self.emu.resource_group)
        return _json(storage.resource())

    async def put_storage(self, request: web.Request, params: dict[str, str]) -> web.Response:
        environment = self._environment(params["env"])
        storage, created = self.emu.storages.put(environment.id, params["storage"], await self._body(request))
        return _json(storage.resource(), 201 if created else 200)

    async def delete_storage(self, request: web.Request, params: dict[str, str]) -> web.Response:
        environment = self._environment(params["env"])
        deleted = self.emu.storages.delete(environment.id, params["storage"])
        return web.Response(status=200 if deleted else 204)

    async def list_apps(self, request: web.Request, params: dict[str, str]) -> web.Response:
        emu = self.emu
        apps = sorted(emu._operations.apps.values(), key=lambda a: a.name)
        try:
            offset = max(0, int(request.query.get("$skiptoken", "0")))
        except ValueError:
            raise bad_request("InvalidSkipToken", "The $skiptoken is invalid.") from None
        size = max(1, emu.faults.list_page_size)
        page = apps[offset : offset + size]
        body: dict[str, Any] = {"value": [a.resource(emu.subscription_id) for a in page]}
        if offset + size < len(apps):
            version = request.query.get("api-version", "")
            body["nextLink"] = f"{self._base(request)}{request.path}?api-version={version}&$skiptoken={offset + size}"
        return _json(body)

    async def get_app(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return _json(self._resource(params["name"]))

    async def put_app(self, request: web.Request, params: dict[str, str]) -> web.Response:
        body = await self._body(request)
        app, created, op = await self.emu._operations.put(params["name"], body)
        headers = {"Azure-AsyncOperation": self._op_url(request, op, "Statuses"), **self._retry_after()}
        return _json(app.resource(self.emu.subscription_id), 201 if created else 200, headers)

    async def patch_app(self, request: web.Request, params: dict[str, str]) -> web.Response:
        body = await self._body(request)
        return self._accepted(request, await self.emu._operations.patch(params["name"], body))

    async def delete_app(self, request: web.Request, params: dict[str, str]) -> web.Response:
        op = await self.emu._operations.delete(params["name"])
        return web.Response(status=204) if op is None else self._accepted(request, op)

    async def start_stop(self, request: web.Request, params: dict[str, str]) -> web.Response:
        operations = self.emu._operations
        action = operations.start if params["action"].lower() == "start" else operations.stop
        return self._accepted(request, await action(params["name"]))

    async def list_secrets(self, request: web.Request, params: dict[str, str]) -> web.Response:
        app = self.emu._operations.get(params["name"])
        return _json({"value": [{"name": k, "value": v} for k, v in app.secrets.items()]})

    def _operation(self, op_id: str) -> Operation:
        emu = self.emu
        if emu.faults.refuse_operation_reads:
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{EMULATOR_PRINCIPAL}' with object id '{EMULATOR_PRINCIPAL}' does not have authorization "
                "to perform action 'Microsoft.App/locations/containerappOperationStatuses/read' over scope "
                f"'/subscriptions/{emu.subscription_id}/providers/Microsoft.App/locations/"
                f"{emu.location.lower().replace(' ', '')}/containerappOperationStatuses/{op_id}' or the scope is "
                "invalid. If access was recently granted, please refresh your credentials.",
            )
        op = emu._operations.operations.get(op_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' could not be found.")
        return op

    async def operation_status(self, request: web.Request, params: dict[str, str]) -> web.Response:
        op = self._operation(params["op"])
        return _json(op.status_body(request.path), headers=self._retry_after() if not op.done else None)

    async def operation_result(self, request: web.Request, params: dict[str, str]) -> web.Response:
        op = self._operation(params["op"])
        if not op.done:
            return self._accepted(request, op)
        if op.error is not None:
            return op.error.response()
        if op.kind == "delete" or op.app_name not in self.emu._operations.apps:
            return web.Response(status=204)
        return _json(self._resource(op.app_name))

    # ---- emulator-only endpoints ----------------------------------------------------------------

    async def emulator_stats(self, request: web.Request) -> web.Response:
        return _json(self.emu.stats)

    async def emulator_apps(self, request: web.Request) -> web.Response:
        apps = {name: dataclasses.asdict(info) for name, info in self.emu.apps.items()}
        return web.Response(text=json.dumps(apps, default=str), content_type="application/json")

    async def emulator_environments(self, request: web.Request) -> web.Response:
        return _json(self.emu.environment_usage)

    async def emulator_faults(self, request: web.Request) -> web.Response:
        try:
            faults = self.emu.set_faults(**await request.json())
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, status=400)
        return _json(dataclasses.asdict(faults))

    async def emulator_hubs(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.emu.register_hub(body["host"], body["upstream"])
        return _json({"hosts": self.emu.ingress_hosts})
