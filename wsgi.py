"""gunicorn entry point: ``gunicorn wsgi:app``."""

from app import create_app
from app.events.service import start_inprocess_worker

app = create_app()

if app.config["TESSERA_INPROCESS_WORKER"]:
    # `make run`: deliver outbox events from a thread of each web process (production runs
    # `tessera worker` processes instead).
    start_inprocess_worker(app)
