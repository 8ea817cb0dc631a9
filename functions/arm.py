"""ARM access for the user apps: the client, its retry policy, and a small gateway over it.

In Azure the client authenticates with ``DefaultAzureCredential`` (the
functions' managed identity). With ``ACA_ARM_ENDPOINT`` set it talks to
another ARM endpoint, e.g. the local emulator, trusting ``ACA_ARM_CA_BUNDLE``
and sending ``ACA_ARM_TOKEN`` as the bearer token; nothing else changes, so
the emulator exercises the production code path.

Transient failures (429 with Retry-After, 5xx, timeouts, connection errors)
are retried by azure-core's ``RetryPolicy`` within one invocation; whatever
is still failing is classified here as :class:`TransientArmError` (the
message is redelivered) or :class:`TerminalArmError` (the server fails with
ARM's code and message).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from .settings import Settings

log = logging.getLogger(__name__)

# Retry budget inside one invocation: ARM's throttling refills in seconds, and
# Retry-After (honoured by azure-core) says how long; beyond this the host redelivers.
RETRY_TOTAL = 8
RETRY_BACKOFF_FACTOR = 1.0
RETRY_BACKOFF_MAX = 30
CONNECTION_TIMEOUT = 10
READ_TIMEOUT = 60

# 409: another operation on the app is still in progress (e.g. a delete racing a create)
TRANSIENT_STATUS = {408, 409, 429}


class ArmFailure(Exception):
    """An ARM operation that did not succeed; ``code`` and ``message`` are ARM's own."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class TransientArmError(ArmFailure):
    """Worth trying again later: throttling, server errors, timeouts."""


class TerminalArmError(ArmFailure):
    """ARM refused the request itself (invalid image, cpu/memory, quota): retrying cannot help."""


def classify(error: AzureError) -> ArmFailure:
    """The :class:`ArmFailure` an azure-core exception stands for."""
    if isinstance(error, HttpResponseError):
        odata = error.error
        code = (odata.code if odata else None) or (error.reason or "HttpResponseError")
        message = (odata.message if odata else None) or str(error.message)
        status = error.status_code
        if status is not None and (status in TRANSIENT_STATUS or status >= 500):
            return TransientArmError(code, message, status)
        return TerminalArmError(code, message, status)
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return TransientArmError(type(error).__name__, str(error.message))
    return TransientArmError(type(error).__name__, str(getattr(error, "message", error)))


class StaticTokenCredential:
    """A fixed bearer token (the emulator's); never used against Azure."""

    def __init__(self, token: str, lifetime: int = 3600):
        self._token = token
        self._lifetime = lifetime

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + self._lifetime)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, int(time.time()) + self._lifetime)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "StaticTokenCredential(***)"


def make_credential(settings: Settings) -> Any:
    if settings.arm_token:
        return StaticTokenCredential(settings.arm_token)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.client_id or None)


def make_client(
    settings: Settings,
    *,
    retry_total: int = RETRY_TOTAL,
    retry_backoff_factor: float = RETRY_BACKOFF_FACTOR,
    retry_backoff_max: int = RETRY_BACKOFF_MAX,
    retry_timeout: float = 240.0,
) -> ContainerAppsAPIClient:
    """A ``ContainerAppsAPIClient`` for the configured subscription, endpoint and retry budget."""
    retry = RetryPolicy(
        retry_total=retry_total,
        # azure-core also caps each kind of retry (status retries default to 3): lift them to the total
        retry_status=retry_total,
        retry_connect=retry_total,
        retry_read=retry_total,
        retry_backoff_factor=retry_backoff_factor,
        retry_backoff_max=retry_backoff_max,
        timeout=retry_timeout,
    )
    kwargs: dict[str, Any] = {
        "retry_policy": retry,
        "polling_interval": settings.arm_poll_interval,
        "connection_timeout": CONNECTION_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
    }
    if settings.arm_endpoint:
        kwargs["base_url"] = settings.arm_endpoint
        # the emulator has no AAD audience of its own; keep the ARM scope
        kwargs["credential_scopes"] = ["https://management.azure.com/.default"]
    if settings.arm_ca_bundle:
        kwargs["connection_verify"] = settings.arm_ca_bundle
    return ContainerAppsAPIClient(make_credential(settings), settings.subscription_id, **kwargs)


