"""MLX_RAG_TIMINGS: the phases a command marks, and the CLI's end of the process."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from rag_core import mark_phase
from rag_core.cli import cli
from rag_core.timings import MAX_PHASES, process_age, reset_timeline, summary, timeline


def test_phases_follow_each_other_and_repeated_names_add_up():
    reset_timeline()
    time.sleep(0.02)
    assert mark_phase("a") >= 0.02
    mark_phase("b")
    time.sleep(0.01)
    mark_phase("a")
    phases = [(name, seconds) for name, seconds in timeline()]
    assert [name for name, _ in phases] == ["a", "b", "a"]
    assert phases[0][1] >= 0.02 and phases[2][1] >= 0.01
    match = re.fullmatch(r"Timings: a ([\d.]+) s, b ([\d.]+) s; ([\d.]+) s since the process "
                         r"started", summary())  # fmt: skip
    assert match, summary()
    assert float(match[1]) >= 0.03 and float(match[3]) >= float(match[1])


def test_each_thread_has_its_own_phases():
    reset_timeline()
    mark_phase("main")
    seen = []

    def work():
        reset_timeline()
        mark_phase("worker")
        seen.extend(name for name, _ in timeline())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == ["worker"]
    assert [name for name, _ in timeline()] == ["main"]


def test_a_long_lived_thread_keeps_only_its_latest_phases():
    reset_timeline()
    for i in range(MAX_PHASES + 10):
        mark_phase(f"p{i}")
    phases = timeline()
    assert len(phases) == MAX_PHASES and phases[-1][0] == f"p{MAX_PHASES + 9}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_the_process_age_comes_from_the_kernel():
    started = time.perf_counter()
    code = "import time; from rag_core import timings as t; time.sleep(0.3); print(t.process_age())"
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout)  # fmt: skip
    assert 0.25 <= age <= time.perf_counter() - started + 0.02
    assert process_age() > 0


def test_the_cli_prints_its_phases_only_when_asked(monkeypatch):
    runner = CliRunner()
    monkeypatch.delenv("MLX_RAG_TIMINGS", raising=False)
    assert "Timings:" not in runner.invoke(cli, ["plugins", "list"]).stderr
    monkeypatch.setenv("MLX_RAG_TIMINGS", "1")
    result = runner.invoke(cli, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    line = result.stderr.splitlines()[-1]
    assert line.startswith("Timings: start-up ") and ", plugins " in line
    assert line.endswith(" s since the process started")


END = """
import atexit, sys, threading, time
atexit.register(print, "exit handler ran")
class Finalized:
    def __del__(self):
        print("finalized")
kept = Finalized()
if "--worker" in sys.argv:
    sys.argv.remove("--worker")
    threading.Thread(target=lambda: (time.sleep(0.3), print("worker done"))).start()
sys.argv[0] = "mlx-rag"
from rag_core.cli import main
main()
"""


@pytest.mark.parametrize("args, code", [(["--version"], 0), (["no-such-command"], 2)])
def test_the_cli_ends_its_process_without_finalization(args, code):
    done = subprocess.run([sys.executable, "-c", END, *args], capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    assert "exit handler ran" in done.stdout and "finalized" not in done.stdout
    assert ("mlx-rag, version" in done.stdout) == (code == 0)


def test_the_cli_waits_for_a_working_thread_as_python_does():
    done = subprocess.run([sys.executable, "-c", END, "--worker", "--version"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "worker done" in done.stdout and "exit handler ran" in done.stdout
