"""Running ``tessera`` commands in tests through the app's own command line (Flask's CLI runner)."""

from __future__ import annotations

import json


def cli(app, *args: str):
    """The result of ``tessera ARGS`` against ``app``."""
    return app.test_cli_runner().invoke(args=list(args))


def cli_json(app, *args: str):
    """The parsed ``--json`` output of a command that must succeed."""
    result = cli(app, *args, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.output)


def cli_refused(app, *args: str) -> str:
    """The message of a command that must be refused: exit status 1, ``Error: …``, no traceback."""
    result = cli(app, *args)
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    return result.output
