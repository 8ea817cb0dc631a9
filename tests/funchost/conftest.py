"""Fixtures for the functions dev host tests: small function apps written to tmp_path."""

from __future__ import annotations

import itertools
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

# host.json for fast tests: short polling and visibility, few retries.


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., Path]:
    """Write a function app (and optionally its host.json) to a fresh folder; returns the app file."""
    counter = itertools.count()

    def write(source: str, host_json: dict[str, Any] | None = None) -> Path:
        root = tmp_path / f"app{next(counter)}"
        root.mkdir()
        (root / "function_app.py").write_text(textwrap.dedent(source))
        if host_json is not None:
            (root / "host.json").write_text(json.dumps(host_json))
        return root / "function_app.py"

    return write


@pytest.fixture
def raw_queue(storage_connection_string: str) -> Callable[[str], QueueClient]:
    """A raw-text (no base64 policy) client for a queue, created if missing."""
    clients: list[QueueClient] = []

    def make(name: str) -> QueueClient:
        client = QueueClient.from_connection_string(storage_connection_string, name)
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


