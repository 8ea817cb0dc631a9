"""What ARM does behind the REST calls: apps' provisioning, their processes and ingress, as operations.

Writes are validated synchronously (errors come back as the HTTP answer), then run as an
:class:`Operation` in the background, as ARM does: after ``provisioning_delay`` the app's
containers start as processes, the operation waits until the app listens on its port (or
fails), and ``provisioningState``/``runningStatus`` follow. A delete cancels whatever
operation the app had in flight; any other write while one is in flight is answered 409.
An app lives in one of the emulator's managed environments and, once provisioned, holds
its cores there against the environment's quota (:mod:`.environments`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from ..procs import free_port
from . import identity as identities
from . import validation, volumes
from .apps import AppProcess, ImageRule, build_launch, wait_listening
from .environments import CoreAccounting, ManagedEnvironment, container_cores
from .errors import ArmError, bad_request, not_found
from .faults import Faults, Stats
from .ingress import Ingress
from .model import READ_ONLY_PROPERTIES, AppState, Operation, revision_suffix, utc_now

FAILED_STATUS = 400  # what a Location poll answers for a failed operation (terminal, not worth a retry)


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7396): objects merge, lists and scalars replace, null removes."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class Operations:
    """The container apps of one resource group, in the emulator's managed environments."""

    def __init__(
        self,
        *,
        subscription_id: str,
        resource_group: str,
        accounting: CoreAccounting,
        location: str,
        state_dir: Path,
        ingress: Ingress,
        stats: Stats,
        faults: Callable[[], Faults],
        rules: Sequence[ImageRule],
        storages: volumes.Storages,
        workload_profiles: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.accounting = accounting
        self.location = location
        self.state_dir = state_dir
        self.ingress = ingress
        self.stats = stats
        self.faults = faults
        self.rules = list(rules)
        self.storages = storages
        self.workload_profiles = [dict(p) for p in workload_profiles]
        self.apps: dict[str, AppState] = {}
        self.operations: dict[str, Operation] = {}
        # ARM serialises writes to one resource: a second PUT never sees "no app" while a first is creating it
        self._put_locks: dict[str, asyncio.Lock] = {}

    # ---- the REST verbs -------------------------------------------------------------------------

    def get(self, name: str) -> AppState:
        app = self.apps.get(name.lower())
        if app is None:
            raise not_found("Microsoft.App/containerApps", name, self.resource_group)
        return app

    async def put(self, name: str, body: dict[str, Any]) -> tuple[AppState, bool, Operation]:
        """Create or replace; returns (app, created, operation)."""
        async with self._put_locks.setdefault(name, asyncio.Lock()):
            return await self._put(name, body)

    async def _put(self, name: str, body: dict[str, Any]) -> tuple[AppState, bool, Operation]:
        validation.validate_name(name)
        validation.validate_location(body, self.location)
        props = {k: v for k, v in (body.get("properties") or {}).items() if k not in READ_ONLY_PROPERTIES}
        app = self.apps.get(name)
        secrets = self._secret_values(props, app)
        identity = identities.normalise(body.get("identity"))
        environment = self._validate(name, props, secrets, identity, app)
        if app is not None:
            self._check_idle(app)
        created = app is None
        if app is None:
            app_dir = self.state_dir / "apps" / name
            app = AppState(name=name, resource_group=self.resource_group, location=body["location"],
                           replica_dir=app_dir / "replica", log_path=app_dir / "console.log",
                           environment_id=environment.id)
            self.stats.creates += 1
        else:
            self.stats.updates += 1
        app.tags = dict(body.get("tags") or {})
        app.identity = identity
        await self._apply(app, props, secrets)
        self.apps[name] = app
        kind = "create" if created else "update"
        return app, created, self._begin(kind, app, lambda op: self._provision(app, op, restart=True))

    async def patch(self, name: str, body: dict[str, Any]) -> Operation:
        app = self.get(name)
        if body.get("location"):
            validation.validate_location(body, self.location)
        # properties merge (RFC 7396: secrets and other lists are replaced whole); tags are replaced whole, as in ARM
        merged = {"properties": merge_patch(app.spec, body.get("properties") or {})}
        merged["tags"] = body["tags"] if "tags" in body else app.tags
        props = {k: v for k, v in (merged.get("properties") or {}).items() if k not in READ_ONLY_PROPERTIES}
        secrets = self._secret_values(props, app)
        identity = identities.normalise(body["identity"]) if "identity" in body else app.identity
        self._validate(app.name, props, secrets, identity, app)
        self._check_idle(app)
        self.stats.updates += 1
        app.tags = dict(merged.get("tags") or {})
        app.identity = identity
        await self._apply(app, props, secrets)
        return self._begin("update", app, lambda op: self._provision(app, op, restart=True))

    async def delete(self, name: str) -> Operation | None:
        """None when there is nothing to delete (ARM answers 204)."""
        app = self.apps.get(name.lower())
        if app is None:
            return None
        if app.provisioning_state == "Deleting" and app.operation is not None:
            return app.operation
        self.stats.deletes += 1
        app.provisioning_state = "Deleting"
        return self._begin("delete", app, lambda op: self._delete(app))

    async def start(self, name: str) -> Operation:
        app = self.get(name)
        self._check_idle(app)
        self.stats.starts += 1
        app.stopped = False
        app.running_status = "Progressing"
        return self._begin("start", app, lambda op: self._provision(app, op, restart=False))

    async def stop(self, name: str) -> Operation:
        app = self.get(name)
        self._check_idle(app)
        self.stats.stops += 1
        app.stopped = True
        app.running_status = "Progressing"
        return self._begin("stop", app, lambda op: self._stop(app))

    async def shutdown(self) -> None:
        """Cancel every operation and end every app process (emulator stop)."""
        tasks = [t for app in self.apps.values() if (t := self._cancel(app, "shutdown")) is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=10)
            for task in pending:
                task.cancel()
        await asyncio.gather(*(self._stop_processes(app) for app in self.apps.values()), return_exceptions=True)

    def kill_all_now(self) -> None:
        for app in self.apps.values():
            for proc in app.processes:
                proc.kill_now()

    # ---- validation -----------------------------------------------------------------------------

    def _validate(self, name: str, props: dict[str, Any], secrets: dict[str, str | None],
                  identity: dict[str, Any] | None, app: AppState | None) -> ManagedEnvironment:
        """Raise the ArmError a write deserves; otherwise the environment it names."""
        env_id = props.get("managedEnvironmentId") or props.get("environmentId")
        if not env_id:
            raise bad_request("InvalidRequestContent", "The 'managedEnvironmentId' property is required.")
        environment = self.accounting.find(str(env_id))
        if environment is None:
            raise ArmError(404, "ManagedEnvironmentNotFound", f"Managed Environment '{env_id}' was not found.")
        if app is not None and environment.id.lower() != app.environment_id.lower():
            raise bad_request(
                "InvalidParameterValue",
                f"The environment of container app '{app.name}' cannot be changed from '{app.environment_id}' to "
                f"'{env_id}'. Create the app again in the new environment.",
            )
        profile = props.get("workloadProfileName")
        validation.validate_workload_profile(profile, self.workload_profiles)
        identities.check_assigned(identity, props.get("configuration") or {})
        template = props.get("template") or {}
        validation.validate_template(template, set(secrets))
        volumes.validate_volumes(template, environment.id, self.storages, name, set(secrets))
        validation.validate_resources(template.get("containers") or [],
                                      validation.profile_type(profile, self.workload_profiles))
        return environment

    @staticmethod
    def _secret_values(props: dict[str, Any], app: AppState | None) -> dict[str, str | None]:
        """Secret name → value; a secret written without a value keeps the value it had."""
        values: dict[str, str | None] = {}
        for secret in (props.get("configuration") or {}).get("secrets") or []:
            name = secret.get("name")
            if not name:
                raise bad_request("ContainerAppSecretInvalid", "A secret must have a name.")
            if "value" in secret:
                values[name] = secret["value"]
            elif app is not None and name in app.secrets:
                values[name] = app.secrets[name]
            elif secret.get("keyVaultUrl"):
                values[name] = None  # Key Vault references are not resolved locally
            else:
                raise bad_request("ContainerAppSecretInvalid", f"Secret '{name}' must have a value or a keyVaultUrl.")
        return values

    def _check_idle(self, app: AppState) -> None:
        busy = app.operation is not None and not app.operation.done
        if app.provisioning_state == "Deleting" or (busy and self.faults().reject_concurrent_operations):
            raise ArmError(
                409,
                "ContainerAppOperationInProgress",
                f"Cannot modify a container app '{app.name}' because there is a pending operation on the resource. "
                "Please try again later.",
            )

    # ---- state changes --------------------------------------------------------------------------

    async def _apply(self, app: AppState, props: dict[str, Any], secrets: dict[str, str | None]) -> None:
        """Store the written spec (secret values kept aside), start a new revision, sync the ingress port."""
        config = props.get("configuration") or {}
        if config.get("secrets"):
            config["secrets"] = [{k: v for k, v in s.items() if k != "value"} for s in config["secrets"]]
        template_changed = props.get("template") != app.spec.get("template")
        app.spec = props
        app.secrets = secrets
        app.modified_at = utc_now()
        if template_changed or app.revision is None:
            suffix = (props.get("template") or {}).get("revisionSuffix") or revision_suffix()
            app.revision = f"{app.name}--{suffix}"
        app.provisioning_state = "InProgress"
        if not app.stopped:
            app.running_status = "Progressing"
        await self._sync_ingress(app)

    async def _sync_ingress(self, app: AppState) -> None:
        if app.ingress and app.ingress_port is None:
            app.ingress_port = await self.ingress.open_port()
            self.ingress.route(app.fqdn or "", lambda: self._upstream(app))
        elif not app.ingress and app.ingress_port is not None:
            await self._close_ingress(app)

    async def _close_ingress(self, app: AppState) -> None:
        if app.ingress_port is not None:
            self.ingress.unroute(f"127.0.0.1:{app.ingress_port}")
            await self.ingress.close_port(app.ingress_port)
            app.ingress_port = None

    @staticmethod
    def _upstream(app: AppState) -> str | None:
        if app.stopped or app.container_port is None or app.provisioning_state == "Deleting":
            return None
        return f"http://127.0.0.1:{app.container_port}"

    def _begin(self, kind: str, app: AppState, work: Callable[[Operation], Awaitable[ArmError | None]]) -> Operation:
        """Start ``work`` as the app's operation; one still in flight (a delete's, or when concurrent
        operations are allowed) is canceled and runs out before ``work`` starts."""
        previous = self._cancel(app, f"a newer {kind} operation")
        op = Operation(kind=kind, app_name=app.name)
        self.operations[op.id] = op
        app.operation = op
        op.task = asyncio.create_task(self._run(op, work, previous))
        return op

    async def _run(
        self, op: Operation, work: Callable[[Operation], Awaitable[ArmError | None]], previous: asyncio.Task | None
    ) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous], timeout=30)  # it stops at its next checkpoint
            if await op.pause(self.faults().delay_of(op.kind)):
                return
            error = await work(op)
        except Exception as exc:  # an emulator bug must still end the operation
            error = ArmError(500, "InternalServerError", f"{type(exc).__name__}: {exc}")
        if op.done:
            return  # canceled meanwhile; whoever canceled it owns the app now
        op.finish(error)
        if error is None:
            self.stats.operations_succeeded += 1
        else:
            self.stats.operations_failed += 1

    def _cancel(self, app: AppState, reason: str) -> asyncio.Task | None:
        """Mark the app's in-flight operation Canceled and ask it to stop at its next checkpoint."""
        op = app.operation
        if op is None or op.done:
            return None
        op.finish(ArmError(409, "OperationCanceled", f"The operation on '{app.name}' was canceled by {reason}."),
                  status="Canceled")
        op.cancel_requested.set()
        return op.task

    def _fail(self, app: AppState, code: str, message: str) -> ArmError:
        self.accounting.release(app.name)  # a failed revision runs no replica
        app.provisioning_state = "Failed"
        # "Failed" is no ContainerAppRunningStatus; ARM's listing shows a failed app without one
        app.running_status = None
        return ArmError(FAILED_STATUS, code, message)

    async def _provision(self, app: AppState, op: Operation, restart: bool) -> ArmError | None:
        faults = self.faults()
        if faults.create_fails(app.images):
            await self._stop_processes(app)
            bad = next((i for i in app.images if faults.create_fails([i])), app.images[0])
            message = faults.fail_message or (
                f"Failed to provision revision for container app '{app.name}'. Error details: The following field(s) "
                f"are either invalid or missing. Field 'template.containers.image' is invalid with details: "
                f"'Invalid value: \"{bad}\": GET {bad}: MANIFEST_UNKNOWN: manifest unknown';."
            )
            return self._fail(app, faults.fail_code, message)
        if app.stopped:
            self.accounting.release(app.name)
            await self._stop_processes(app)
            app.provisioning_state, app.running_status = "Succeeded", "Stopped"
            return None
        if restart or not any(p.running for p in app.processes):
            # the replica needs its cores first (no await in between: one check per app at a time)
            refused = self.accounting.admit(app.name, app.environment_id,
                                            container_cores(app.spec.get("template") or {}))
            if refused is not None:
                self.stats.quota_refusals += 1
                await self._stop_processes(app)
                return self._fail(app, refused.code, refused.message)
            try:
                await self._start_processes(app, op, faults.startup_timeout)
            except Exception as exc:
                if op.canceled:
                    return None
                await self._stop_processes(app)
                return self._fail(
                    app,
                    "ContainerAppOperationError",
                    f"Failed to provision revision for container app '{app.name}'. Error details: {exc}",
                )
        if op.canceled:
            return None
        app.provisioning_state, app.running_status = "Succeeded", "Running"
        app.ready_revision = app.revision
        return None

    async def _start_processes(self, app: AppState, op: Operation, startup_timeout: float) -> None:
        await self._stop_processes(app)
        target = app.target_port
        app.container_port = free_port() if app.ingress else None
        template = app.spec.get("template") or {}
        containers = template.get("containers") or []
        app.replica_dir.mkdir(parents=True, exist_ok=True)  # a new replica: nothing of the last one is left
        for index, container in enumerate(containers):
            if op.canceled:
                return
            mounts = volumes.resolve_mounts(container, template, app.environment_id, self.storages, app.replica_dir,
                                            app.secrets)
            home = app.replica_dir / "containers" / str(container.get("name") or index) / "home"
            launch = build_launch(container, app.secrets, self.rules, home, target, app.container_port,
                                  mounts=mounts)
            log_path = app.log_path if index == 0 else app.log_path.with_name(f"console-{container.get('name')}.log")
            proc = AppProcess(launch, log_path, on_exit=lambda code, a=app: self._exited(a, code))
            app.processes.append(proc)
            await proc.start()
            self.stats.processes_started += 1
        if app.container_port is not None:
            await wait_listening(app.container_port, startup_timeout, app.processes, op.cancel_requested)

    def _exited(self, app: AppState, code: int) -> None:
        # a crashed container leaves the app "Running" (ACA restarts replicas; the revision, not the
        # app, shows the failure); the exit code stays visible in AppInfo.exit_code
        self.stats.processes_exited += 1

    async def _stop_processes(self, app: AppState) -> None:
        """End the replica: its processes, and with them its own files (a container's file system, EmptyDirs)."""
        procs, app.processes = app.processes, []
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        shutil.rmtree(app.replica_dir, ignore_errors=True)

    async def _stop(self, app: AppState) -> ArmError | None:
        self.accounting.release(app.name)
        await self._stop_processes(app)
        app.running_status = "Stopped"
        return None

    async def _delete(self, app: AppState) -> ArmError | None:
        await self._stop_processes(app)
        self.accounting.release(app.name)  # its replica is gone
        await self._close_ingress(app)
        with contextlib.suppress(KeyError):
            del self.apps[app.name]
        return None
