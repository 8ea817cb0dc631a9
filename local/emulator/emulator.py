"""The emulator as one object: ARM over HTTPS, the environment's ingress, apps as processes.

Use it in an event loop::

    async with Emulator(state_dir=tmp) as emu:
        emu.register_hub("127.0.0.1:8000", "http://127.0.0.1:8000")
        client = ContainerAppsAPIClient(cred, emu.subscription_id, base_url=emu.arm_endpoint,
                                        connection_verify=str(emu.ca_bundle))

or from synchronous code through :func:`local.emulator.start_in_thread`.
"""

from __future__ import annotations

import atexit
import socket
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from .apiversions import SUPPORTED_API_VERSIONS
from .apps import ImageRule, image_rules
from .arm import ArmApi
from .certs import server_ssl_context
from .environments import CoreAccounting, ManagedEnvironment
from .faults import ErrorInjector, Faults, Stats, Throttle
from .files import FileService
from .ingress import Ingress
from .model import AppInfo
from .operations import Operations
from .volumes import Storages

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEFAULT_RESOURCE_GROUP = "rg-aca-emulator"
DEFAULT_ENVIRONMENT = "cae-emulator"
DEFAULT_LOCATION = "westeurope"
# every environment with workload profiles has the Consumption one; add dedicated ones with workload_profiles=
CONSUMPTION_PROFILE = {"name": "Consumption", "workloadProfileType": "Consumption"}


def _kill_at_exit(ref: weakref.ReferenceType[Emulator]) -> None:
    emulator = ref()
    if emulator is not None and emulator._operations is not None:
        emulator._operations.kill_all_now()


