"""docs/cli.md documents every command and every option of ``tessera``: the test walks the
command tree the ``tessera`` script builds (``app.cli.build_cli``: Flask's commands, the
extensions' and Tessera's) and fails for a command without a section of its own in docs/cli.md
(a heading naming it, e.g. ``### `tessera clients create` ``), or for an option or argument of a
command that neither its section nor the introduction of its group's section (options shared by
the group's commands) mentions."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from flask import current_app

from app.factory import init_migrations
from app.cli import build_cli
from app.extensions import db

CLI_DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


@pytest.fixture(scope="module")
def tessera(database_url):
    """The ``tessera`` command around an app of its own, with the migrations attached as the
    script does (``create_cli_app``)."""
    from tests.conftest import make_test_app

    cli_app = make_test_app(database_url)
    init_migrations(cli_app)
    yield build_cli(create_app=lambda: cli_app)
    with cli_app.app_context():
        db.session.remove()
        db.engine.dispose()


def _commands(group: click.Group, ctx: click.Context, path: str):
    """(path, command) for the group and everything under it, depth first."""
    yield path, group
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        if isinstance(command, click.Group):
            yield from _commands(command, click.Context(command, parent=ctx, info_name=name), f"{path} {name}")
        else:
            yield f"{path} {name}", command


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading, text) of every Markdown section: its own text, up to the next heading (of any level)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"#+\s", line)] + [len(lines)]
    return [(lines[start].lstrip("#").strip(), "\n".join(lines[start + 1:end]))
            for start, end in zip(starts, starts[1:])]


def _words(command: click.Command) -> list[str]:
    """What a reader must find: every flag of every option (``--subscribe`` and ``--no-subscribe``,
    ``-d`` and ``--directory``) and every argument's name in capitals (``CLIENT_ID``)."""
    words = []
    for param in command.params:
        if getattr(param, "hidden", False) or param.name == "help":
            continue
        if isinstance(param, click.Argument):
            words.append(param.name.upper())
        else:
            words.extend(param.opts + param.secondary_opts)
    return words


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def test_every_command_and_option_is_in_docs_cli_md(tessera):
    sections = _sections(CLI_DOC.read_text(encoding="utf-8"))
    missing = []
    paths = []
    # Closed at the end: looking up the app's commands pushes an app context onto it.
    with tessera.make_context("tessera", [], resilient_parsing=True) as ctx:
        commands = list(_commands(tessera, ctx, "tessera"))
    assert not current_app, "the walk left an app context pushed (later tests would run in the wrong app)"
    for path, command in commands:
        paths.append(path)
        own = [text for title, text in sections if f"`{path}`" in title]
        if not own:
            missing.append(f"{path}: no section (a heading naming `{path}`)")
            continue
        group = path.rpartition(" ")[0]
        shared = [text for title, text in sections if group and f"`{group}`" in title]
        missing += [f"{path}: {word}" for word in _words(command)
                    if not any(_mentions(text, word) for text in own + shared)]
    assert {"tessera clients create", "tessera db upgrade", "tessera routes", "tessera limiter clear"} <= set(paths)
    assert not missing, "docs/cli.md does not document:\n" + "\n".join(missing)
