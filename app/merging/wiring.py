"""The merging domain's ``init_app``: the merge pages, the ``merges`` commands, the merge flow's answer to a phone binding
that met an account with data (``NeedsMerge``), the merge lock as a write guard of the account core
(app.accounts.locking), and the job that resumes merges whose process died."""

from __future__ import annotations

from flask import Flask

from app.accounts.locking import register_write_guard
from app.errors import NeedsMerge
from app.merging import routes
from app.merging.cli import merges_group
from app.merging.requests import ensure_not_locked
from app.merging.run import resume_due_merges
from app.registries import registries


def init_app(app: Flask) -> None:
    app.register_blueprint(routes.bp)
    app.cli.add_command(merges_group)
    app.register_error_handler(NeedsMerge, routes.offer_merge)
    # The core asks before every write and login: refused while a merge runs.
    register_write_guard(ensure_not_locked)
    registries(app).add_periodic_job("resume-due-merges", resume_due_merges)
