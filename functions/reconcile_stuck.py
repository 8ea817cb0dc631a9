"""The reconciler's step 3: statuses stuck on their way to an outcome are marked failed, with the reason."""

from __future__ import annotations

import logging

from acaspawner.contract import Phase, Status

from .reconcile_run import ReconcileOptions, ReconcileSummary, StatusStore, age_text
from .storage import StatusConflict

log = logging.getLogger("functions.reconciler")

STUCK_PHASES = (Phase.QUEUED, Phase.PROVISIONING)
STUCK_ERROR_CODE = "StuckTimeout"


def fail_stuck(statuses: dict[str, Status], storage: StatusStore, options: ReconcileOptions, now: float,
               summary: ReconcileSummary) -> None:
    """Mark entities stuck in ``queued``/``provisioning`` longer than ``ACA_STUCK_AFTER`` failed, in ``statuses`` too.

    ETag-conditional: an entity the lifecycle moved on since it was read is left alone.
    """
    for key, status in statuses.items():
        if status.phase not in STUCK_PHASES:
            continue
        waited = now - status.updated
        if waited < options.stuck_after:
            continue
        message = (
            f"server was stuck in {status.phase.value} for {age_text(waited)} (limit "
            f"{age_text(options.stuck_after)}) and was marked failed by the reconciler; start it again"
        )
        try:
            statuses[key] = storage.write_status(
                status.with_event(Phase.FAILED, message, url="", error_code=STUCK_ERROR_CODE)
            )
        except StatusConflict as e:
            log.info("Not failing %s: it changed since it was read (%s)", key, e)
            continue
        log.warning("Marked %s failed: %s", key, message)
        summary.marked_failed.append(key)
