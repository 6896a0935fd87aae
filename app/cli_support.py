"""What every module of the ``tessera`` command shares: JSON output for ``--json``, failing with a
message, and the one place a service's refusal (a ``TesseraError``) becomes the command's error.

Kernel layer: imports nothing from ``app`` but ``app.errors``, so every domain's ``cli.py`` can use
it without importing ``app.cli`` (the shell, which imports the factory and so every domain)."""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, NoReturn, TypeVar

import click

from app.errors import TesseraError

F = TypeVar("F", bound=Callable[..., Any])


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON for scripts: indented by 2, keys sorted, and any value JSON has no
    type for (datetimes, …) as its ``str()``."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def fail(message: str) -> NoReturn:
    """Stop the command: click prints ``Error: <message>`` on standard error and exits with status 1."""
    raise click.ClickException(message) from None


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
