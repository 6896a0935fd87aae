"""gunicorn entry point (``tessera serve`` runs ``gunicorn app.wsgi:app``). Part of the package, so
the server starts from any working directory."""

from app.factory import create_app
from app.worker import start_inprocess_worker

app = create_app()

if app.config["TESSERA_INPROCESS_WORKER"]:
    # `make run`: deliver outbox events from a thread of each web process (production runs
    # `tessera worker` processes instead).
    start_inprocess_worker(app)
