"""A command of a disabled plugin: say which plugin adds it, what disabled it, how to enable it."""

from __future__ import annotations

from click.testing import CliRunner
from rag_core.cli import cli

from tests.core.fakes import tool_plugin


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_disabled_in_the_config(fake_plugins, mlx_rag_config):
    fake_plugins.add("greeter", tool_plugin("echo", command="hello"))
    assert run("hello").stdout == "hello from the plugin\n"
    mlx_rag_config.write_text('[plugins]\ndisabled = ["greeter"]\n')
    result = run("hello")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "Error: No such command 'hello': plugin 'greeter' adds it, and that plugin is disabled "
        f"by [plugins] disabled in {mlx_rag_config}; remove 'greeter' from that list to enable "
        "it.\n")
    mlx_rag_config.write_text("[plugins.greeter]\nenabled = false\n")
    result = run("hello", "--help")
    assert result.exit_code == 2
    assert (f"that plugin is disabled by [plugins.greeter] enabled = false in {mlx_rag_config}; "
            "set it to true to enable it.") in result.stderr


def test_disabled_by_the_environment(fake_plugins, monkeypatch):
    fake_plugins.add("greeter", tool_plugin("echo", command="hello"))
    fake_plugins.add("other", tool_plugin("reply"))
    monkeypatch.setenv("MLX_RAG_LOAD_PLUGINS", "other")
    result = run("hello")
    assert result.exit_code == 2
    assert ("No such command 'hello': plugin 'greeter' adds it, and that plugin is not listed "
            "in MLX_RAG_LOAD_PLUGINS='other'; add it there, or unset MLX_RAG_LOAD_PLUGINS to "
            "load all installed plugins.") in result.stderr


def test_a_command_no_plugin_adds_is_simply_unknown(fake_plugins, mlx_rag_config):
    fake_plugins.add("greeter", tool_plugin("echo", command="hello"))
    mlx_rag_config.write_text('[plugins]\ndisabled = ["greeter"]\n')
    result = run("helo")
    assert result.exit_code == 2 and "No such command 'helo'." in result.stderr
    assert "greeter" not in result.stderr
