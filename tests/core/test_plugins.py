"""Plugin discovery, toggling, isolation of broken plugins, strict mode and duplicate ids."""

from __future__ import annotations

import pytest
import rag_core
import rag_core.plugins
from rag_core import DuplicateRegistrationError, ModelSpec, ToolNotFoundError
from rag_core.plugins import PluginHost, get_host

from tests.core.fakes import tool_plugin


def statuses() -> dict[str, str]:
    return {name: r.status for name, r in get_host().records.items()}


def test_discovers_entry_points_with_name_version_and_registrations(fake_plugins, capsys):
    fake_plugins.add("alpha", tool_plugin("echo", models=("demo/a",), command="hello"),
                     version="2.3.1")
    record = get_host().records["alpha"]
    assert (record.name, record.version, record.status) == ("alpha", "2.3.1", "enabled")
    assert (record.tools, record.models, record.commands) == (["echo"], ["demo/a"], ["hello"])
    assert rag_core.get_tool("echo").plugin == "alpha"
    assert rag_core.get_registry().spec("demo/a").plugin == "alpha"
    assert capsys.readouterr().err == ""


def test_real_discover_finds_a_dist_info_on_sys_path(fake_plugins):
    fake_plugins.add("beta", tool_plugin("b"), version="0.4")
    found = {ep.name: ep for ep in fake_plugins.real_discover()}
    assert found["beta"].dist.version == "0.4"


def test_builtin_plugin_is_named_rag_core_and_can_be_disabled(mlx_rag_config, monkeypatch):
    monkeypatch.setattr(rag_core.plugins, "discover", lambda: [])
    record = get_host().records["rag_core"]
    assert record.builtin and record.module == "rag_core.builtin"
    assert record.version == rag_core.__version__
    assert record.status in ("enabled", "broken")  # the built-in's content is not this test's

    mlx_rag_config.write_text('[plugins]\ndisabled = ["rag_core"]\n')
    rag_core.plugins.reset()
    assert statuses() == {"rag_core": "disabled"}
    with pytest.raises(ToolNotFoundError, match="rag_core"):
        rag_core.get_tool("retrieve")


@pytest.mark.parametrize(
    "config_text",
    ['[plugins]\ndisabled = ["alpha"]\n', "[plugins.alpha]\nenabled = false\n"],
)
def test_config_disables_a_plugin(fake_plugins, mlx_rag_config, config_text):
    fake_plugins.add("alpha", tool_plugin("a_tool", command="a-cmd"))
    fake_plugins.add("beta", tool_plugin("b_tool"))
    mlx_rag_config.write_text(config_text)
    assert statuses() == {"alpha": "disabled", "beta": "enabled"}
    host = get_host()
    assert "a-cmd" not in host.commands and str(mlx_rag_config) in host.records["alpha"].error
    with pytest.raises(ToolNotFoundError) as info:
        rag_core.get_tool("a_tool")
    message = str(info.value)
    assert "'a_tool' is not registered" in message and "b_tool" in message
    assert "disabled: alpha" in message and str(mlx_rag_config) in message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, {"alpha": "enabled", "beta": "enabled"}),
        ("", {"alpha": "disabled", "beta": "disabled"}),
        ("beta", {"alpha": "disabled", "beta": "enabled"}),
        (" alpha , beta ", {"alpha": "enabled", "beta": "enabled"}),
    ],
)
def test_env_var_chooses_plugins(fake_plugins, monkeypatch, env, expected):
    fake_plugins.add("alpha", tool_plugin("a_tool"))
    fake_plugins.add("beta", tool_plugin("b_tool"))
    if env is not None:
        monkeypatch.setenv("MLX_RAG_LOAD_PLUGINS", env)
    assert statuses() == expected
    if expected["alpha"] == "disabled":
        assert "MLX_RAG_LOAD_PLUGINS" in get_host().records["alpha"].error


def test_env_var_overrides_config_and_warns_about_unknown_names(
    fake_plugins, mlx_rag_config, monkeypatch, capsys
):
    fake_plugins.add("alpha", tool_plugin("a_tool"))
    mlx_rag_config.write_text('[plugins]\ndisabled = ["alpha"]\n')
    monkeypatch.setenv("MLX_RAG_LOAD_PLUGINS", "alpha,nosuch")
    assert statuses() == {"alpha": "enabled"}
    err = capsys.readouterr().err
    assert "'nosuch'" in err and "not installed" in err and len(err.splitlines()) == 1


def test_plugin_failing_on_import_is_reported_and_others_still_load(fake_plugins, capsys):
    fake_plugins.add("broken", "import no_such_module_anywhere\n")
    fake_plugins.add("good", tool_plugin("good_tool"))
    host = get_host()
    assert statuses() == {"broken": "broken", "good": "enabled"}
    assert "ModuleNotFoundError" in host.records["broken"].error
    assert "no_such_module_anywhere" in host.records["broken"].error
    assert rag_core.get_tool("good_tool").plugin == "good"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "plugin 'broken' is broken" in err[0]


