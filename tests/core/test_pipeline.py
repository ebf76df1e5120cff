"""Pipelines: configured or given steps, options from config and steps, shared state, and
failures that happen before any step runs."""

from __future__ import annotations

import pytest
import rag_core
from rag_core import PipelineError, PipelineState, ToolNotFoundError, run_pipeline

STEPS_PLUGIN = """
from rag_core import Tool, hookimpl

CALLS = []

def fetch(state, k=2, prefix="doc"):
    CALLS.append("fetch")
    state.retrieved = [{"id": f"{prefix}{i}", "text": f"text {i} about {state.question}",
                        "source": "s.txt", "lines": [i, i], "score": 1.0 / (i + 1)}
                       for i in range(k)]
    return {"count": len(state.retrieved)}

def reply(state, style="plain"):
    CALLS.append("reply")
    state.answer = f"{style}: " + " | ".join(c["text"] for c in state.retrieved)
    return {"answer": state.answer}

def tally(state, input="answer"):
    CALLS.append("tally")
    text = state.answer if input == "answer" else " ".join(c["text"] for c in state.retrieved)
    return {"input": input, "words": len(text.split()), "seen": sorted(state.outputs)}

def explode(state, kind="value"):
    CALLS.append("explode")
    if kind == "value":
        raise ValueError("duration must be > 0")
    if kind == "type":
        return ["not", "a", "dict"]
    raise KeyError("internal")

@hookimpl
def register_tools(register):
    for run in (fetch, reply, tally, explode):
        register(Tool(run.__name__, run))
"""


@pytest.fixture
def steps_plugin(fake_plugins):
    import importlib

    module = fake_plugins.add("steps", STEPS_PLUGIN)
    return importlib.import_module(module)


def test_configured_pipeline_runs_steps_in_order(steps_plugin, mlx_rag_config):
    mlx_rag_config.write_text(
        "[tools.fetch]\nk = 3\nprefix = 'cfg'\n\n"
        "[pipelines.demo]\n"
        'steps = [{tool = "fetch", k = 2}, {tool = "reply", style = "terse"}, {tool = "tally"},'
        ' {tool = "tally", input = "retrieved"}]\n'
    )
    seen = []
    state = run_pipeline("demo", "mlx", on_step=lambda step, result, s: seen.append(step.name))
    assert isinstance(state, PipelineState) and state.question == "mlx"
    assert [c["id"] for c in state.retrieved] == ["cfg0", "cfg1"]  # step k wins over config k
    assert state.answer == "terse: text 0 about mlx | text 1 about mlx"
    assert seen == ["fetch", "reply", "tally", "tally_2"] == list(state.outputs)
    assert state.outputs["tally"] == {"input": "answer", "words": 10, "seen": ["fetch", "reply"]}
    assert state.outputs["tally_2"]["words"] == 8
    assert state.config is rag_core.get_config()


def test_steps_given_as_a_list(steps_plugin):
    state = run_pipeline([{"tool": "fetch", "k": 1}, {"tool": "reply", "name": "final"}], "q")
    assert list(state.outputs) == ["fetch", "final"] and state.answer == "plain: text 0 about q"


def test_unknown_tool_fails_before_any_step_runs(steps_plugin):
    with pytest.raises(ToolNotFoundError, match=r"Tool 'music' is not registered.*fetch"):
        run_pipeline([{"tool": "fetch"}, {"tool": "music"}], "q")
    assert steps_plugin.CALLS == []


def test_tool_of_a_disabled_plugin_says_how_to_enable_it(steps_plugin, mlx_rag_config):
    mlx_rag_config.write_text('[plugins]\ndisabled = ["steps"]\n')
    with pytest.raises(ToolNotFoundError) as info:
        run_pipeline([{"tool": "fetch"}], "q")
    message = str(info.value)
    assert "These plugins are disabled: steps" in message
    assert f"[plugins] disabled in {mlx_rag_config}" in message and "remove 'steps'" in message


def test_bad_option_fails_before_any_step_runs(steps_plugin):
    with pytest.raises(PipelineError) as info:
        run_pipeline([{"tool": "fetch"}, {"tool": "reply", "stlye": "x"}], "q")
    message = str(info.value)
    assert "step 2 ('reply')" in message and "stlye" in message and "accepts: style" in message
    assert steps_plugin.CALLS == []


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("value", r"Step 'explode' \(tool 'explode' from plugin 'steps'\): duration must be > 0"),
        ("type", "returned list; a tool must return a dict"),
        ("other", "failed: KeyError: 'internal'"),
    ],
)
def test_failing_steps_are_pipeline_errors(steps_plugin, kind, expected):
    with pytest.raises(PipelineError, match=expected):
        run_pipeline([{"tool": "explode", "kind": kind}], "q")


@pytest.mark.parametrize(
    ("steps", "question", "expected"),
    [
        ([], "q", "non-empty array of steps"),
        ([{"k": 1}], "q", "step 1 must name its tool"),
        ([{"tool": "fetch", "name": "a"}, {"tool": "reply", "name": "a"}], "q", "named 'a'"),
        ([{"tool": "fetch"}], "  ", "question is empty"),
    ],
)
def test_invalid_pipelines(steps_plugin, steps, question, expected):
    with pytest.raises(PipelineError, match=expected):
        run_pipeline(steps, question)


def test_unknown_pipeline_name_lists_configured_ones(steps_plugin):
    with pytest.raises(PipelineError, match=r"No pipeline named 'nope' \(configured: ask, music"):
        run_pipeline("nope", "q")
