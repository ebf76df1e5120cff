"""Pipelines: a list of steps, each calling a registered tool on a shared state.

A pipeline comes from config (``[pipelines.NAME] steps = [{tool = "retrieve", k = 4}, ...]``)
or is given as a list of step tables. Every step is checked (its tool exists, its options are
accepted) before the first one runs, so a bad pipeline fails at once.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rag_core.config import STEP_RESERVED, Config, check_steps, get_config
from rag_core.errors import PipelineError, RagError
from rag_core.plugins import get_tool
from rag_core.tools import Tool


@dataclass
class PipelineState:
    """What the steps share: each step reads it and may fill a field; results go in outputs."""

    question: str | None = None
    retrieved: list[dict] = field(default_factory=list)  # {"id","text","source","lines","score"}
    answer: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)  # step name -> the tool's result
    config: Config | None = None
    # Long-running tools may call progress(done, total) within their step; it may raise to
    # cancel the run (rag_core.JobCancelled, when the pipeline runs as a server job).
    progress: Callable[[float, float], None] = field(default=lambda done, total: None,
                                                     repr=False)


@dataclass(frozen=True)
class Step:
    """One resolved step: its name in ``outputs``, its tool and the options it is called with."""

    name: str
    tool: Tool
    options: dict

    def record(self, result: dict, seconds: float) -> dict:
        """How `mlx-rag run --json` and the server report a finished step."""
        return {"name": self.name, "tool": self.tool.name, "plugin": self.tool.plugin,
                "seconds": round(seconds, 3), "result": result}


def plan(name_or_steps: str | list[dict], config: Config) -> list[Step]:
    """Resolve a pipeline's steps; raise PipelineError/ToolNotFoundError before anything runs."""
    if isinstance(name_or_steps, str):
        raw = config.pipeline_steps(name_or_steps)
        label = f"Pipeline '{name_or_steps}'"
    else:
        raw = name_or_steps
        label = "The pipeline"
    try:
        check_steps(raw)
    except PipelineError as exc:
        raise PipelineError(f"{label}: {exc}.") from None
    steps: list[Step] = []
    names: set[str] = set()
    for i, table in enumerate(raw, 1):
        tool = get_tool(table["tool"])
        name = table.get("name") or tool.name
        if name in names:
            if "name" in table:
                raise PipelineError(f"{label}: two steps are named '{name}'; names must differ.")
            name = next(f"{tool.name}_{n}" for n in range(2, len(raw) + 2)
                        if f"{tool.name}_{n}" not in names)
        names.add(name)
        options = {**config.tool_options(tool.name),
                   **{k: v for k, v in table.items() if k not in STEP_RESERVED}}
        _check_options(tool, options, f"{label}, step {i} ('{name}')")
        steps.append(Step(name, tool, options))
    return steps


def _check_options(tool: Tool, options: dict, where: str) -> None:
    try:
        signature = inspect.signature(tool.run)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(None, **options)
    except TypeError as exc:
        accepted = [p.name for p in list(signature.parameters.values())[1:]
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise PipelineError(
            f"{where}: tool '{tool.name}' (plugin '{tool.plugin}') cannot take these options: "
            f"{exc}. It accepts: {', '.join(accepted) or 'no options'}."
        ) from None


def run_pipeline(
    name_or_steps: str | list[dict],
    question: str,
    config: Config | None = None,
    *,
    on_step: Callable[[Step, dict, float], None] | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> PipelineState:
    """Run a configured pipeline (by name) or a list of steps on ``question``.

    ``on_step(step, result, seconds)`` is called after each step, e.g. to print progress.
    ``progress(done, total)`` hears the run's progress: before each step, and within a step
    whenever its tool reports through ``state.progress`` (raising there stops the run).
    """
    if not isinstance(question, str) or not question.strip():
        raise PipelineError("The question is empty; pass the text to run the pipeline on.")
    config = config or get_config()
    steps = plan(name_or_steps, config)
    state = PipelineState(question=question, config=config)
    for i, step in enumerate(steps):
        if progress:
            progress(i, len(steps))
            state.progress = lambda done, total, i=i: progress(
                i + (min(done / total, 1.0) if total else 0.0), len(steps))
        start = time.perf_counter()
        result = _run_step(step, state)
        state.outputs[step.name] = result
        if on_step:
            on_step(step, result, time.perf_counter() - start)
    return state


def run_record(
    name: str,
    question: str,
    *,
    on_step: Callable[[Step, dict, float], None] | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> dict:
    """Run pipeline ``name`` on ``question`` (as ``run_pipeline``) and return the record that
    `mlx-rag run --json` prints and the server's pipeline jobs return: the answer, what was
    retrieved and each step's ``Step.record``."""
    steps: list[dict] = []

    def record_step(step: Step, result: dict, seconds: float) -> None:
        steps.append(step.record(result, seconds))
        if on_step:
            on_step(step, result, seconds)

    state = run_pipeline(name, question, on_step=record_step, progress=progress)
    return {"pipeline": name, "question": question, "answer": state.answer,
            "retrieved": state.retrieved, "steps": steps}  # fmt: skip


def _run_step(step: Step, state: PipelineState) -> dict:
    where = f"Step '{step.name}' (tool '{step.tool.name}' from plugin '{step.tool.plugin}')"
    try:
        result = step.tool.run(state, **step.options)
    except RagError:
        raise
    except ValueError as exc:
        raise PipelineError(f"{where}: {exc}") from exc
    except Exception as exc:
        raise PipelineError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, dict):
        raise PipelineError(f"{where} returned {type(result).__name__}; a tool must return a "
                            "dict (its result record).")
    return result