def _as_dict(model: Any) -> dict[str, Any]:
    if model is None:
        return {}
    if hasattr(model, "as_dict"):
        return model.as_dict()
    return dict(model)


def app_fqdn(app: dict[str, Any]) -> str:
    """The ingress FQDN of an app (REST-shaped dict), or ``""``."""
    ingress = (app.get("properties") or {}).get("configuration", {}).get("ingress") or {}
    return ingress.get("fqdn") or ""


def app_generation(app: dict[str, Any]) -> int | None:
    """The request generation an app was last created or updated for (its tag)."""
    from .spec import TAG_GENERATION

    try:
        return int((app.get("tags") or {}).get(TAG_GENERATION, ""))
    except ValueError:
        return None


@dataclass
class ArmApps:
    """Create, read, stop and delete the container apps of one resource group.

    Every method raises :class:`ArmFailure` subclasses only; a missing app is
    not an error where the caller wanted it gone.
    """

    client: ContainerAppsAPIClient
    resource_group: str
    polling_interval: float = 2.0

    def _wait(self, poller: Any, budget: float, what: str) -> Any:
        result = poller.result(timeout=budget)
        if not poller.done():
            raise TransientArmError("OperationTimedOut", f"{what} did not finish within {budget:.0f} s")
        return result

    def create_or_update(self, name: str, body: dict[str, Any], budget: float = 240.0) -> dict[str, Any]:
        """PUT the app and follow the long-running operation; returns the app as ARM reports it afterwards."""
        try:
            poller = self.client.container_apps.begin_create_or_update(
                self.resource_group, name, body, polling_interval=self.polling_interval
            )
            app = _as_dict(self._wait(poller, budget, f"creating container app {name}"))
            if app_fqdn(app):
                return app
            # read it back only when needed: the LRO's final body may predate the ingress FQDN,
            # and every extra GET spends ARM's read budget (25/s per principal)
            return _as_dict(self.client.container_apps.get(self.resource_group, name))
        except AzureError as e:
            raise classify(e) from e

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return _as_dict(self.client.container_apps.get(self.resource_group, name))
        except ResourceNotFoundError:
            return None
        except AzureError as e:
            raise classify(e) from e

    def delete(self, name: str, budget: float = 240.0) -> bool:
        """Delete the app; False when there was none."""
        try:
            poller = self.client.container_apps.begin_delete(
                self.resource_group, name, polling_interval=self.polling_interval
            )
            self._wait(poller, budget, f"deleting container app {name}")
            return True
        except ResourceNotFoundError:
            return False
        except AzureError as e:
            raise classify(e) from e

    def stop(self, name: str, budget: float = 240.0) -> bool:
        """Stop the app (it keeps its configuration); False when there was none."""
        try:
            poller = self.client.container_apps.begin_stop(
                self.resource_group, name, polling_interval=self.polling_interval
            )
            self._wait(poller, budget, f"stopping container app {name}")
            return True
        except ResourceNotFoundError:
            return False
        except AzureError as e:
            raise classify(e) from e

    def start(self, name: str, budget: float = 240.0) -> None:
        """Start an app that was stopped (``ACA_STOP_MODE=stop``)."""
        try:
            poller = self.client.container_apps.begin_start(
                self.resource_group, name, polling_interval=self.polling_interval
            )
            self._wait(poller, budget, f"starting container app {name}")
        except AzureError as e:
            raise classify(e) from e

    def close(self) -> None:
        self.client.close()
