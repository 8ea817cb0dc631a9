"""The admins' status page: how full each environment is, starts in progress and failed, the warm pool, the timers.

Run by the hub as the ``aca-status`` service (:mod:`acaspawner.status_service`)::

    python -m acaspawner.status_page

It reads the status table (the hub's partition, the capacity ledger's
environment rows and the functions' report: :mod:`acaspawner.report`) at most
once per :data:`CACHE_SECONDS`, whoever asks, and renders one page that
refreshes itself. A failed start shows its reason and request id, the id a
student quotes from the spawn page and that the hub's log, the functions'
log (``request_id``) and Azure's activity log (``x-ms-client-request-id``)
carry. Everything shown is escaped: user and server names are the users'.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from .contract import Phase, Status
from .hub_storage import HubStorage
from .report import Report
from .storage_config import DEFAULT_TABLE, StorageConfig

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
REFRESH_SECONDS = 15
#: failed starts listed, newest first, of the last day
MAX_FAILED = 50
FAILED_SHOWN_FOR = 86400.0
_WAITING = (Phase.QUEUED, Phase.PROVISIONING, Phase.STOPPING)


@dataclass
class Snapshot:
    """One read of everything the page shows."""

    statuses: dict[str, Status] = field(default_factory=dict)
    report: Report = field(default_factory=Report)
    read_at: float = 0.0
    error: str = ""  # why the table could not be read ("" when it could)


class StatusSource:
    """Reads one hub's statuses and report, sharing a read among the requests of :data:`CACHE_SECONDS`."""

    def __init__(self, storage: HubStorage, hub_id: str):
        self.storage = storage
        self.hub_id = hub_id
        self._snapshot = Snapshot()
        self._lock = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        async with self._lock:
            if time.time() - self._snapshot.read_at >= CACHE_SECONDS:
                try:
                    statuses = (await self.storage.read_statuses(self.hub_id)).statuses
                    self._snapshot = Snapshot(statuses, await self.storage.read_report(self.hub_id), time.time())
                except Exception as e:  # shown on the page; the next request tries again
                    log.warning("reading the status table failed: %s", type(e).__name__)
                    self._snapshot = Snapshot(self._snapshot.statuses, self._snapshot.report, time.time(),
                                              f"the status table could not be read ({type(e).__name__})")
            return self._snapshot


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ago(then: float, now: float) -> str:
    if not then:
        return "never"
    seconds = max(now - then, 0)
    text = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"
    stamp = datetime.fromtimestamp(then, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'<time datetime="{_e(stamp)}" title="{_e(stamp)}">{text} ago</time>'


def _server(status: Status) -> str:
    return _e(f"{status.user}/{status.server_name}" if status.server_name else status.user or status.server_key)


def _table(caption: str, head: tuple[str, ...], rows: list[tuple[str, ...]], empty: str, test_id: str) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows) or \
        f'<tr><td colspan="{len(head)}" class="empty">{_e(empty)}</td></tr>'
    return f'<section data-testid="{test_id}"><h2>{_e(caption)}</h2><table><thead><tr>{cells}</tr></thead>' \
           f"<tbody>{body}</tbody></table></section>"


def _bar(used: float, budget: float) -> str:
    share = min(used / budget, 1.0) if budget > 0 else 0.0
    tone = "full" if share >= 0.9 else "busy" if share >= 0.7 else "ok"
    return f'<div class="bar {tone}"><span style="width:{share * 100:.0f}%"></span></div>'


