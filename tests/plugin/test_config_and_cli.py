"""The music plugin's config checked like any tool's, its commands when it is disabled, notes
that say what is true, --quiet, and shell completion."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from musicgen.plugin.smoke import SMOKE_ID

from tests.plugin.helpers import MLX_RAG, subprocess_env

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("args", [("config", "show"), ("models", "list"),
                                  ("music", "generate", "calm"), ("run", "music", "q")])
def test_a_misspelt_key_is_refused_by_every_command(cli, configure, args):
    config = configure('[tools.music]\nmodle = "musicgen-smoke"\n')
    result = cli(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: Invalid config in {config}: 'tools.music.modle' is not a known key (the music "
        "tool's options: input, text, prompt, ")
    assert result.stderr.endswith("Did you mean 'model'?\n")


@pytest.mark.parametrize("args", [("config", "show"), ("music", "generate", "calm")])
def test_a_misspelt_section_is_refused_by_every_command(cli, configure, args):
    config = configure('[tools.musik]\nmodel = "musicgen-smoke"\n')
    result = cli(*args)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: Invalid config in {config}: 'tools.musik' names no registered tool (tools: "
        "answer, music, retrieve; see `mlx-rag plugins list`). Did you mean [tools.music]?\n")


def test_the_music_commands_of_a_disabled_plugin(cli, configure, monkeypatch):
    config = configure('[plugins]\ndisabled = ["musicgen"]\n\n[tools.music]\nduration = 2.0\n')
    assert cli("config", "show").exit_code == 0  # its section may stay
    result = cli("music", "generate", "calm")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "Error: No such command 'music': plugin 'musicgen' adds it, and that plugin is disabled "
        f"by [plugins] disabled in {config}; remove 'musicgen' from that list to enable it.\n")
    configure("")
    monkeypatch.setenv("MLX_RAG_LOAD_PLUGINS", "rag_core")
    result = cli("music", "demo")
    assert result.exit_code == 2
    assert ("plugin 'musicgen' adds it, and that plugin is not listed in "
            "MLX_RAG_LOAD_PLUGINS='rag_core'; add it there, or unset MLX_RAG_LOAD_PLUGINS")\
        in result.stderr


def test_llm_notes_say_what_is_true(cli, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # "auto" looks at the cache only: nothing is fetched
    result = cli("music", "from-text", "-", "--prompt-only", input="A calm night.")
    assert result.exit_code == 0, result.output
    assert "HF_HUB_OFFLINE is set" not in result.stderr
    assert "is not available locally (Model 'mlx-community/Qwen2.5-0.5B-Instruct-4bit' is not " \
           "available: only the local cache was searched and it is not in the local cache" \
        in result.stderr
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = cli("music", "from-text", "-", "--prompt-only", input="A calm night.")
    assert "is not available: HF_HUB_OFFLINE is set and it is not in the local cache" \
        in result.stderr


def test_quiet_keeps_the_result_and_the_untrained_label(cli, out, tmp_path):
    result = cli("--quiet", "music", "generate", "calm", "-m", SMOKE_ID, "-d", "0.2", "-o",
                 out / "q.wav")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith(f"Wrote {out / 'q.wav'}")
    assert "[UNTRAINED smoke checkpoint: noise, not music]" in result.stdout
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "a", "prompt": "calm", "seed": 1}\n')
    result = cli("-q", "music", "batch", jobs, "--out", out, "-m", SMOKE_ID, "-d", "0.2")
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith("Done: 1 of 1 jobs finished")


def complete(home: Path, words: str) -> list[str]:
    """What bash completion offers for the command line ``words`` (the last one partial)."""
    env = subprocess_env(home) | {"_MLX_RAG_COMPLETE": "bash_complete", "COMP_WORDS": words,
                                  "COMP_CWORD": str(len(words.split()) - 1)}
    result = subprocess.run([MLX_RAG], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines()]


def test_shell_completion_knows_core_and_plugin_commands(mlx_rag_home):
    assert complete(mlx_rag_home, "mlx-rag mu") == ["music"]
    assert complete(mlx_rag_home, "mlx-rag music ge") == ["generate"]
    assert "--quantize" in complete(mlx_rag_home, "mlx-rag music generate --q")
    assert complete(mlx_rag_home, "mlx-rag --qu") == ["--quiet"]
    readme = README.read_text()
    for shell in ("bash", "zsh", "fish"):
        assert f"_MLX_RAG_COMPLETE={shell}_source mlx-rag" in readme
