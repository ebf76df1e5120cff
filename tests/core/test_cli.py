"""The mlx-rag CLI: every core command, plugin commands, and clean failure exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
from click.testing import CliRunner
from rag_core.cli import cli

from tests.core.fakes import tool_plugin

MODELS_PLUGIN = """
from pathlib import Path
from rag_core import ModelPattern, ModelSpec, hookimpl

@hookimpl
def register_models(register):
    register(ModelSpec("org/tiny", "music", lambda s: s, aliases=("tiny",), size_bytes=3 * 2**30,
                       description="a tiny one"))
    register(ModelSpec("org/other", "llm", lambda s: s, size_bytes=512 * 2**20))
    register(ModelSpec("local/one", "llm", lambda s: s, source={local!r}))
    register(ModelPattern("demo-dirs", "music", lambda s: Path(s, "demo.json").is_file(),
                          lambda s: s, description="folders with demo.json"))
"""

FAULTS_PLUGIN = """
import click
from rag_core import ModelNotFoundError, hookimpl

@hookimpl
def register_commands(cli):
    @cli.command("fail")
    @click.argument("kind")
    def fail(kind):
        if kind == "rag":
            raise ModelNotFoundError("Unknown model 'x'. Known models: none.")
        if kind == "value":
            raise ValueError("duration must be > 0, got -1")
        if kind == "interrupt":
            raise KeyboardInterrupt
        raise ZeroDivisionError("oops")
"""


@pytest.fixture
def run():
    runner = CliRunner(catch_exceptions=False)

    def invoke(*args: str, **kwargs):
        return runner.invoke(cli, list(args), **kwargs)

    return invoke


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache; the Hub endpoint points at a closed local port."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def cache_repo(cache: Path, repo_id: str, size: int = 100) -> Path:
    """A repo in the on-disk layout of the Hugging Face cache."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("x" * size)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0" * 40)
    return root


def test_help_lists_core_and_plugin_commands(fake_plugins, run):
    fake_plugins.add("alpha", tool_plugin(command="alpha-cmd"))
    result = run("--help")
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines()[1:]]
    assert {"config", "models", "plugins", "run", "alpha-cmd"} <= set(listed)
    assert result.stdout.startswith("Usage: mlx-rag [OPTIONS] COMMAND [ARGS]...")
    assert run("alpha-cmd").stdout == "hello from the plugin\n"


@pytest.mark.parametrize("how", ["config", "env"])
def test_disabled_plugin_command_is_absent(fake_plugins, run, mlx_rag_config, monkeypatch, how):
    fake_plugins.add("alpha", tool_plugin(command="alpha-cmd"))
    if how == "config":
        mlx_rag_config.write_text("[plugins.alpha]\nenabled = false\n")
    else:
        monkeypatch.setenv("MLX_RAG_LOAD_PLUGINS", "")
    assert "alpha-cmd" not in run("--help").stdout
    result = run("alpha-cmd")
    assert result.exit_code == 2 and "No such command 'alpha-cmd'" in result.stderr


