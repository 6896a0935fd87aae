"""What every module of the ``tessera`` command shares: JSON output for ``--json``, failing with a
message (as JSON under ``--json``), the one place a service's refusal (a ``TesseraError``) becomes
the command's error, and the check that the database is migrated before a command uses it.

Kernel layer: imports nothing from ``app`` but ``app.errors``, so every domain's ``cli.py`` can use
it without importing ``app.cli`` (the shell, which imports the factory and so every domain)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, NoReturn, TypeVar

import click
from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from app.errors import TesseraError

F = TypeVar("F", bound=Callable[..., Any])


#: ``--json`` of every command that prints data (the command's ``as_json`` argument).
json_option = click.option("--json", "as_json", is_flag=True)


def _json_text(data: Any, indent: int | None) -> str:
    return json.dumps(data, indent=indent, sort_keys=True, default=str, ensure_ascii=False)


def _echo_utf8(line: str, err: bool = False) -> None:
    """Print a line as UTF-8 whatever the terminal's locale: Chinese stays readable."""
    click.echo((line + "\n").encode("utf-8"), nl=False, err=err)


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON for scripts: indented by 2, keys sorted, non-ASCII characters as
    themselves (UTF-8), and any value JSON has no type for (datetimes, …) as its ``str()``."""
    _echo_utf8(_json_text(data, 2))


def echo_json_lines(rows: list[Any]) -> None:
    """Print one compact JSON object per line (JSON Lines), like ``echo_json``."""
    for row in rows:
        _echo_utf8(_json_text(row, None))


class CommandFailed(click.ClickException):
    """A refused command: ``Error: <message>`` on standard error, or ``{"error": "<message>"}``
    there when the command was given ``--json``; exit status 1."""

    def __init__(self, message: str, as_json: bool):
        super().__init__(message)
        self.as_json = as_json

    def show(self, file=None) -> None:  # noqa: ARG002 (click's signature)
        if self.as_json:
            _echo_utf8(_json_text({"error": self.format_message()}, None), err=True)
        else:
            super().show()


def _json_requested() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.params.get("as_json"))


def fail(message: str) -> NoReturn:
    """Stop the command with exit status 1: ``Error: <message>`` on standard error, or
    ``{"error": "<message>"}`` (one line of JSON, on standard error) under ``--json``."""
    raise CommandFailed(message, _json_requested()) from None


def reports_errors(command: F) -> F:
    """Decorate a command's function (directly above its ``def``, under click's decorators): a
    ``TesseraError`` it raises is reported as ``Error: <its detail>`` with exit status 1, through
    ``fail``, instead of a traceback. Other exceptions pass through unchanged."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TesseraError as exc:
            fail(exc.detail)

    return run  # type: ignore[return-value]


def database_problem(url: str, engine: Engine, tables: set[str]) -> str | None:
    """Why the database cannot serve a command, or None: a SQLite file that does not exist (it is
    not created here), a database that cannot be reached, or one without every table of the
    hub's ``tables`` (``tessera db upgrade`` never ran, or not since an upgrade of Tessera)."""
    where = _describe(url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:" and not Path(url[len("sqlite:///"):]).exists():
        return _not_migrated(where)
    try:
        with engine.connect() as conn:
            missing = tables - set(inspect(conn).get_table_names())
    except SQLAlchemyError as exc:
        return f"cannot reach the database at {where}: {str(getattr(exc, 'orig', None) or exc).strip()}"
    return _not_migrated(where) if missing else None


def _not_migrated(where: str) -> str:
    return (f"the database at {where} is not migrated: run `tessera db upgrade` "
            "or set TESSERA_DATABASE_URL")


def _describe(url: str) -> str:
    """The database's URL without its password."""
    return make_url(url).render_as_string(hide_password=True)
