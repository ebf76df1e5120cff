"""The ``mlx-rag`` command line: core commands, retrieval commands and plugins' commands.

Commands stay thin and raise RagError (or ValueError) for bad input; the group turns those into
``Error: ...`` on stderr with exit code 1, never a traceback. Ctrl-C, SIGTERM and SIGHUP all
raise KeyboardInterrupt in every command (rag_core.cli.signals): a command may report what it
was doing; otherwise the group prints ``Aborted.``; the exit code is 128 + the signal number.
``MLX_RAG_TIMINGS=1`` prints where the command's time went on stderr (rag_core.timings).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from rag_core import timings
from rag_core.cli.doctor import version_option
from rag_core.cli.output import QUIET_KEY
from rag_core.cli.process import end_process, pin_rank_gpu
from rag_core.cli.signals import exit_code, signal_number, terminate_as_interrupt
from rag_core.config import load_config, set_config
from rag_core.errors import RagError
from rag_core.plugins import env_flag, get_host, reset
from rag_core.timings import mark_phase

DEBUG_ENV = "MLX_RAG_DEBUG"


class UserError(click.ClickException):
    """A RagError/ValueError on its way to the terminal as ``Error: message``."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn exceptions into clean CLI exits (set MLX_RAG_DEBUG=1 to see tracebacks)."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except KeyboardInterrupt as exc:
        signum = signal_number(exc)
        click.echo("Aborted." if signum == signal.SIGINT else
                   f"Aborted: {signal.Signals(signum).name} received.", err=True)
        raise click.exceptions.Exit(exit_code(exc)) from None
    except RagError as exc:
        if env_flag(DEBUG_ENV):
            raise
        raise UserError(str(exc), getattr(exc, "exit_code", 1)) from None
    except ValueError as exc:
        if env_flag(DEBUG_ENV):
            raise
        raise UserError(str(exc)) from None
    except Exception as exc:
        if env_flag(DEBUG_ENV):
            raise
        raise UserError(f"{type(exc).__name__}: {exc} (this is a bug or an unexpected "
                        f"failure; set {DEBUG_ENV}=1 to see the traceback)") from None


class RagGroup(click.Group):
    """The root group: adds the enabled plugins' commands and handles errors for all commands."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if timings.timeline():  # not this process's first command (tests): time this one
            timings.reset_timeline()
        mark_phase("start-up")
        reset()  # each invocation sees the current environment and files
        try:
            with terminate_as_interrupt():
                return super().main(*args, **kwargs)
        finally:
            if env_flag(timings.TIMINGS_ENV):  # MLX_RAG_TIMINGS=1: where the time went
                print(timings.summary(), file=sys.stderr, flush=True)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with user_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with user_errors():
            return super().invoke(ctx)

    def plugin_commands(self) -> dict[str, click.Command]:
        """The enabled plugins' commands; one that reuses a core command's name is skipped."""
        host = get_host()
        commands = {}
        for name, command in host.commands.items():
            if name in self.commands or name in RETRIEVAL_COMMANDS:
                message = (f"Warning: plugin '{host.command_owners[name]}' adds a command "
                           f"'{name}', which mlx-rag already has; it was skipped.")
                if message not in host.warnings:
                    host.warn(message)
                continue
            commands[name] = command
        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        _add_retrieval_commands(self)
        try:
            extra = self.plugin_commands()
        except RagError as exc:  # e.g. a bad config: still show the core commands
            click.echo(f"Warning: plugin commands are not shown: {exc}", err=True)
            extra = {}
        return sorted({*self.commands, *extra})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in RETRIEVAL_COMMANDS:
            _add_retrieval_commands(self)
        return self.commands.get(name) or self.plugin_commands().get(name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        """As click's, but an unknown command that a disabled plugin adds says so and how to
        enable the plugin."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            name = args[0] if args else ""
            owner = None if name.startswith("-") else get_host().disabled_command_owner(name)
            if owner is None:
                raise
            raise click.UsageError(f"No such command '{name}': plugin '{owner.name}' adds it, "
                                   f"and that plugin is {owner.error}.", ctx) from None


def _set_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[QUIET_KEY] = True
    return value


def _use_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        with user_errors():
            set_config(load_config(value))
    return value


@click.group("mlx-rag", cls=RagGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", metavar="FILE", is_eager=True, expose_value=False,
              callback=_use_config,
              help="Config file (default: $MLX_RAG_CONFIG, ./mlx-rag.toml, then the user "
                   "config dir).")
@click.option("--quiet", "-q", is_flag=True, expose_value=False, callback=_set_quiet,
              help="No notes or progress bars on stderr (results, warnings and errors stay; "
                   "MLX_RAG_QUIET=1 does the same).")
@version_option
def cli() -> None:
    """Retrieval-augmented generation on MLX, extended by plugins (e.g. music generation)."""


def _add_core_commands() -> None:
    from rag_core.cli.config import config_group
    from rag_core.cli.doctor import doctor_command
    from rag_core.cli.models import models_group
    from rag_core.cli.plugins import plugins_group
    from rag_core.cli.run import run_command
    from rag_core.cli.serve import serve_command

    for command in (config_group, doctor_command, models_group, plugins_group, run_command,
                    serve_command):
        cli.add_command(command)


def _add_retrieval_commands(group: click.Group) -> None:
    """Add rag_core.cli.retrieval's commands (RETRIEVAL_COMMANDS) to ``group``, once: on first
    use, as they import the store and NumPy that other commands (a track) do without."""
    global _retrieval_added
    if _retrieval_added:
        return
    _retrieval_added = True
    try:
        from rag_core.cli import retrieval

        retrieval.add_commands(group)
    except Exception as exc:  # a broken module must not take the other commands down
        if env_flag("MLX_RAG_STRICT_PLUGINS"):
            raise
        print(f"Warning: the retrieval commands are unavailable: {type(exc).__name__}: {exc}",
              file=sys.stderr)


RETRIEVAL_COMMANDS = ("ask", "ingest", "search", "store")  # what retrieval.add_commands adds
_retrieval_added = False


_add_core_commands()


def main() -> NoReturn:
    """Console-script entry point: pins a launched rank's GPU (``pin_rank_gpu``), runs the
    command, then ends the process (``end_process``)."""
    pin_rank_gpu()
    try:
        cli.main(prog_name="mlx-rag")
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    end_process(code)