def render(snapshot: Snapshot, user: str, now: float | None = None) -> str:
    """The page for ``snapshot``, as seen by ``user``."""
    now = time.time() if now is None else now
    report, statuses = snapshot.report, list(snapshot.statuses.values())
    phases = Counter(s.phase.value for s in statuses)
    environments = [
        (_e(use.name), str(use.servers), f"{use.cores:g}", f"{use.cores_budget:g}" if use.cores_left is not None
         else "?", f"{use.cores_left:g}" if use.cores_left is not None else "?",
         _bar(use.cores, use.cores_budget))
        for use in report.shown_environments()]
    waiting = [(_server(s), _e(s.phase.value), _e(s.message), _ago(s.updated, now), f"<code>{_e(s.request_id)}</code>")
               for s in sorted((s for s in statuses if s.phase in _WAITING), key=lambda s: s.updated)]
    failed = [(_e(f"{f.user}/{f.server_name}" if f.server_name else f.user), _e(f.code or "-"), _e(f.message),
               _ago(f.failed_at, now), f"<code>{_e(f.request_id)}</code>")
              for f in sorted(report.failed.values(), key=lambda f: -f.failed_at)
              if now - f.failed_at <= FAILED_SHOWN_FOR][:MAX_FAILED]
    warm = [(_e(w.profile), str(w.ready), str(w.bound), str(w.wanted), _ago(w.updated, now))
            for w in sorted(report.warm.values(), key=lambda w: w.profile)]
    runs = [(_e(r.timer), _ago(r.ended, now), f"{r.seconds:.1f} s",
             '<span class="ok">ok</span>' if r.ok else f'<span class="bad">{r.errors} errors</span>',
             f"<code>{_e(r.summary)}</code>")
            for r in sorted(report.runs.values(), key=lambda r: r.timer)]
    counts = " · ".join(f"{_e(phase)} {n}" for phase, n in sorted(phases.items())) or "no servers"
    error = f'<p class="bad" role="alert">{_e(snapshot.error)}</p>' if snapshot.error else ""
    sections = "".join((
        _table("Environments", ("environment", "servers", "cores used", "budget", "left", ""), environments,
               "no environment has held a server yet", "environments"),
        _table("Starts and stops in progress", ("server", "phase", "last step", "since", "request id"), waiting,
               "none", "in-progress"),
        _table("Failed starts (last 24 h)", ("server", "code", "reason", "when", "request id"), failed, "none", "failed"),
        _table("Warm pool", ("profile", "ready", "in use", "wanted now", "updated"), warm,
               "no warm pool (ACA_WARM_POOL)", "warm-pool"),
        _table("Timers: last runs", ("timer", "ended", "took", "result", "summary"), runs, "no run reported yet",
               "timers"),
    ))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Container Apps status</title>
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<style>
body{{font:14px system-ui,sans-serif;margin:1.5rem;color:#222}} h1{{font-size:1.4rem}} h2{{font-size:1.1rem;margin-top:1.6rem}}
table{{border-collapse:collapse;width:100%}} th,td{{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;
vertical-align:top}} th{{background:#f4f4f4}} code{{font-size:12px;word-break:break-all}} .empty{{color:#777}}
.bar{{width:10rem;height:.8rem;background:#eee;border-radius:.4rem;overflow:hidden}} .bar span{{display:block;
height:100%}} .ok span{{background:#3a8}} .busy span{{background:#e90}} .full span{{background:#d33}}
span.ok{{color:#286}} .bad{{color:#b22}} header p{{color:#555}}
</style></head><body>
<header><h1>Container Apps status</h1>
<p>Servers: <span data-testid="phase-counts">{counts}</span>. Read {_ago(snapshot.read_at, now)}; this page
refreshes every {REFRESH_SECONDS} s. Signed in as {_e(user)}.</p>{error}</header>
{sections}
</body></html>
"""


def storage_from_environ(environ: Mapping[str, str]) -> tuple[StorageConfig, str]:
    """The storage config and hub id the service was given (:mod:`acaspawner.status_service`)."""
    table = environ.get("ACA_STATUS_TABLE") or DEFAULT_TABLE
    connection = environ.get("ACA_STORAGE_CONNECTION_STRING", "")
    table_url = environ.get("ACA_TABLE_ACCOUNT_URL", "")
    config = StorageConfig(table_name=table, connection_string=connection, table_account_url=table_url,
                           queue_account_url=environ.get("ACA_QUEUE_ACCOUNT_URL", "") or table_url,
                           client_id=environ.get("AZURE_CLIENT_ID", ""))
    return config, environ["ACA_HUB_ID"]


def make_app(source: StatusSource, prefix: str):  # -> tornado.web.Application
    """The service's tornado application under ``prefix`` (``/services/aca-status/``)."""
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
    from jupyterhub.utils import url_path_join
    from tornado import web

    class StatusHandler(HubOAuthenticated, web.RequestHandler):
        @web.authenticated
        async def get(self) -> None:
            snapshot = await source.snapshot()
            self.set_header("Cache-Control", "no-store")
            self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
            self.finish(render(snapshot, self.get_current_user()["name"]))

    return web.Application([
        (prefix, StatusHandler),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
    ], cookie_secret=os.urandom(32))


async def serve(environ: Mapping[str, str]) -> None:
    config, hub_id = storage_from_environ(environ)
    source = StatusSource(HubStorage(config), hub_id)
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/aca-status/")
    where = urlsplit(environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    make_app(source, prefix).listen(where.port or 80, where.hostname or "127.0.0.1")
    log.info("status page of hub %s at %s%s", hub_id, where.geturl(), prefix)
    await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    asyncio.run(serve(os.environ))