def test_hook_that_raises_leaves_nothing_registered(fake_plugins):
    fake_plugins.add("half", """
        from rag_core import ModelSpec, Tool, hookimpl

        @hookimpl
        def register_models(register):
            register(ModelSpec("half/model", "demo", lambda s: s))

        @hookimpl
        def register_tools(register):
            register(Tool("half_tool", lambda state: {}))
            raise RuntimeError("boom in register_tools")
    """)
    host = get_host()
    record = host.records["half"]
    assert record.status == "broken" and "RuntimeError: boom in register_tools" in record.error
    assert record.models == [] and record.tools == []
    assert host.registry.specs() == [] and host.tools.tools() == []
    assert not host.pm.get_plugins()


def test_strict_mode_reraises(fake_plugins, monkeypatch):
    fake_plugins.add("broken", "raise RuntimeError('import-time failure')\n")
    monkeypatch.setenv("MLX_RAG_STRICT_PLUGINS", "1")
    with pytest.raises(RuntimeError, match="import-time failure"):
        get_host()


def test_unknown_hook_name_is_a_broken_plugin(fake_plugins):
    fake_plugins.add("typo", """
        from rag_core import hookimpl

        @hookimpl
        def register_modles(register):
            pass
    """)
    error = get_host().records["typo"].error
    assert "unknown hook 'register_modles'" in error and "register_models" in error


def test_duplicate_tool_names_both_plugins_and_keeps_the_first(fake_plugins, capsys):
    fake_plugins.add("first", tool_plugin("shared", "first_only"))
    fake_plugins.add("second", tool_plugin("second_only", "shared"))
    host = get_host()
    assert statuses() == {"first": "enabled", "second": "broken"}
    error = host.records["second"].error
    assert "DuplicateRegistrationError" in error
    assert "'shared'" in error and "'first'" in error and "'second'" in error
    assert rag_core.get_tool("shared").plugin == "first"
    with pytest.raises(ToolNotFoundError):  # rolled back with the rest of 'second'
        rag_core.get_tool("second_only")
    assert "Warning: plugin 'second'" in capsys.readouterr().err


def test_duplicate_model_alias_and_command(fake_plugins):
    fake_plugins.add("one", tool_plugin(models=("m/one",), command="same"))
    fake_plugins.add("two", """
        from rag_core import ModelSpec, hookimpl

        @hookimpl
        def register_models(register):
            register(ModelSpec("m/two", "demo", lambda s: s, aliases=("m/one",)))
    """)
    fake_plugins.add("three", tool_plugin(command="same"))
    records = get_host().records
    assert "Model alias 'm/one' is registered by both plugin 'one' and plugin 'two'" in (
        records["two"].error)
    assert "Command 'same' is registered by both plugin 'one' and plugin 'three'" in (
        records["three"].error)


def test_registry_register_duplicate_raises_naming_both():
    registry = rag_core.ModelRegistry()
    registry.register(ModelSpec("x/y", "demo", lambda s: s), plugin="p1")
    with pytest.raises(DuplicateRegistrationError, match="plugin 'p1' and plugin 'p2'"):
        registry.register(ModelSpec("x/y", "llm", lambda s: s), plugin="p2")
    with pytest.raises(DuplicateRegistrationError, match="twice"):
        registry.register(ModelSpec("x/z", "demo", lambda s: s, aliases=("x/z",)), plugin="p1")


def test_two_installed_plugins_with_one_name(fake_plugins):
    module = fake_plugins.add("twin", tool_plugin("t1"))
    fake_plugins.add("twin", module=module)
    records = get_host().records
    assert [r.status for r in records.values()] == ["enabled", "broken"]
    assert "already called 'twin'" in list(records.values())[1].error


def test_loaders_hook(fake_plugins):
    fake_plugins.add("pdf", """
        from rag_core import hookimpl

        @hookimpl
        def register_loaders(register):
            register((".PDF", ".pdfa"), lambda path: "text")
    """)
    loaders = rag_core.get_loaders()
    assert set(loaders) == {".pdf", ".pdfa"} and loaders[".pdf"].plugin == "pdf"
    assert get_host().records["pdf"].loaders == [".pdf", ".pdfa"]


def test_host_warns_through_callback(fake_plugins, mlx_rag_config):
    fake_plugins.add("bad", "1 / 0\n")
    seen: list[str] = []
    host = PluginHost(rag_core.load_config(), warn=seen.append).load()
    assert host.records["bad"].status == "broken" and len(seen) == 1
    assert "ZeroDivisionError" in seen[0]
