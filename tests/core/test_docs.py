"""docs/plugins.md: its complete example plugin installs, loads and behaves as the page shows."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import rag_core.plugins
from click.testing import CliRunner
from rag_core.cli import cli
from rag_core.config import tomllib

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def examples() -> dict[str, str]:
    """The fenced blocks marked ``<!-- example: NAME -->``, by NAME."""
    found = re.findall(r"<!-- example: (\S+) -->\n```\w+\n(.*?)```", DOC.read_text(), re.S)
    return dict(found)


def console_sessions() -> list[tuple[list[str], str]]:
    """(argv, expected output) for each ``$ mlx-rag ...`` in the page's console blocks."""
    sessions = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), re.S):
        for command in re.split(r"^\$ ", block, flags=re.M)[1:]:
            line, _, output = command.partition("\n")
            sessions.append((shlex.split(line)[1:], output))
    return sessions


def as_pattern(expected: str) -> str:
    """A regex for documented output: '...' lines stand for any lines; versions and timings vary."""
    parts = []
    for line in expected.splitlines():
        if line.strip() == "...":
            parts.append(r"(?:.*\n)*?")
            continue
        pattern = re.escape(line)
        pattern = re.sub(r"\d+\\\.\d+\\\.\d+", r"\\S+", pattern)  # versions
        pattern = re.sub(r"\d+\\\.\d+\\ s$", r"\\d+\\.\\d+ s", pattern)  # step timings
        parts.append(pattern + r"\n")
    return "".join(parts)


@pytest.fixture
def wordstats(fake_plugins, mlx_rag_config, monkeypatch):
    blocks = examples()
    project = tomllib.loads(blocks["pyproject.toml"])["project"]
    fake_plugins.install(project["name"], project["version"],
                         project["entry-points"]["mlx_rag"],
                         {"mlx_rag_wordstats": blocks["mlx_rag_wordstats.py"]})
    monkeypatch.setattr(rag_core.plugins, "BUILTIN_PLUGINS", {"rag_core": "rag_core.builtin"})
    mlx_rag_config.write_text(blocks["mlx-rag.toml"])


def test_page_has_the_example_blocks():
    assert {"mlx_rag_wordstats.py", "pyproject.toml", "mlx-rag.toml"} <= set(examples())
    assert len(console_sessions()) == 3


def test_example_plugin_works_as_documented(wordstats):
    runner = CliRunner(catch_exceptions=False)
    for argv, expected in console_sessions():
        result = runner.invoke(cli, argv)
        assert result.exit_code == 0, result.output
        assert re.fullmatch(as_pattern(expected), result.stdout), (argv, result.stdout)


def test_example_plugin_through_the_library(wordstats):
    record = rag_core.get_host().records["wordstats"]
    assert (record.status, record.version) == ("enabled", "0.1.0")
    assert rag_core.get_registry().spec("word-weights").plugin == "wordstats"
    registry = rag_core.get_registry()
    assert not registry.is_loaded("example/word-weights")
    state = rag_core.run_pipeline("stats", "three short words")
    assert state.outputs == {"wordstats": {"input": "question", "words": 3, "mean_length": 5.0,
                                           "score": 6.5}}
    assert registry.is_loaded("example/word-weights")


def test_example_plugin_rejects_bad_input(wordstats):
    with pytest.raises(rag_core.PipelineError, match="input must be"):
        rag_core.run_pipeline([{"tool": "wordstats", "input": "nothing"}], "q")
    with pytest.raises(rag_core.PipelineError, match="no text to measure"):
        rag_core.run_pipeline([{"tool": "wordstats", "input": "answer"}], "q")
