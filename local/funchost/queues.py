"""Queue triggers driven from Azure Storage (Azurite) with the Functions host's semantics.

- Polling: after an empty receive the listener waits 100 ms, doubling up to ``maxPollingInterval``;
  after finding messages it polls again at once. A new batch is fetched when the number of
  messages in flight drops to ``newBatchThreshold``; a batch's messages run concurrently.
- Leasing: messages are received invisible for 10 minutes, renewed halfway while a function runs.
- Bodies: ``messageEncoding`` ``base64`` (default) decodes the stored text; a body that is not
  valid base64 goes to the poison queue at once, without invoking the function. ``none`` hands
  the stored text over as UTF-8 bytes.
- Outcome: success deletes the message. A failure makes it visible again after
  ``visibilityTimeout``; a failure at ``DequeueCount >= maxDequeueCount`` (or a message that
  arrives already above it) moves the original stored body to ``<queue>-poison``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StoredMessage

from acaspawner import wire

from .hostjson import QueueOptions
from .invoke import FunctionStats, Invoker
from .loader import QueueFunction

log = logging.getLogger("local.funchost")

T = TypeVar("T")

LEASE_SECONDS = 600  # the host's visibility timeout while a message is being processed
MIN_POLL_SECONDS = 0.1


class MessageDecodeError(ValueError):
    """A stored body that the configured ``messageEncoding`` cannot decode."""


def decode_body(content: str | None, encoding: str) -> bytes:
    """The bytes a function receives for a stored message body."""
    content = content or ""
    if encoding == "none":
        return content.encode("utf-8")
    # .NET's base64 decoder skips whitespace but rejects anything else outside the alphabet.
    try:
        return wire.decode("".join(content.split()), encoding)
    except wire.WireError:
        raise MessageDecodeError("message body is not valid base64") from None


def encode_body(data: bytes | str, encoding: str) -> str:
    """The stored text for ``data`` that the host decodes back to the same bytes."""
    return wire.encode(data.encode("utf-8") if isinstance(data, str) else bytes(data), encoding)


class QueueListener:
    """Polls one queue for one function and processes what it receives. Runs on the host's loop."""

    def __init__(
        self,
        fn: QueueFunction,
        client: QueueClient,
        poison_client: QueueClient,
        options: QueueOptions,
        invoker: Invoker,
        io: Executor,
    ) -> None:
        self.fn = fn
        self.client = client
        self.poison_client = poison_client
        self.options = options
        self._invoker = invoker
        self._io = io
        self._tasks: set[asyncio.Task[None]] = set()
        self._receiving = 0  # receives in progress (the background loop and run_once may overlap)
        self._leases: dict[str, str] = {}  # message id -> latest pop receipt, while its function runs
        self._wake = asyncio.Event()
        #: set while the listener, having found its queue empty, waits out its backoff (a hook for tests)
        self.waiting = threading.Event()

    @property
    def busy(self) -> bool:
        """Whether a receive or any message is in progress."""
        return self._receiving > 0 or bool(self._tasks)

    def wake(self) -> None:
        """Poll now instead of waiting out the backoff (call on the loop)."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll until ``stopping`` is set."""
        delay = MIN_POLL_SECONDS
        while not stopping.is_set():
            if len(self._tasks) > self.options.new_batch_threshold:
                await _wait_first([stopping.wait(), *self._tasks])
                continue
            try:
                found = await self._fetch(stopping)
            except Exception as exc:  # storage unreachable for a moment: keep polling, as the host does
                log.warning("Queue '%s': receive failed: %s", self.fn.queue_name, exc)
                found = 0
            if found:
                delay = MIN_POLL_SECONDS
                continue
            self.waiting.set()
            woken = await _wait_first([stopping.wait(), self._wake.wait()], within=delay)
            self.waiting.clear()
            self._wake.clear()
            delay = MIN_POLL_SECONDS if woken else min(delay * 2, self.options.max_polling_interval)

    async def poll_once(self) -> int:
        """Receive one batch, process it completely, and return how many messages it held."""
        found = await self._fetch(None)
        while self._tasks:
            # wait(), not gather(): if this caller gives up, the messages' processing must go on.
            await asyncio.wait(set(self._tasks))
        return found

    def release_unfinished(self) -> None:
        """Make messages whose processing was cut short visible again (after the loop has stopped)."""
        for message_id, receipt in list(self._leases.items()):
            try:
                self.client.update_message(message_id, receipt, visibility_timeout=0)
            except Exception as exc:
                log.warning("Queue '%s': could not release message %s: %s", self.fn.queue_name, message_id, exc)
        self._leases.clear()

    async def _fetch(self, stopping: asyncio.Event | None) -> int:
        self._receiving += 1
        try:
            n = self.options.batch_size
            messages: list[StoredMessage] = await self._io_call(
                lambda: list(
                    self.client.receive_messages(messages_per_page=n, max_messages=n, visibility_timeout=LEASE_SECONDS)
                )
            )
            if stopping is not None and stopping.is_set():
                for m in messages:
                    self._leases[m.id] = m.pop_receipt
                return 0
            for m in messages:
                task = asyncio.ensure_future(self._process(m))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return len(messages)
        finally:
            self._receiving -= 1

    async def _process(self, stored: StoredMessage) -> None:
        try:
            await self._handle(stored)
        except Exception as exc:  # storage errors while settling: the message reappears after its lease
            log.warning("Queue '%s': handling message %s failed: %s", self.fn.queue_name, stored.id, exc)

    async def _handle(self, stored: StoredMessage) -> None:
        fn, opts = self.fn, self.options
        receipt = stored.pop_receipt
        if stored.dequeue_count > opts.max_dequeue_count:
            await self._poison(stored, receipt, f"its DequeueCount {stored.dequeue_count} exceeds MaxDequeueCount")
            return
        try:
            body = decode_body(stored.content, opts.message_encoding)
        except MessageDecodeError:
            await self._poison(stored, receipt, "its body is not valid base64 (messageEncoding is base64)")
            return
        message = QueueMessage(
            id=stored.id,
            body=body,
            pop_receipt=receipt,
            dequeue_count=stored.dequeue_count,
            insertion_time=stored.inserted_on,
            expiration_time=stored.expires_on,
            time_next_visible=stored.next_visible_on,
        )
        details = f"MessageId: {stored.id}, DequeueCount: {stored.dequeue_count}, InsertedOn: {stored.inserted_on}"
        reason = f"New queue message detected on '{fn.queue_name}'."
        self._leases[stored.id] = receipt
        invocation = asyncio.ensure_future(self._invoker.invoke(fn, message, reason, details))
        try:
            while not (await asyncio.wait({invocation}, timeout=LEASE_SECONDS / 2))[0]:
                receipt = await self._renew(stored.id, receipt)
                self._leases[stored.id] = receipt
        except asyncio.CancelledError:
            invocation.cancel()  # host shutting down; release_unfinished() hands the message back
            raise
        self._leases.pop(stored.id, None)
        failed = invocation.cancelled() or invocation.exception() is not None
        if not failed:
            await self._io_call(self.client.delete_message, stored.id, receipt)
        elif stored.dequeue_count >= opts.max_dequeue_count:
            await self._poison(stored, receipt, f"it has reached MaxDequeueCount of {opts.max_dequeue_count}")
        else:
            visible_in = math.ceil(opts.visibility_timeout)
            await self._io_call(self.client.update_message, stored.id, receipt, visibility_timeout=visible_in)

    async def _renew(self, message_id: str, receipt: str) -> str:
        try:
            updated = await self._io_call(
                self.client.update_message, message_id, receipt, visibility_timeout=LEASE_SECONDS
            )
            return updated.pop_receipt
        except Exception as exc:
            log.warning("Queue '%s': renewing message %s failed: %s", self.fn.queue_name, message_id, exc)
            return receipt

    async def _poison(self, stored: StoredMessage, receipt: str, why: str) -> None:
        poison = self.fn.poison_queue_name
        log.warning(
            "Message %s on queue '%s' is moved to '%s' because %s (function 'Functions.%s').",
            stored.id,
            self.fn.queue_name,
            poison,
            why,
            self.fn.name,
        )
        # The original stored text, so a fixed consumer can replay it as it was.
        await self._io_call(self.poison_client.send_message, stored.content or "")
        await self._io_call(self.client.delete_message, stored.id, receipt)
        self._invoker.stats.setdefault(self.fn.name, FunctionStats()).poisoned += 1

    async def _io_call(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, functools.partial(call, *args, **kwargs))


async def _wait_first(awaitables: list[Any], within: float | None = None) -> bool:
    """Wait until the first of ``awaitables`` completes (True) or ``within`` seconds pass (False).

    Waiters made here from coroutines are cancelled afterwards; tasks passed in are left running.
    """
    own = [asyncio.ensure_future(a) for a in awaitables if asyncio.iscoroutine(a)]
    given = [a for a in awaitables if not asyncio.iscoroutine(a)]
    try:
        done, _ = await asyncio.wait([*own, *given], timeout=within, return_when=asyncio.FIRST_COMPLETED)
        return bool(done)
    finally:
        for waiter in own:
            waiter.cancel()
