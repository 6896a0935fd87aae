"""The worker: ``tessera worker`` (and the in-process thread of ``make run``) runs rounds of the
periodic jobs the domains registered (app/registries.py: sessions that timed out, identities whose
cooling-off ended, interrupted merges, housekeeping…) and then delivers what the outbox holds
(app/events/outbox.py), each delivery a trace of its own when tracing is on (app/tracing.py). The
shell: it imports the outbox and the registries, never a feature."""

from __future__ import annotations

import logging
import threading

from app.events.outbox import claim_due, deliver
from app.registries import registries
from app.tracing import span

log = logging.getLogger(__name__)


def run_once(limit: int = 20) -> int:
    """One round: every registered periodic job, in registration order, then the deliveries that
    are due. Returns the number of deliveries attempted."""
    for job in registries().periodic_jobs:
        job.run()
    events = claim_due(limit)
    for event in events:
        with span("outbox deliver", {"tessera.outbox.event_id": event.id, "tessera.outbox.kind": event.kind}):
            deliver(event)
    return len(events)


def run_worker(app, stop: threading.Event, interval: float = 1.0) -> None:
    """Run rounds until ``stop`` is set, polling every ``interval`` seconds when idle."""
    while not stop.is_set():
        try:
            with app.app_context():
                busy = run_once()
        except Exception:  # keep the worker alive through database hiccups; the row stays pending
            log.exception("worker round failed")
            busy = 0
        if not busy:
            stop.wait(interval)


def start_inprocess_worker(app) -> threading.Thread:
    """A worker thread inside the web process (for `make run`); production runs `tessera worker`."""
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, args=(app, stop), name="tessera-outbox", daemon=True)
    thread.start()
    app.extensions["tessera_outbox_worker"] = (thread, stop)
    return thread
