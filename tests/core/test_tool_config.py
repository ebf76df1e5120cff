"""[tools.NAME] sections are checked against the registered tools' options, by every command."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from rag_core import Config, Tool
from rag_core.cli import cli
from rag_core.errors import ConfigError

from tests.core.fakes import tool_plugin

ANY_OPTIONS_PLUGIN = """
from rag_core import Tool, hookimpl

def anything(state, **options):
    return options

@hookimpl
def register_tools(register):
    register(Tool("free", anything))
"""


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_tools_declare_their_options_from_the_run_signature():
    def run_tool(state, text="", *, times=1):
        return {}

    assert Tool("echo", run_tool).option_names() == ("text", "times")
    assert Tool("free", lambda state, **options: {}).option_names() is None  # takes anything


@pytest.mark.parametrize("args", [("config", "show"), ("plugins", "list"), ("models", "list"),
                                  ("run", "ask", "a question")])
def test_an_unknown_key_is_refused_by_every_command(fake_plugins, mlx_rag_config, args):
    fake_plugins.add("echoes", tool_plugin("echo"))
    mlx_rag_config.write_text("[tools.echo]\ntext = 'hi'\ntimez = 2\n")
    result = run(*args)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: Invalid config in {mlx_rag_config}: 'tools.echo.timez' is not a known key "
        "(the echo tool's options: text, times). Did you mean 'times'?\n")


@pytest.mark.parametrize("args", [("config", "show"), ("plugins", "list"), ("run", "ask", "q")])
def test_an_unknown_section_is_refused_by_every_command(fake_plugins, mlx_rag_config, args):
    fake_plugins.add("echoes", tool_plugin("echo", "reply"))
    mlx_rag_config.write_text("[tools.ecco]\ntext = 'hi'\n")
    result = run(*args)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: Invalid config in {mlx_rag_config}: 'tools.ecco' names no registered tool "
        "(tools: echo, reply; see `mlx-rag plugins list`). Did you mean [tools.echo]?\n")
    mlx_rag_config.write_text("[tools.unrelated]\nx = 1\n")
    result = run(*args)
    assert result.exit_code == 1 and "'tools.unrelated' names no registered tool" in result.stderr


def test_sections_of_disabled_plugins_and_tools_taking_anything_pass(fake_plugins,
                                                                     mlx_rag_config):
    fake_plugins.add("echoes", tool_plugin("echo"))
    fake_plugins.add("free", ANY_OPTIONS_PLUGIN)
    mlx_rag_config.write_text('[plugins]\ndisabled = ["echoes"]\n\n[tools.echo]\ntimes = 2\n\n'
                              "[tools.free]\nwhatever = 1\n")
    result = run("config", "show")
    assert result.exit_code == 0, result.output
    assert "whatever = 1" in result.stdout and "times = 2" in result.stdout
    # With a plugin disabled, a section close to a loaded tool's name is still a typo.
    mlx_rag_config.write_text('[plugins]\ndisabled = ["echoes"]\n\n[tools.fre]\nx = 1\n')
    result = run("config", "show")
    assert result.exit_code == 1 and "Did you mean [tools.free]?" in result.stderr


def test_check_tools_on_a_config_object():
    config = Config({"tools": {"echo": {"times": 2, "tmes": 3}}})
    config.check_tools({"echo": None})  # a tool taking anything
    with pytest.raises(ConfigError, match=r"'tools.echo.tmes' is not a known key .*"
                                          r"Did you mean 'times'\?"):
        config.check_tools({"echo": ("text", "times")})
    with pytest.raises(ConfigError, match=r"'tools.echo' names no registered tool"):
        config.check_tools({"other": ()})
    config.check_tools({"other": ()}, all_loaded=False)  # may belong to a disabled plugin