def test_plugins_list(fake_plugins, run, mlx_rag_config):
    fake_plugins.add("alpha", tool_plugin("echo", models=("m/a",), command="hi"), version="1.2")
    fake_plugins.add("beta", tool_plugin("b"))
    fake_plugins.add("gamma", "raise ImportError('needs libfoo')\n")
    mlx_rag_config.write_text('[plugins]\ndisabled = ["beta"]\n')
    result = run("plugins", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[:4] == ["alpha 1.2: enabled", "  models: m/a", "  tools: echo", "  commands: hi"]
    assert lines[4] == "beta 1.0: disabled"
    assert f"[plugins] disabled in {mlx_rag_config}" in lines[5]
    assert lines[6:] == ["gamma 1.0: broken", "  error: ImportError: needs libfoo"]
    assert result.stderr.count("\n") == 1 and "plugin 'gamma' is broken" in result.stderr

    data = json.loads(run("plugins", "list", "--json").stdout)
    assert [(p["name"], p["status"]) for p in data] == [
        ("alpha", "enabled"), ("beta", "disabled"), ("gamma", "broken")]
    assert data[0]["tools"] == ["echo"] and data[0]["version"] == "1.2"


def test_broken_plugin_does_not_break_other_commands(fake_plugins, run):
    fake_plugins.add("gamma", "import definitely_not_installed\n")
    result = run("config", "show")
    assert result.exit_code == 0 and "[models]" in result.stdout
    result = run("models", "list")
    assert result.exit_code == 0 and "failed to load: gamma" in result.stdout


def test_strict_mode_fails_the_cli_cleanly(fake_plugins, run, monkeypatch):
    fake_plugins.add("gamma", "import definitely_not_installed\n")
    monkeypatch.setenv("MLX_RAG_STRICT_PLUGINS", "1")
    result = run("plugins", "list")
    assert result.exit_code == 1
    assert "Error: ModuleNotFoundError: No module named 'definitely_not_installed'" in (
        result.stderr)
    assert "Traceback" not in result.output


def test_models_list(fake_plugins, run, hub_cache, tmp_path):
    local = tmp_path / "local-model"
    local.mkdir()
    fake_plugins.add("mods", MODELS_PLUGIN.format(local=str(local)))
    cache_repo(hub_cache, "org/tiny", size=2048)
    result = run("models", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "KIND", "SIZE", "LOADED", "ON", "DISK", "PLUGIN", "ALIASES"]
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert rows["org/tiny"].split() == ["org/tiny", "music", "3.0", "GiB", "-", "2.0", "KiB",
                                        "mods", "tiny"]
    assert rows["org/other"].split()[2:7] == ["512.0", "MiB", "-", "-", "mods"]
    assert rows["local/one"].split()[4] == "local"
    assert "demo-dirs (music, plugin mods): folders with demo.json" in result.stdout

    data = json.loads(run("models", "list", "--json", "--kind", "music").stdout)
    assert [m["id"] for m in data["models"]] == ["org/tiny"]
    assert data["models"][0]["on_disk"] == 2048 and data["models"][0]["loaded"] is False
    assert [p["name"] for p in data["patterns"]] == ["demo-dirs"]


def test_models_list_with_no_models_says_why(fake_plugins, run, monkeypatch):
    fake_plugins.add("mods", MODELS_PLUGIN.format(local="/nowhere"))
    monkeypatch.setenv("MLX_RAG_LOAD_PLUGINS", "")
    result = run("models", "list")
    assert result.exit_code == 0
    assert "No models are registered" in result.stdout and "disabled: mods" in result.stdout


def test_models_pull_offline_and_unreachable_fail_clearly(fake_plugins, run, hub_cache,
                                                          monkeypatch):
    fake_plugins.add("mods", MODELS_PLUGIN.format(local="/nowhere"))
    result = run("models", "pull", "tiny")
    assert result.exit_code == 1
    assert "Error: Cannot pull 'org/tiny': the Hugging Face Hub could not be reached" in (
        result.stderr)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run("models", "pull", "org/tiny")
    assert result.exit_code == 1 and "HF_HUB_OFFLINE is set" in result.stderr
    assert "Traceback" not in result.output


def test_models_pull_of_a_cached_model_and_of_a_local_dir(fake_plugins, run, hub_cache,
                                                          tmp_path, monkeypatch):
    local = tmp_path / "local-model"
    local.mkdir()
    fake_plugins.add("mods", MODELS_PLUGIN.format(local=str(local)))
    repo = cache_repo(hub_cache, "org/tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run("models", "pull", "tiny")
    assert result.exit_code == 0
    assert result.stdout.startswith("Pulled org/tiny (100 B) to ") and str(repo) in result.stdout
    result = run("models", "pull", "local/one")
    assert result.exit_code == 0 and "nothing to pull" in result.stdout


def test_models_pull_unknown_id(fake_plugins, run, hub_cache):
    fake_plugins.add("mods", MODELS_PLUGIN.format(local="/nowhere"))
    result = run("models", "pull", "no-such-model")
    assert result.exit_code == 1
    assert "Error: Unknown model 'no-such-model'" in result.stderr
    assert "org/tiny (music)" in result.stderr


def test_models_rm(fake_plugins, run, hub_cache, tmp_path):
    local = tmp_path / "local-model"
    local.mkdir()
    fake_plugins.add("mods", MODELS_PLUGIN.format(local=str(local)))
    repo = cache_repo(hub_cache, "org/tiny", size=1024)
    result = run("models", "rm", "tiny")
    assert result.exit_code == 0 and result.stdout == (
        "Removed org/tiny from the cache (1.0 KiB freed).\n")
    assert not repo.exists()
    result = run("models", "rm", "tiny")
    assert result.exit_code == 1 and "not in the local cache" in result.stderr
    result = run("models", "rm", "local/one")
    assert result.exit_code == 1 and "does not delete your directories" in result.stderr
    assert local.is_dir()
    cache_repo(hub_cache, "someone/unregistered")
    result = run("models", "rm", "someone/unregistered")
    assert result.exit_code == 0 and "not a registered model" in result.stderr


def test_config_show_marks_sources(run, mlx_rag_config, mlx_rag_home):
    mlx_rag_config.write_text('[llm]\nmodel = "org/llm"\n[tools.music]\nduration = 4.0\n')
    result = run("config", "show")
    assert result.exit_code == 0
    out = result.stdout
    assert f"Config file: {mlx_rag_config} (from MLX_RAG_CONFIG)" in out
    assert f'model = "org/llm"  # {mlx_rag_config}' in out
    assert "memory_budget_gb = 0  # default" in out
    assert f"[tools.music]\nduration = 4.0  # {mlx_rag_config}" in out
    assert f'path = "{mlx_rag_home / "store.sqlite3"}"  # default' in out

    data = json.loads(run("config", "show", "--json").stdout)
    values = {v["key"]: v for v in data["values"]}
    assert values["llm.model"] == {"key": "llm.model", "value": "org/llm",
                                   "source": str(mlx_rag_config)}
    assert data["file"] == str(mlx_rag_config)


def test_config_option_takes_precedence_and_errors_name_file_and_key(run, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[models]\nmemory_budget_gb = 2.5\n")
    result = run("--config", str(good), "config", "show")
    assert "memory_budget_gb = 2.5" in result.stdout and "(from --config)" in result.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text('[models]\nmemory_budget_gb = "lots"\n')
    result = run("--config", str(bad), "config", "show")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: Invalid config in {bad}: 'models.memory_budget_gb' must be "
                             "a number, got a string ('lots').\n")
    result = run("--config", str(tmp_path / "missing.toml"), "plugins", "list")
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_bad_config_from_env_fails_commands_but_help_still_works(run, mlx_rag_config):
    mlx_rag_config.write_text("[nonsense]\n")
    result = run("plugins", "list")
    assert result.exit_code == 1 and "'nonsense' is not a known key" in result.stderr
    result = run("--help")
    assert result.exit_code == 0 and "  run " in result.stdout
    assert "plugin commands are not shown" in result.stderr


RUN_PLUGIN = """
from rag_core import Tool, hookimpl

def fetch(state, k=2):
    state.retrieved = [{"id": f"c{i}", "text": f"chunk {i}", "source": "a.md", "lines": [1, 2],
                        "score": 0.5} for i in range(k)]
    return {"count": k}

def reply(state):
    state.answer = "it is " + state.question
    return {"answer": state.answer}

@hookimpl
def register_tools(register):
    register(Tool("fetch", fetch))
    register(Tool("reply", reply))
"""


def test_run_prints_each_step(fake_plugins, run, mlx_rag_config):
    fake_plugins.add("steps", RUN_PLUGIN)
    mlx_rag_config.write_text(
        '[pipelines.qa]\nsteps = [{tool = "fetch", k = 3}, {tool = "reply"}]\n')
    result = run("run", "qa", "blue")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[1] fetch (tool fetch, plugin steps) ")
    assert lines[1] == "    count: 3"
    assert lines[2].startswith("[2] reply (tool reply, plugin steps) ")
    assert lines[3] == "    answer: it is blue"
    assert lines[-1] == "Answer: it is blue"

    data = json.loads(run("run", "qa", "blue", "--json").stdout)
    assert data["answer"] == "it is blue" and len(data["retrieved"]) == 3
    assert [(s["name"], s["plugin"], s["result"]) for s in data["steps"]] == [
        ("fetch", "steps", {"count": 3}), ("reply", "steps", {"answer": "it is blue"})]


def test_run_failures(fake_plugins, run, mlx_rag_config):
    fake_plugins.add("steps", RUN_PLUGIN)
    result = run("run", "nope", "q")
    assert result.exit_code == 1 and "Error: No pipeline named 'nope'" in result.stderr
    mlx_rag_config.write_text('[plugins]\ndisabled = ["steps"]\n'
                              '[pipelines.qa]\nsteps = [{tool = "fetch"}, {tool = "reply"}]\n')
    result = run("run", "qa", "q")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Tool 'fetch' is not registered")
    assert "These plugins are disabled: steps" in result.stderr
    assert result.stdout == ""  # nothing ran


@pytest.mark.parametrize(
    ("kind", "code", "stderr"),
    [
        ("rag", 1, "Error: Unknown model 'x'. Known models: none.\n"),
        ("value", 1, "Error: duration must be > 0, got -1\n"),
        ("interrupt", 130, "Aborted.\n"),
        ("bug", 1, "Error: ZeroDivisionError: oops (this is a bug or an unexpected failure; "
                   "set MLX_RAG_DEBUG=1 to see the traceback)\n"),
    ],
)
def test_failures_exit_cleanly(fake_plugins, run, kind, code, stderr):
    fake_plugins.add("faults", FAULTS_PLUGIN)
    result = run("fail", kind)
    assert (result.exit_code, result.stderr, result.stdout) == (code, stderr, "")


def test_debug_env_shows_the_exception(fake_plugins, run, monkeypatch):
    fake_plugins.add("faults", FAULTS_PLUGIN)
    monkeypatch.setenv("MLX_RAG_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        run("fail", "bug")


def test_console_script_runs(mlx_rag_config):
    mlx_rag_config.write_text('[plugins]\ndisabled = ["musicgen"]\n')
    exe = Path(sys.executable).with_name("mlx-rag")
    result = subprocess.run([str(exe), "plugins", "list", "--json"], capture_output=True,
                            text=True, env=os.environ.copy(), timeout=60)
    assert result.returncode == 0, result.stderr
    names = {p["name"]: p["status"] for p in json.loads(result.stdout)}
    assert names.get("musicgen") == "disabled" and "rag_core" in names


def test_retrieval_commands_load_on_first_use_only():
    """A command that is not retrieval (a track, the config) never imports the store."""
    code = ("import sys; from click.testing import CliRunner; from rag_core.cli import cli; "
            "r = CliRunner().invoke(cli, sys.argv[1:]); assert r.exit_code == 0, r.output; "
            "print('rag_core.store' in sys.modules)")  # fmt: skip
    for args, imported in ((["config", "show"], "False"), (["search", "--help"], "True"),
                           (["--help"], "True")):  # fmt: skip
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True)  # fmt: skip
        assert done.stdout.splitlines()[-1] == imported, (args, done.stdout, done.stderr)


def test_the_lazy_retrieval_command_names_are_those_it_adds():
    import click
    from rag_core.cli import RETRIEVAL_COMMANDS
    from rag_core.cli.retrieval import add_commands

    group = click.Group()
    add_commands(group)
    assert sorted(group.commands) == sorted(RETRIEVAL_COMMANDS)
    result = CliRunner().invoke(cli, ["--help"])
    assert all(f"  {name} " in result.output for name in RETRIEVAL_COMMANDS), result.output
