"""The music step in configured pipelines, and the plugin toggle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rag_core

from tests.plugin.helpers import files_in, read_audio, toml

QUESTION = "What music would suit a foggy night in the old harbour?"


def test_configured_pipeline_retrieve_then_music(cli, configure, tiny, corpus_store, out):
    configure(f"""
[pipelines.song]
description = "passages to music"
[[pipelines.song.steps]]
tool = "retrieve"
k = 2
store = {toml(corpus_store)}
[[pipelines.song.steps]]
tool = "music"
input = "retrieved"
model = {toml(tiny)}
duration = 0.3
seed = 4
output = {toml(out / "song.wav")}
""")
    result = cli("run", "song", QUESTION)
    assert result.exit_code == 0, result.output
    assert "[2] music (tool music, plugin musicgen)" in result.stdout
    assert f"    path: {out / 'song.wav'}" in result.stdout
    assert read_audio(out / "song.wav")[1] == 800
    sidecar = json.loads((out / "song.wav.json").read_text())
    assert sidecar["prompt_source"]["input"] == "retrieved" and sidecar["seed"] == 4
    assert len(sidecar["prompt_source"]["chunk_ids"]) == 2
    assert Path(sidecar["prompt_source"]["sources"][0]).name == "harbour-at-night.md"
    result = cli("run", "song", QUESTION, "--json")
    assert result.exit_code == 1 and "song.wav already exists" in result.stderr


def test_default_music_pipeline_with_tools_music_config(cli, configure, tiny, corpus_store, out):
    configure(f"""
[store]
path = {toml(corpus_store)}
[tools.music]
model = {toml(tiny)}
duration = 0.2
output = "{out}/"
""")
    result = cli("run", "music", "Which songs have an oud?", "--json")
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["steps"]
    assert [s["name"] for s in steps] == ["retrieve", "music"]
    music = steps[1]["result"]
    assert music["model"] == str(tiny) and music["duration"] == 0.2
    assert Path(music["path"]).parent == out and music["prompt_source"]["input"] == "retrieved"


def test_retrieve_answer_music_through_the_python_api(configure, tiny, tiny_llm, corpus_store,
                                                       out):
    configure(f"[llm]\nmodel = {toml(tiny_llm)}\n")
    steps = [
        {"tool": "retrieve", "k": 2, "store": str(corpus_store)},
        {"tool": "answer", "max_tokens": 12},
        {"tool": "music", "input": "answer", "prompt_from": "extract", "model": str(tiny),
         "duration": 0.2, "seed": 0, "output": str(out / "a.wav")},
    ]  # fmt: skip
    state = rag_core.run_pipeline(steps, QUESTION)
    assert state.answer.startswith("[1]") and list(state.outputs) == ["retrieve", "answer", "music"]
    music = state.outputs["music"]
    assert music["prompt_source"]["input"] == "answer" and music["prompt_source"]["chunk_ids"] == []
    assert music["prompt"] == "instrumental piece with piano and strings, medium tempo"
    assert files_in(out) == ["a.wav", "a.wav.json"]


def test_bad_music_options_in_a_pipeline_fail_clearly(cli, configure, tiny, corpus_store, out):
    configure(f"""
[store]
path = {toml(corpus_store)}
[pipelines.typo]
steps = [{{tool = "retrieve"}}, {{tool = "music", lenght = 3}}]
[[pipelines.negative.steps]]
tool = "retrieve"
[[pipelines.negative.steps]]
tool = "music"
model = {toml(tiny)}
duration = -1
output = "{out}/"
""")
    result = cli("run", "typo", QUESTION)
    assert result.exit_code == 1
    assert "tool 'music' (plugin 'musicgen') cannot take these options" in result.stderr
    assert "It accepts: input, text, prompt, prompt_from, llm, model, duration" in result.stderr
    result = cli("run", "negative", QUESTION)
    assert result.exit_code == 1 and "duration must be > 0 seconds" in result.stderr
    assert "Traceback" not in result.output and files_in(out) == []


PIPELINE = """
[store]
path = "{store}"
[pipelines.song]
steps = [{{tool = "retrieve", k = 4}}, {{tool = "answer"}}, {{tool = "music", input = "answer"}}]
"""


@pytest.mark.parametrize("how", ["disabled-list", "enabled-false", "env"])
def test_disabled_plugin_hides_the_command_and_fails_the_pipeline_at_once(
    how, cli, configure, monkeypatch, tmp_path
):
    store = tmp_path / "no-store-yet.sqlite3"  # a retrieve step that ran would fail on this
    config = PIPELINE.format(store=store)
    if how == "disabled-list":
        config = '[plugins]\ndisabled = ["musicgen"]\n' + config
    elif how == "enabled-false":
        config += "[plugins.musicgen]\nenabled = false\n"
    else:
        monkeypatch.setenv("MLX_RAG_LOAD_PLUGINS", "rag_core")
    configure(config)
    help_text = cli("--help").stdout
    assert "music " not in help_text and "ingest" in help_text
    result = cli("music", "generate", "calm")
    assert result.exit_code == 2 and "No such command 'music'" in result.stderr
    result = cli("run", "song", QUESTION)
    assert result.exit_code == 1
    assert "Tool 'music' is not registered" in result.stderr
    assert "These plugins are disabled: musicgen" in result.stderr
    hint = {"disabled-list": "remove 'musicgen' from that list",
            "enabled-false": "set it to true", "env": "MLX_RAG_LOAD_PLUGINS"}[how]
    assert hint in result.stderr and not store.exists()  # failed before the retrieve step
    listed = {r["name"]: r for r in json.loads(cli("plugins", "list", "--json").stdout)}
    assert listed["musicgen"]["status"] == "disabled" and listed["musicgen"]["tools"] == []
    with pytest.raises(rag_core.ModelNotFoundError, match="These plugins are disabled: musicgen"):
        rag_core.get_registry().spec("facebook/musicgen-small")
