"""The emulator on a background thread with its own event loop, for synchronous callers.

The functions call ARM synchronously (``azure-mgmt-appcontainers``), so a test that drives
them from the main thread needs the emulator's loop elsewhere::

    emu = start_in_thread(state_dir=tmp, provisioning_delay=0.2)
    try:
        ...  # emu.arm_endpoint, emu.ca_bundle, emu.set_faults(...), emu.stats
    finally:
        emu.close()
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from .emulator import Emulator
from .faults import Faults
from .model import AppInfo
from .volumes import Storages

T = TypeVar("T")


class EmulatorThread:
    """An :class:`Emulator` running in a daemon thread; every method is safe to call from any thread."""

    def __init__(self, **emulator_kwargs: Any) -> None:
        self._kwargs = emulator_kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aca-emulator", daemon=True)
        self.emulator: Emulator | None = None

    def start(self, timeout: float = 30.0) -> EmulatorThread:
        self._thread.start()

        async def create() -> Emulator:
            return await Emulator(**self._kwargs).start()

        try:
            self.emulator = asyncio.run_coroutine_threadsafe(create(), self._loop).result(timeout)
        except BaseException:
            self._stop_loop(timeout)
            raise
        return self

    def _stop_loop(self, timeout: float) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the emulator (ending every app process) and its thread."""
        if self.emulator is not None and self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self.emulator.stop(), self._loop).result(timeout)
            finally:
                self._stop_loop(timeout)
        self.emulator = None

    def __enter__(self) -> EmulatorThread:
        return self.start() if self.emulator is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, fn: Callable[[Emulator], T], timeout: float = 30.0) -> T:
        """Run ``fn(emulator)`` on the emulator's loop and return its result."""
        assert self.emulator is not None, "emulator not started"
        emulator = self.emulator
        if threading.current_thread() is self._thread:
            return fn(emulator)  # already on the loop: waiting for it would deadlock
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn(emulator))
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    # fixed after start: read directly
    @property
    def arm_endpoint(self) -> str:
        return self._emu.arm_endpoint

    @property
    def ca_bundle(self) -> Path:
        return self._emu.ca_bundle

    @property
    def environment_id(self) -> str:
        return self._emu.environment_id

    @property
    def environment_ids(self) -> list[str]:
        return self._emu.environment_ids

    @property
    def subscription_id(self) -> str:
        return self._emu.subscription_id

    @property
    def resource_group(self) -> str:
        return self._emu.resource_group

    @property
    def location(self) -> str:
        return self._emu.location

    @property
    def state_dir(self) -> Path:
        return self._emu.state_dir

    @property
    def files_endpoint(self) -> str:
        return self._emu.files_endpoint

    @property
    def files_stats(self) -> dict[str, Any]:
        return self.call(lambda e: e.files_stats)

    @property
    def environment_name(self) -> str:
        return self._emu.environment_name

    @property
    def storages(self) -> Storages:
        """Environment storages and their shares' directories (read them; change them through ARM)."""
        return self._emu.storages

    def info(self) -> dict[str, Any]:
        return self.call(lambda e: e.info())

    # changing state: through the loop
    @property
    def stats(self) -> dict[str, Any]:
        return self.call(lambda e: e.stats)

    @property
    def apps(self) -> dict[str, AppInfo]:
        return self.call(lambda e: e.apps)

    @property
    def environment_usage(self) -> dict[str, dict[str, Any]]:
        return self.call(lambda e: e.environment_usage)

    @property
    def faults(self) -> Faults:
        return self.call(lambda e: e.faults)

    def set_faults(self, **changes: Any) -> Faults:
        return self.call(lambda e: e.set_faults(**changes))

    def register_hub(self, host: str, upstream: str) -> None:
        self.call(lambda e: e.register_hub(host, upstream))

    def unregister_hub(self, host: str) -> None:
        self.call(lambda e: e.unregister_hub(host))

    @property
    def _emu(self) -> Emulator:
        assert self.emulator is not None, "emulator not started"
        return self.emulator


def start_in_thread(**emulator_kwargs: Any) -> EmulatorThread:
    """Start an emulator (arguments as for :class:`Emulator`) on a background thread; ``.close()`` ends it."""
    return EmulatorThread(**emulator_kwargs).start()
