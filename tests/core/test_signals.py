"""SIGTERM and SIGHUP stop any mlx-rag command like Ctrl-C: a clean message, 128 + signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

# A command added to the root group signals its own process, then would go on working.
SCRIPT = """
import os, signal, sys, time
import click
from rag_core.cli import cli, main

@cli.command("signal-self")
@click.argument("name")
@click.argument("then_sleep", type=float)
def signal_self(name, then_sleep):
    os.kill(os.getpid(), getattr(signal, name))
    time.sleep(then_sleep)
    click.echo("still running")

sys.argv = ["mlx-rag", "signal-self", *sys.argv[1:]]
main()
"""


def run_script(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLX_RAG_DEBUG"}
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,
                          env=env, timeout=60, **kwargs)  # fmt: skip


@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_a_signal_stops_any_command_with_128_plus_its_number(name, code):
    result = run_script(name, "10")
    assert result.returncode == code, result.stderr
    expected = "Aborted.\n" if name == "SIGINT" else f"Aborted: {name} received.\n"
    assert result.stderr == expected and result.stdout == ""


def test_a_signal_ignored_from_the_start_stays_ignored():
    """`nohup mlx-rag ...` keeps running when the terminal goes away."""
    result = run_script("SIGHUP", "0.2",
                        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "still running\n"


def test_the_handlers_are_restored_after_the_command():
    from click.testing import CliRunner
    from rag_core.cli import cli

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    assert CliRunner().invoke(cli, ["config", "show"]).exit_code == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before
