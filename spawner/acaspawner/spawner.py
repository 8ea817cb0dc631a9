"""AcaSpawner: JupyterHub servers as Azure Container Apps, run by Azure Functions.

The spawner never calls ARM. ``start``, ``stop`` and ``delete_forever`` seal a
request onto the lifecycle queue; the functions create, stop or delete the
container app and write the server's status to the table; the spawner learns
the outcome from the shared :class:`~acaspawner.watcher.StatusWatcher`. Every
request carries a new generation so that the functions can apply them in
order even though the queue is neither ordered nor exactly-once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from inspect import isawaitable
from typing import Any

from jupyterhub.spawner import Spawner
from sqlalchemy import inspect
from traitlets import default

from . import logs, metrics, naming, outcomes, profile_config, profile_form, profiles, sizes, warm
from .contract import QUEUE_TTL_MARGIN, Op, Request, ServerSpec, Status, Volume, shown_request_id
from .errors import SpawnException
from .hub_storage import HubStorage
from .logs import describe
from .outcomes import StartOutcome
from .overrides import apply_environment, evaluate, normalise
from .progress import READY, REQUESTED, ProgressFeed
from .sealing import Sealer
from .spec import as_served, build_request, build_spec, delete_spec, home_volume, next_generation, origin_of
from .storage_config import StorageConfig
from .traits import AcaSpawnerConfig
from .watcher import QUERY_TIMEOUT, StatusUnavailable, StatusWatcher, Subscription

READ_TRIES = 4
READ_BACKOFF = 0.5
READ_WAIT = 10.0  # poll() answers within this even when the table does not
SEND_TIMEOUT = 30.0
START_TIMEOUT_MARGIN = 5.0  # our deadline ends this much before JupyterHub's own start_timeout
MAX_RESENDS = 4
# a stop that storage refused is sent again, backing off, for this long
RETRY_FIRST_DELAY = 1.0
RETRY_MAX_DELAY = 60.0
RETRY_FOR = 3600.0
# how long a failed start waits for its cleanup stop, and stop() for its request, to reach the queue
CLEANUP_SEND_WAIT = 2.0
STOP_SEND_WAIT = 5.0

_background: set[asyncio.Task] = set()  # retries in flight (a task nobody references may be collected)


class AcaSpawner(AcaSpawnerConfig, Spawner):
    """Spawn each user's server as its own Azure Container App (internal ingress)."""

    # what get_state() saves: the app's name, the last request's generation and op, the server's URL
    server_key: str = ""
    generation: int = 0
    last_op: str = ""
    last_url: str = ""

    _subscription: Subscription | None = None
    _feed: ProgressFeed | None = None
    _starting = False
    _sealer_cache: tuple[tuple[str, float], Sealer] | None = None

    # --- plumbing ---------------------------------------------------------------------------------

    @property
    def storage_config(self) -> StorageConfig:
        """Where the queue and the table are (from the traits)."""
        return StorageConfig(
            queue_name=self.queue_name,
            table_name=self.table_name,
            connection_string=self.storage_connection_string,
            queue_account_url=self.queue_account_url,
            table_account_url=self.table_account_url,
            client_id=self.storage_client_id,
        )

    @property
    def watcher(self) -> StatusWatcher:
        """The status watcher shared by every spawner of this hub on this event loop."""
        logs.speak_through(self.log)  # the watcher's and storage's warnings, in the hub's log format
        return StatusWatcher.shared(
            self.storage_config, self.hub_id, self.status_poll_interval, self.status_poll_interval_fast,
            report_interval=self.report_interval,
        )

    @property
    def sealer(self) -> Sealer:
        """The request sealer for the configured keys."""
        wanted = (self.sealing_keys, self.seal_max_age)
        if self._sealer_cache is None or self._sealer_cache[0] != wanted:
            if not self.sealing_keys.strip():
                raise ValueError(
                    "c.AcaSpawner.sealing_keys is not set: configure the key shared with the functions "
                    "(ACA_SEALING_KEYS); make one with: aca-sealing-key"
                )
            self._sealer_cache = (wanted, Sealer(self.sealing_keys, self.seal_max_age))
        return self._sealer_cache[1]

    def _key(self) -> str:
        if not self.server_key:
            self.server_key = naming.server_key(self.hub_id, self.user.name, self.name)
        return self.server_key

    def _own(self, status: Status | None) -> Status | None:
        """The row under this server's key, if it is this server's (see :func:`outcomes.owned`)."""
        mine = outcomes.owned(status, self.user.name, self.name)
        if status is not None and mine is None:
            self.log.error("The status row of %s (%s) records user %r, server %r: not %s; ignoring it",
                           self._log_name, self._key(), status.user, status.server_name, self._log_name)
        return mine

    def _subscribe(self, fast: bool) -> Subscription:
        """Keep (or make) this spawner's subscription, at the wanted speed."""
        if self._subscription is None or self._subscription.closed:
            self._subscription = self.watcher.subscribe(fast=fast)
        else:
            self._subscription.fast = fast
        return self._subscription

    def _unsubscribe(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    # --- state ------------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """What JupyterHub stores for this server: app name, last generation and op, URL."""
        state = super().get_state()
        for name in ("server_key", "generation", "last_op", "last_url"):
            if getattr(self, name):
                state[name] = getattr(self, name)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` saved (after a hub restart, or for a new spawner object)."""
        super().load_state(state)
        self.server_key = str(state.get("server_key") or self.server_key)
        self.generation = int(state.get("generation") or self.generation)
        self.last_op = str(state.get("last_op") or self.last_op)
        self.last_url = str(state.get("last_url") or self.last_url)

    def clear_state(self) -> None:
        """Forget the stopped server's URL; keep its app name and generation (generations never go back)."""
        super().clear_state()
        self.last_url = ""
        self._feed = ProgressFeed()  # a new spawn starts a new progress stream
        self._unsubscribe()

    def _save_state(self) -> None:
        """Persist state now: JupyterHub only saves it after start() returns, too late for a hub restart mid-spawn."""
        if self.orm_spawner is None:
            return
        try:
            self.orm_spawner.state = self.get_state()
            session = inspect(self.orm_spawner).session
            if session is not None:
                session.commit()
        except Exception:
            self.log.warning("Could not save the state of %s early", self._log_name, exc_info=True)

    # --- options ----------------------------------------------------------------------------------

    @default("options_form")
    def _default_options_form(self):
        return self._render_profiles_form if self.profile_list else ""

    @staticmethod
    async def _render_profiles_form(spawner: AcaSpawner) -> str:
        return profile_form.render_form(await spawner._profiles(), spawner.user_options or {})

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._profiles_from_form

    @staticmethod
    def _profiles_from_form(form_data: dict[str, list[str]], spawner: AcaSpawner) -> Any:
        if not spawner.profile_list:
            return form_data  # no profiles: JupyterHub's passthrough behaviour for a custom form
        if callable(spawner.profile_list):
            return spawner._options_from_form_later(form_data)  # JupyterHub awaits it
        return profile_form.options_from_form(form_data, profile_config.parse_profiles(spawner.profile_list))

    async def _options_from_form_later(self, form_data: dict[str, list[str]]) -> dict[str, Any]:
        return profile_form.options_from_form(form_data, await self._profiles())

    async def _profiles(self) -> list[profiles.Profile]:
        """The profiles this server's user may choose from (a callable profile_list is called with the spawner)."""
        offered = self.profile_list
        if callable(offered):
            offered = offered(self)
            if isawaitable(offered):
                offered = await offered
        try:
            return profile_config.parse_profiles(offered or [])
        except ValueError as e:
            raise SpawnException(f"The server profiles are misconfigured: {e}", reason="config") from None

    def _resolve_options(
        self, offered: list[profiles.Profile] | None = None
    ) -> tuple[profiles.Profile | None, dict[str, Any]]:
        """The profile the user chose and its overrides; options reaching us through the REST API are checked here too.

        ``offered`` is what :meth:`_profiles` returned (needed for a callable profile_list).
        """
        hook = self.apply_user_options
        allowed = None if callable(hook) or self.pre_spawn_hook else list(hook or {})
        if offered is None:
            offered = profile_config.parse_profiles(self.profile_list)
        try:
            return profiles.resolve(offered, self.user_options, allowed)
        except profiles.ProfileError as e:
            raise SpawnException(str(e), reason="options", status_code=400) from None

    # --- building requests ------------------------------------------------------------------------

    def _allow_origin(self) -> str:
        if self.allow_origin:
            return self.allow_origin
        for url in (self.public_url, self.public_hub_url, getattr(self.hub, "public_host", "")):
            if origin_of(url):
                return origin_of(url)
        raise SpawnException(
            "The hub does not know its public URL, so the server could not accept the browser's requests. "
            "An administrator must set c.JupyterHub.public_url (or c.AcaSpawner.allow_origin).",
            reason="config",
        )

    def _home_volumes(self) -> list[Volume]:
        if not self.home_storage_name:
            return []
        return [home_volume(self.home_storage_name, self.home_mount_path, self.user.name, self.home_mount_options)]

    def server_size(self, overrides: dict[str, Any] | None = None) -> sizes.Size:
        """What the app gets: limits/guarantees of the traits, then of the profile's ``overrides``, else cpu/memory."""
        overrides = overrides or {}
        bounds = {key: overrides[key] if key in overrides else getattr(self, key) for key in sizes.SIZE_KEYS}
        return sizes.choose_size(
            sizes.Bounds.parse(bounds),
            workload_profile=overrides.get("workload_profile", self.workload_profile),
            cpu=self.cpu,
            memory=self.memory,
        )

    def server_spec(self, overrides: dict[str, Any] | None = None) -> ServerSpec:
        """The container app spec of this server: traits, then the chosen profile's (evaluated) ``overrides``."""
        overrides = normalise(overrides or {}, "overrides", strict=True)[0]  # either shape; resolve's is kept
        size = self.server_size(overrides)
        env = apply_environment(self.get_env(), overrides.get("environment"))
        if overrides.get("default_url"):
            # formatted like JupyterHub's own default_url; text a user typed into it (an unlisted
            # choice) arrives with its braces doubled and comes out literally (overrides.substitute_layer)
            env["JUPYTERHUB_DEFAULT_URL"] = self.format_string(overrides["default_url"])
        env.update(size.env())  # MEM_LIMIT and friends say what the app really gets, whichever setting chose it
        return build_spec(
            image=overrides.get("image", self.image),
            cpu=size.cpu,
            memory=size.memory,
            workload_profile=overrides.get("workload_profile", self.workload_profile),
            port=self.port,
            ip=self.ip,
            cmd=self.cmd,
            args=self.get_args(),
            env=env,
            api_token=self.api_token,
            allow_origin=self._allow_origin(),
            volumes=self._home_volumes(),
        )

    def _new_request(self, op: Op, spec: ServerSpec | None = None) -> Request:
        """The next request for this server, with a generation newer than any it or the table has seen."""
        key = self._key()
        known = self._own(self.watcher.get(key))
        generation = next_generation(self.generation, *([known.generation] if known else []))
        return build_request(op, hub_id=self.hub_id, server_key=key, user=self.user.name, server_name=self.name,
                             generation=generation, spec=spec)

    async def _send(self, request: Request) -> None:
        """Seal and enqueue ``request``; remember (and save) it as the last one."""
        async with asyncio.timeout(SEND_TIMEOUT):
            await HubStorage.shared(self.storage_config).send(self.sealer.seal(request),
                                                              time_to_live=self.seal_max_age + QUEUE_TTL_MARGIN)
        self.generation, self.last_op = request.generation, request.op.value
        self.log.info("Sent %s for %s (%s, generation %d, request id %s)", request.op.value, self._log_name,
                      request.server_key, request.generation, shown_request_id(request.correlation_id))
        self._save_state()

    async def send_request(self, op: Op, spec: ServerSpec | None = None) -> Request:
        """Seal and enqueue one request with a new generation; remember (and save) it as the last one."""
        request = self._new_request(op, spec)
        await self._send(request)
        return request

    def _keep_sending(self, request: Request, error: BaseException) -> None:
        """Send ``request`` in the background until storage takes it (a stop must not be lost to an outage)."""
        self.log.warning("Could not send %s for %s (%s); retrying in the background until storage is back",
                         request.op.value, self._log_name, describe(error, SEND_TIMEOUT))

        async def retry() -> None:
            delay = RETRY_FIRST_DELAY
            deadline = time.monotonic() + RETRY_FOR
            while time.monotonic() < deadline:
                await asyncio.sleep(delay)
                try:
                    await self._send(request)
                    return
                except Exception as e:
                    self.log.warning("Still cannot send %s for %s: %s", request.op.value, self._log_name,
                                     describe(e, SEND_TIMEOUT))
                delay = min(delay * 2, RETRY_MAX_DELAY)
            self.log.error("Gave up sending %s for %s after %d s; the reconciler will remove its app",
                           request.op.value, self._log_name, RETRY_FOR)

        task = asyncio.ensure_future(retry())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _send_soon(self, request: Request, why: str, wait: float) -> bool:
        """Send ``request``, waiting at most ``wait`` seconds; True once it is on the queue.

        A send that is slower goes on in the background (and on failure is
        retried until storage is back), so a user never waits on an outage for
        a cleanup they did not ask for; a cancellation cannot interrupt it either.
        """
        task = asyncio.ensure_future(self._send(request))
        _background.add(task)

        def settled(done: asyncio.Task) -> None:
            _background.discard(done)
            if not done.cancelled() and done.exception() is not None:
                error = done.exception()
                self.log.warning("Sending %s for %s (%s) failed: %s", request.op.value, self._log_name, why,
                                 describe(error, SEND_TIMEOUT))
                self._keep_sending(request, error)

        task.add_done_callback(settled)
        try:
            await asyncio.wait_for(asyncio.shield(task), wait)
        except TimeoutError:
            self.log.warning("%s for %s (%s) is not on the queue after %g s; still sending it in the background",
                             request.op.value.capitalize(), self._log_name, why, wait)
            return False
        except asyncio.CancelledError:
            raise
        except Exception:  # settled() logs it and keeps sending
            return False
        return True

    async def _send_in_background(self, op: Op, why: str) -> None:
        """Send a cleanup request; the caller waits at most CLEANUP_SEND_WAIT for it (see :meth:`_send_soon`)."""
        await self._send_soon(self._new_request(op), f"after {why}", CLEANUP_SEND_WAIT)

    def _table_stale(self) -> bool:
        """The status table has not been read for a while (unreachable or slow), so what it says is old."""
        age = self.watcher.age()
        stale_after = 3 * self.status_poll_interval_fast + 10
        return (age is None and self.watcher.consecutive_errors > 0) or (age is not None and age > stale_after)

    # --- start --------------------------------------------------------------------------------------

    async def start(self) -> str:
        """Ask the functions for a container app and return its URL once the table says it runs."""
        profile, overrides = self._resolve_options(await self._profiles())
        try:
            overrides = await evaluate(overrides, self, f"profile {profile.slug!r}" if profile else "the settings")
            spec = self.server_spec(overrides)
            self.sealer  # noqa: B018 - fail on a missing key before anything is sent
        except ValueError as e:
            raise SpawnException(f"The server could not be configured: {e}", reason="config") from None
        if self._feed is None or self._feed.closed:
            self._feed = ProgressFeed()
        feed = self._feed
        self._starting = True
        self._subscribe(fast=True)
        request: Request | None = None
        try:
            async with asyncio.timeout(self._start_budget()):
                request = await self._send_start(spec)
                sent = time.time()
                chosen = f" ({profile.display_name})" if profile else ""
                feed.add(REQUESTED, f"Server requested{chosen}, waiting for Azure Container Apps")
                url = await self._wait_running(request.generation, feed, resend=request)
                ran = self._own(self.watcher.get(self._key()))  # the row that said running
                if ran is not None and ran.claim_key:
                    await warm.claim(ran, spec, self.sealer, self._key())
                    feed.add(READY, "Warm server handed over; your server starts in seconds")
        except TimeoutError:
            why = self._why_not_running(request)
            self.log.warning("Start of %s (%s, generation %s, request id %s) timed out: %s; sending a stop",
                             self._log_name, self._key(), request.generation if request else "-",
                             request.request_id if request else "-", why)
            await self._send_in_background(Op.STOP, "a timeout")
            metrics.count_failure("timeout")
            raise SpawnException(why, reason="timeout", request_id=request.request_id if request else "") from None
        except asyncio.CancelledError:
            # a start may be on the queue even if sending it was cut short: always follow with a stop
            self.log.warning("Start of %s ended by cancellation; sending a stop", self._log_name)
            await self._send_in_background(Op.STOP, "cancellation")
            raise
        except SpawnException as e:
            if e.reason == StartOutcome.FAILED:
                await self._send_in_background(Op.STOP, "a failed start")  # remove what was half created
            metrics.count_failure(e.error_code or str(e.reason))
            if request is None:
                raise
            raise e.with_request_id(request.request_id) from e.__cause__
        finally:
            self._starting = False
            feed.close()
            if self._subscription is not None:
                self._subscription.fast = False  # stays subscribed (slowly) while the server runs
        self.last_url = url
        if ran is not None and ran.generation == request.generation:
            metrics.observe_start(sent, ran, time.time())
        return url

    async def _send_start(self, spec: ServerSpec) -> Request:
        try:
            return await self.send_request(Op.START, spec)
        except (asyncio.CancelledError, TimeoutError):
            raise
        except Exception as e:
            self.log.error("Could not send the start of %s: %s", self._log_name, describe(e))
            raise SpawnException(
                "The server could not be requested right now; please try again in a moment",
                reason="queue", log_message=f"sending the start request failed: {describe(e)}",
            ) from e

    def _start_budget(self) -> float:
        """A little less than JupyterHub's own start_timeout, so the user reads why, not "Timeout"."""
        return max(self.start_timeout - START_TIMEOUT_MARGIN, 0.9 * self.start_timeout)

    def _why_not_running(self, request: Request | None) -> str:
        """What the user reads when a start times out: what was seen last, and what to do."""
        waited = self._start_budget()
        if request is None:
            return "The start request could not be sent in time (is the storage queue reachable?)"
        watcher = self.watcher
        if self._table_stale():
            age = watcher.age()
            # the newest read may still be waiting for its answer: then no error is known yet
            cause = describe(watcher.last_error, QUERY_TIMEOUT) if watcher.consecutive_errors else "no answer yet"
            return (f"The status table could not be read for the last {age or waited:.0f} s ({cause}); "
                    "the server may still be starting, try again in a moment")
        status = self._own(watcher.get(self._key()))
        if status is None or status.generation < request.generation:
            return (f"No function picked up the start request within {waited:.0f} s "
                    "(is the Function App running and reading the lifecycle queue?)")
        return (f"Azure was still working on the server after {waited:.0f} s "
                f"(last status: {status.phase.value}: {status.message})")

    async def _resend(self, request: Request, attempt: int) -> None:
        """The same request again (same generation): the functions pick up where a lost delivery left it."""
        self.log.warning("No progress for %s (%s, generation %d); sending its start again (resend %d)",
                         self._log_name, request.server_key, request.generation, attempt)
        try:
            await self._send(request)
        except Exception as e:  # the next resend or the timeout will tell
            self.log.warning("Could not resend the start of %s: %s", self._log_name, describe(e, SEND_TIMEOUT))

    async def _wait_running(self, generation: int, feed: ProgressFeed | None = None,
                            resend: Request | None = None) -> str:
        """Wait for ``generation`` to run; :class:`SpawnException` as soon as the table says it will not.

        With ``resend``, a start that shows no progress for ``resend_after`` seconds
        (doubling each time) is sent again.
        """
        watcher = self.watcher
        seen: tuple | None = None
        changed = time.monotonic()
        resends = 0
        while True:
            status = watcher.get(self._key())
            if resend is not None:
                mine = outcomes.owned(status, self.user.name, self.name)
                now_seen = (mine.generation, mine.phase, mine.updated) if mine else None
                if now_seen != seen:
                    seen, changed = now_seen, time.monotonic()
                elif time.monotonic() - changed > self.resend_after * 2**resends and resends < MAX_RESENDS:
                    resends += 1
                    changed = time.monotonic()
                    await self._resend(resend, resends)
            if status is not None and self._own(status) is None:
                raise SpawnException(
                    "This server's container app name is recorded for another server; "
                    "choose another server name, or ask an admin to look at the status table",
                    reason="conflict",
                )
            outcome = outcomes.start_outcome(status, generation)
            if feed is not None and status is not None and status.generation == generation:
                feed.add_status(status)
            if outcome is StartOutcome.RUNNING:
                if feed is not None:
                    feed.add(READY, "Container app is running; connecting to the server")
                return status.url
            if outcome is StartOutcome.FAILED:
                raise SpawnException(
                    status.message or "Azure Container Apps could not start the server",
                    reason=StartOutcome.FAILED.value, error_code=status.error_code,
                )
            if outcome is StartOutcome.STOPPED:
                raise SpawnException("The server was stopped while it was starting", reason=outcome.value)
            if outcome is StartOutcome.SUPERSEDED:
                raise SpawnException(
                    "A newer request for this server replaced this start (was it started or stopped elsewhere?)",
                    reason=outcome.value,
                )
            await watcher.next_refresh()

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """Progress of the current spawn, from the status transitions the functions write."""
        if self._feed is None:
            self._feed = ProgressFeed()
        async for event in self._feed.follow():
            yield event

    # --- poll, url ----------------------------------------------------------------------------------

    async def _read_status(self) -> Status | None:
        """This server's status, fresh enough; waits for the watcher's first successful read after a restart.

        A failing table is retried with backoff and then reported as
        :class:`StatusUnavailable`, never as the server's death. The whole read
        takes at most READ_WAIT: JupyterHub awaits ``poll()`` before a stop,
        including the stop after a failed start, and the user's spawn page
        shows the failure only once that returns.
        """
        watcher = self.watcher
        max_age = 2 * self.status_poll_interval
        try:
            async with asyncio.timeout(READ_WAIT):
                for attempt in range(READ_TRIES):
                    try:
                        return self._own(await watcher.current(self._key(), max_age))
                    except StatusUnavailable:
                        if attempt == READ_TRIES - 1:
                            raise
                        await asyncio.sleep(READ_BACKOFF * 2**attempt)
        except TimeoutError:
            raise StatusUnavailable(f"the status table could not be read: no answer within {READ_WAIT:g} s") from None

    def _answer(self, status: Status | None) -> int | None:
        answer = outcomes.poll_answer(
            status, self.generation, self.last_op, self.seal_max_age, starting=self._starting
        )
        if answer.adopt is not None:
            self.log.info(
                "Taking over generation %d of %s (%s) from the table",
                answer.adopt.generation, self._log_name, answer.adopt.phase.value,
            )
            self.generation = answer.adopt.generation
            self.last_op = Op.START.value if answer.adopt.phase.is_active else Op.STOP.value
            self.last_url = answer.adopt.url or self.last_url
        return answer.exit_status

    async def poll(self) -> int | None:
        """``None`` while queued, provisioning or running; 0 once stopped or gone, 1 if failed."""
        if not self.generation:
            return outcomes.EXIT_STOPPED  # neither started nor loaded from state
        try:
            status = await self._read_status()
        except StatusUnavailable as e:
            self.log.warning("Status of %s unknown (%s); assuming it still runs", self._log_name, describe(e))
            return None
        exit_status = self._answer(status)
        if exit_status is None:
            self._subscribe(fast=self._starting)  # a running server keeps the shared watcher going
        elif not self._starting:
            self._unsubscribe()
        return exit_status

    async def get_url(self) -> str:
        """The server's URL from the table (after a hub restart, waiting for a spawn that was under way), written
        as JupyterHub writes a server's URL (``scheme://host:port/user/…/``): a restarted hub compares the two and
        rewrites, with a warning, every server whose URL reads differently."""
        return as_served(await self._table_url(), self.server.base_url if self.server else "")

    async def _table_url(self) -> str:
        fallback = self.last_url or (self.server.url if self.server else "")
        try:
            status = await self._read_status()
        except StatusUnavailable:
            return fallback
        if self._answer(status) is not None:
            return fallback
        status = self._own(self.watcher.get(self._key()))
        if outcomes.start_outcome(status, self.generation) is StartOutcome.RUNNING:
            self.last_url = status.url
            return status.url
        # still coming up: wait for the rest of the start budget of that generation
        remaining = self.generation / 1000 + self.start_timeout - time.time()
        budget = max(remaining, self.status_poll_interval_fast)
        self._subscribe(fast=True)
        try:
            async with asyncio.timeout(budget):
                self.last_url = await self._wait_running(self.generation)
        except (TimeoutError, SpawnException) as e:
            self.log.warning("%s did not come up after the hub restarted: %s", self._log_name, describe(e, budget))
            return fallback
        finally:
            if self._subscription is not None:
                self._subscription.fast = False
        return self.last_url

    # --- stop, delete -------------------------------------------------------------------------------

    async def stop(self, now: bool = False) -> None:
        """Send a stop and wait (at most ``stop_timeout``) for the table to report the server stopped."""
        self._subscribe(fast=True)
        request = self._new_request(Op.STOP)
        # not on the queue yet: it goes out when storage is back, and the table could not confirm it anyway
        on_queue = await self._send_soon(request, "asked for", STOP_SEND_WAIT)
        try:
            sent = time.monotonic()
            watcher = self.watcher
            async with asyncio.timeout(self.stop_timeout):
                while on_queue:
                    fresh = watcher.last_success is not None and watcher.last_success >= sent
                    if fresh and outcomes.stop_done(self._own(watcher.get(self._key())), request.generation):
                        break
                    if self._table_stale():
                        self.log.warning("The status table cannot be read to confirm the stop of %s; "
                                         "the stop stays queued", self._log_name)
                        break
                    await watcher.next_refresh()
        except TimeoutError:
            self.log.warning(
                "%s not reported stopped within %d s; the stop stays queued", self._log_name, self.stop_timeout
            )
        finally:
            self._unsubscribe()
        self.last_url = ""

    async def rename(self, old_name: str, new_name: str) -> None:
        """A stopped named server gets a new name, hence a new app name: remove the old app (not the home)."""
        if self.generation:
            await self.send_request(Op.DELETE)  # a stopped-but-kept app under the old name would be orphaned
        self.server_key = naming.server_key(self.hub_id, self.user.name, new_name)
        self._save_state()

    async def delete_forever(self) -> None:
        """Ask the functions to delete the app, and the user's home if they are configured to remove homes.

        Every server of a user shares one home, so only the default server's
        delete (JupyterHub deletes it only with the user) names the home folder.
        """
        volumes = [] if self.name else self._home_volumes()
        await self.send_request(Op.DELETE, delete_spec(self.image, volumes))
        self._unsubscribe()
