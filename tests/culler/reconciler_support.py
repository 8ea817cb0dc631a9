"""Helpers shared by the reconciler's tests."""

from __future__ import annotations

from acaspawner.sealing import generate_key
from functions.storage import FunctionStorage

HUB = "hub-a"


def reconciler_settings(emulator, store: FunctionStorage, *, sealing: bool = True, **extra: str) -> dict[str, str]:
    """The reconciler's app settings against ``emulator`` and ``store`` (``sealing=False``: no ACA_SEALING_KEYS)."""
    settings = {
        "AcaStorage": store.config.connection_string,
        "ACA_LIFECYCLE_QUEUE": store.config.queue_name,
        "ACA_STATUS_TABLE": store.config.table_name,
        "ACA_HUB_ID": HUB,
        "ACA_SUBSCRIPTION_ID": emulator.subscription_id,
        "ACA_RESOURCE_GROUP": emulator.resource_group,
        "ACA_ENVIRONMENT_ID": emulator.environment_id,
        "ACA_LOCATION": emulator.location,
        "ACA_ALLOWED_IMAGES": "*",
        "ACA_ARM_ENDPOINT": emulator.arm_endpoint,
        "ACA_ARM_CA_BUNDLE": str(emulator.ca_bundle),
        "ACA_ARM_TOKEN": "emulator-token",
    }
    if sealing:
        settings["ACA_SEALING_KEYS"] = generate_key()
    return {**settings, **extra}