class Emulator:
    """ACA managed environments and the ARM endpoint that manages them, on 127.0.0.1.

    Fault and pacing settings (see :class:`~local.emulator.faults.Faults`) are given as ``faults``
    and/or as keyword arguments, and changed later with :meth:`set_faults`. ``workload_profiles``
    lists the environment's profiles besides Consumption (``{"name", "workloadProfileType"}``, e.g.
    ``{"name": "gpu", "workloadProfileType": "NC24-A100"}``); ``api_versions`` replaces the
    accepted ``api-version`` values (:data:`~local.emulator.apiversions.SUPPORTED_API_VERSIONS`).
    ``environment`` names the default environment; ``more_environments`` adds others (each its own
    id and default domain, same region and profiles); ``internal_environments`` names those ARM
    reports as internal (``vnetConfiguration.internal``); ``core_quota`` (a fault setting) caps the
    cores of each (see :mod:`.environments`).
    """

    def __init__(
        self,
        *,
        state_dir: str | Path | None = None,
        subscription_id: str = DEFAULT_SUBSCRIPTION,
        resource_group: str = DEFAULT_RESOURCE_GROUP,
        environment: str = DEFAULT_ENVIRONMENT,
        location: str = DEFAULT_LOCATION,
        host: str = "127.0.0.1",
        arm_port: int = 0,
        image_map: Mapping[str, str | Sequence[str]] | Iterable[ImageRule] | None = None,
        hubs: Mapping[str, str] | None = None,
        workload_profiles: Iterable[Mapping[str, Any]] = (),
        more_environments: Iterable[str] = (),
        internal_environments: Iterable[str] = (),
        api_versions: Iterable[str] = SUPPORTED_API_VERSIONS,
        faults: Faults | None = None,
        **fault_settings: Any,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="aca-emulator-"))
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.environment_name = environment
        self.location = location
        self.host = host
        self._arm_port = arm_port
        self._faults = (faults or Faults()).updated(**fault_settings)
        self._rules = image_rules(image_map)
        self._hubs = dict(hubs or {})
        extra = [dict(p) for p in workload_profiles if str(p.get("name", "")).lower() != "consumption"]
        self.workload_profiles: list[dict[str, Any]] = [dict(CONSUMPTION_PROFILE), *extra]
        names = [environment, *(n for n in more_environments if n.lower() != environment.lower())]
        inside = {n.lower() for n in internal_environments}
        self.environments = [ManagedEnvironment(n, subscription_id, resource_group, location, self.workload_profiles,
                                                host, internal=n.lower() in inside) for n in dict.fromkeys(names)]
        self.default_domain = self.environments[0].default_domain
        self._accounting = CoreAccounting(self.environments, lambda: self._faults.core_quota)
        self.api_versions: tuple[str, ...] = tuple(api_versions)
        self._stats = Stats()
        self._throttle = Throttle(self._faults)
        self._errors = ErrorInjector(self._faults.error_seed)
        self._ingress = Ingress(self._stats, lambda: self._faults.header_limit, host=host)
        self.storages = Storages(self.state_dir / "files")  # environment storages; their shares' directories
        # the Azure Files data plane over those same directories (what the functions make, apps mount)
        self._files = FileService(self.storages.files_root, host, state_dir=self.state_dir)
        self._operations: Operations | None = None
        self._runner: web.AppRunner | None = None
        self._arm_api: ArmApi | None = None
        self._ca_bundle: Path | None = None

    # ---- life -----------------------------------------------------------------------------------

    async def start(self) -> Emulator:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        atexit.register(_kill_at_exit, weakref.ref(self))  # app processes must not outlive a crashed test run
        return self

    async def _start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ssl_context, self._ca_bundle = server_ssl_context(self.state_dir, self.host, "localhost", "127.0.0.1")
        await self._ingress.start()
        await self._files.start()
        for hub_host, upstream in self._hubs.items():
            self._ingress.register_hub(hub_host, upstream)
        self._operations = Operations(
            subscription_id=self.subscription_id,
            resource_group=self.resource_group,
            accounting=self._accounting,
            location=self.location,
            state_dir=self.state_dir,
            ingress=self._ingress,
            stats=self._stats,
            faults=lambda: self._faults,
            rules=self._rules,
            storages=self.storages,
            workload_profiles=self.workload_profiles,
        )
        self._arm_api = ArmApi(self, request_log=self.request_log)
        self._runner = web.AppRunner(self._arm_api.application(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._arm_port))
        self._arm_port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=ssl_context).start()

    async def stop(self) -> None:
        """Stop serving and end every app process (and its children)."""
        if self._operations is not None:
            await self._operations.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._arm_api is not None:
            self._arm_api.close()
        await self._ingress.stop()
        await self._files.stop()

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- what clients need ----------------------------------------------------------------------

    @property
    def arm_endpoint(self) -> str:
        """``https://127.0.0.1:<port>``: the SDK's ``base_url``."""
        return f"https://{self.host}:{self._arm_port}"

    @property
    def files_endpoint(self) -> str:
        """``https://127.0.0.1:<port>``: the Azure Files data plane; an account's URL is ``<endpoint>/<account>``."""
        return self._files.endpoint

    @property
    def files_stats(self) -> dict[str, Any]:
        """The Files data plane's counters (requests per operation, the last ones)."""
        return self._files.stats

    @property
    def ca_bundle(self) -> Path:
        """PEM file of the test CA: the SDK's ``connection_verify`` (or ``REQUESTS_CA_BUNDLE``)."""
        assert self._ca_bundle is not None, "emulator not started"
        return self._ca_bundle

    @property
    def environment_id(self) -> str:
        """The default environment's resource id."""
        return self.environments[0].id

    @property
    def environment_ids(self) -> list[str]:
        """Every environment's resource id, the default first."""
        return [e.id for e in self.environments]

    @property
    def environment_usage(self) -> dict[str, dict[str, Any]]:
        """Per environment name: id, default domain, core quota, cores in use (and the most ever), apps holding
        cores, quota refusals: the emulator's own accounting."""
        return self._accounting.report()

    @property
    def request_log(self) -> Path:
        """The ARM request log: a line per request, with the caller's ``x-ms-client-request-id``."""
        return self.state_dir / "arm-requests.log"

    def info(self) -> dict[str, Any]:
        """What a script needs to talk to the emulator (printed as a JSON line by the command)."""
        return {
            "arm_endpoint": self.arm_endpoint,
            "ca_bundle": str(self.ca_bundle),
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "environment_id": self.environment_id,
            "environment_name": self.environment_name,
            "location": self.location,
            "default_domain": self.default_domain,
            "workload_profiles": [p["name"] for p in self.workload_profiles],
            "environments": [{"name": e.name, "id": e.id, "default_domain": e.default_domain}
                             for e in self.environments],
            "state_dir": str(self.state_dir),
            "arm_request_log": str(self.request_log),
            "stats_url": f"{self.arm_endpoint}/_emulator/stats",
            "files_endpoint": self.files_endpoint,
            "hubs": dict(self._hubs),
        }

    def environment_resource(self) -> dict[str, Any]:
        """The default managed environment as ARM returns it."""
        return self.environments[0].resource()

    # ---- state and knobs ------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: requests (total and by method), throttled (429s), injected_errors (5xx), creates, ..."""
        return self._stats.snapshot()

    @property
    def apps(self) -> dict[str, AppInfo]:
        """Snapshots of the container apps by name (provisioning state, ports, pid, log path, ...)."""
        operations = self._operations
        return {name: app.info() for name, app in operations.apps.items()} if operations else {}

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, **changes: Any) -> Faults:
        """Change fault/pacing settings on the running emulator; bucket changes refill the buckets."""
        self._faults = self._faults.updated(**changes)
        if any(k.endswith(("_bucket", "_refill")) or k == "throttle" for k in changes):
            self._throttle.configure(self._faults)
        if "error_seed" in changes:
            self._errors.reseed(self._faults.error_seed)
        return replace(self._faults)

    def register_hub(self, host: str, upstream: str) -> None:
        """Route requests whose ``Host`` is ``host`` (e.g. ``127.0.0.1:8000``) to ``upstream`` on every ingress port."""
        self._hubs[host] = upstream
        self._ingress.register_hub(host, upstream)

    def unregister_hub(self, host: str) -> None:
        self._hubs.pop(host, None)
        self._ingress.unroute(host)

    @property
    def ingress_hosts(self) -> list[str]:
        return self._ingress.hosts()
