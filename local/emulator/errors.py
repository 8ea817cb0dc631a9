"""ARM-shaped errors: ``{"error": {"code", "message"}}`` with the status ARM would use.

The SDK turns these into ``azure.core.exceptions.HttpResponseError`` whose ``error.code`` and
message are ARM's, so production code can branch on the same codes it meets in Azure.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class ArmError(Exception):
    """An error answered as ARM does; ``status`` is the HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            text=json.dumps(self.body()),
            content_type="application/json",
            headers=self.headers,
        )


def not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def bad_request(code: str, message: str) -> ArmError:
    return ArmError(400, code, message)
