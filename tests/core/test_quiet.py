"""`mlx-rag --quiet` (or MLX_RAG_QUIET=1): notes off, results, warnings and errors still shown."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from rag_core.cli import cli

NOTES_PLUGIN = """
import click
from rag_core import hookimpl
from rag_core import note

@hookimpl
def register_commands(cli):
    @cli.command("chatty")
    def chatty():
        note("Loading something ...")
        click.echo("Warning: a warning stays", err=True)
        click.echo("the result")
"""


def run(*args: str, **kwargs):
    return CliRunner().invoke(cli, list(args), **kwargs)


def test_notes_go_to_stderr_by_default(fake_plugins):
    fake_plugins.add("chatty", NOTES_PLUGIN)
    result = run("chatty")
    assert result.stdout == "the result\n"
    assert result.stderr == "Loading something ...\nWarning: a warning stays\n"


@pytest.mark.parametrize("how", ["--quiet", "-q", "env"])
def test_quiet_silences_the_notes_only(fake_plugins, monkeypatch, how):
    fake_plugins.add("chatty", NOTES_PLUGIN)
    if how == "env":
        monkeypatch.setenv("MLX_RAG_QUIET", "1")
        result = run("chatty")
    else:
        result = run(how, "chatty")
    assert result.exit_code == 0, result.output
    assert result.stdout == "the result\n"
    assert result.stderr == "Warning: a warning stays\n"


def test_a_note_prints_above_a_showing_progress_bar_and_not_when_quiet(capsys, monkeypatch):
    from rag_core import note, progress_bar

    with progress_bar("work", enabled=True, unit="step") as report:
        report(1, 4)
        note("halfway there")
        report(4, 4)
    err = capsys.readouterr().err
    assert "halfway there\n" in err and "work" in err  # the line, and the bar around it
    monkeypatch.setenv("MLX_RAG_QUIET", "1")
    with progress_bar("work") as report:
        report(1, 4)
        note("unseen")
    assert capsys.readouterr().err == ""
