"""Config lookup order, defaults, sources, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from rag_core import ConfigError, PipelineError, load_config
from rag_core.config import GIB, Config, find_config_file, user_config_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def budget_file(path: Path, gb: float) -> Path:
    return write(path, f"[models]\nmemory_budget_gb = {gb}\n")


def test_lookup_order(tmp_path, monkeypatch, mlx_rag_home):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLX_RAG_CONFIG")
    user_config_path().unlink()
    assert load_config().path is None and load_config().memory_budget_bytes is None

    user = budget_file(user_config_path(), 1)
    assert user == mlx_rag_home / "config.toml"
    assert (load_config().path, load_config().origin) == (user, "the user config dir")

    local = budget_file(tmp_path / "mlx-rag.toml", 2)
    assert load_config().path == local and load_config().memory_budget_bytes == 2 * GIB

    env = budget_file(tmp_path / "env.toml", 3)
    monkeypatch.setenv("MLX_RAG_CONFIG", str(env))
    assert load_config().path == env and load_config().origin == "MLX_RAG_CONFIG"

    given = budget_file(tmp_path / "given.toml", 4)
    config = load_config(given)
    assert (config.path, config.origin, config.memory_budget_bytes) == (given, "--config", 4 * GIB)


def test_missing_explicit_files_are_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"nope\.toml \(from --config\) does not exist"):
        load_config(tmp_path / "nope.toml")
    monkeypatch.setenv("MLX_RAG_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match=r"\(from MLX_RAG_CONFIG\) is a directory"):
        find_config_file()


def test_defaults_and_sources(mlx_rag_config, mlx_rag_home):
    write(mlx_rag_config, '[llm]\nmodel = "org/tiny-llm"\n\n[tools.retrieve]\nk = 8\n')
    config = load_config()
    assert config.get("llm.model") == "org/tiny-llm"
    assert config.source("llm.model") == str(mlx_rag_config)
    assert config.get("embedding.model") == "sentence-transformers/all-MiniLM-L6-v2"
    assert config.source("embedding.model") == "default"
    assert config.tool_options("retrieve") == {"k": 8} and config.tool_options("music") == {}
    assert config.source("tools.retrieve.k") == str(mlx_rag_config)
    assert config.store_path == mlx_rag_home / "store.sqlite3"
    assert set(config.pipelines) >= {"ask", "music"}
    assert config.pipeline_steps("ask") == [{"tool": "retrieve"}, {"tool": "answer"}]


def test_relative_store_path_is_relative_to_the_config_file(tmp_path):
    config = Config.from_toml(write(tmp_path / "cfg" / "c.toml", '[store]\npath = "data/s.db"\n'))
    assert config.store_path == tmp_path / "cfg" / "data" / "s.db"


def test_pipelines_replace_defaults_by_name(mlx_rag_config):
    write(mlx_rag_config, '[pipelines.ask]\nsteps = [{tool = "answer", max_tokens = 5}]\n'
                          '[pipelines.mine]\ndescription = "x"\nsteps = [{tool = "echo"}]\n')
    config = load_config()
    assert config.pipeline_steps("ask") == [{"tool": "answer", "max_tokens": 5}]
    assert config.pipeline_steps("mine") == [{"tool": "echo"}]
    with pytest.raises(PipelineError, match=r"No pipeline named 'other' \(configured: ask, mine"):
        config.pipeline_steps("other")


def test_plugin_toggles(mlx_rag_config):
    write(mlx_rag_config, '[plugins]\ndisabled = ["a"]\n[plugins.b]\nenabled = false\n'
                          "[plugins.c]\nenabled = true\n")
    config = load_config()
    assert "[plugins] disabled" in config.disabled_by("a")
    assert "[plugins.b] enabled = false" in config.disabled_by("b")
    assert config.disabled_by("c") is None and config.disabled_by("d") is None


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[modles]\n", "'modles'", "Did you mean 'models'"),
        ("[models]\nmemory_budget = 4\n", "'models.memory_budget'", "memory_budget_gb"),
        ('[models]\nmemory_budget_gb = "lots"\n', "'models.memory_budget_gb'", "must be a number"),
        ("[models]\nmemory_budget_gb = -1\n", "'models.memory_budget_gb'", "must be >= 0"),
        ("[models]\nmemory_budget_gb = true\n", "'models.memory_budget_gb'", "a boolean"),
        ('[store]\npath = ""\n', "'store.path'", "must not be empty"),
        ("[llm]\nmodel = 3\n", "'llm.model'", "must be a string"),
        ('[plugins]\ndisabled = "musicgen"\n', "'plugins.disabled'", "an array of strings"),
        ("[plugins]\nmusicgen = false\n", "'plugins.musicgen'", "[plugins.musicgen] enabled"),
        ('[plugins.x]\nenabled = "no"\n', "'plugins.x.enabled'", "true or false"),
        ("[plugins.x]\nenable = false\n", "'plugins.x.enable'", "Did you mean 'enabled'"),
        ('[plugins]\ndisabled = ["x"]\n[plugins.x]\nenabled = true\n', "'plugins.x'",
         "keep one of the two"),
        ("tools = 3\n", "'tools'", "must be a table"),
        ("[tools]\nmusic = 3\n", "'tools.music'", "must be a table"),
        ("[pipelines.p]\n", "'pipelines.p.steps'", "non-empty array of steps"),
        ("[pipelines.p]\nsteps = []\n", "'pipelines.p.steps'", "non-empty array"),
        ('[pipelines.p]\nsteps = ["retrieve"]\n', "'pipelines.p.steps'", "step 1 must be a table"),
        ("[pipelines.p]\nsteps = [{k = 3}]\n", "'pipelines.p.steps'", "step 1 must name its tool"),
        ('[pipelines.p]\nsteps = [{tool = "a"}]\nstep = 1\n', "'pipelines.p.step'",
         "Did you mean 'steps'"),
    ],
)
def test_bad_values_name_the_file_and_the_key(mlx_rag_config, text, key, problem):
    write(mlx_rag_config, text)
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert str(mlx_rag_config) in message and key in message and problem in message


def test_invalid_toml_names_the_file_and_line(mlx_rag_config):
    write(mlx_rag_config, "[models]\nmemory_budget_gb = = 3\n")
    with pytest.raises(ConfigError, match=r"config\.toml: not valid TOML.*line 2"):
        load_config()


def test_entries_cover_every_value(mlx_rag_config):
    write(mlx_rag_config, "[tools.music]\nduration = 4.0\n")
    rows = {(".".join(table), key): source for table, key, _, source in load_config().entries()}
    assert rows[("tools.music", "duration")] == str(mlx_rag_config)
    assert rows[("models", "memory_budget_gb")] == "default"
    assert rows[("pipelines.ask", "steps")] == "default"
