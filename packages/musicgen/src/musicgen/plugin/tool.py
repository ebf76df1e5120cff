"""The `music` tool: the pipeline's text -> a music prompt -> a track (musicgen.plugin.track).

Its options are those of musicgen.plugin.options (where the prompt comes from, every
``GenerationOptions`` field, the track's), taken by keyword: ``get_tool("music").run(state,
prompt="lofi piano", duration=10, seed=7)``. Progress goes to ``state.progress(done, total)``
(a server job's progress; raising there stops the generation) and to a progress bar on a
terminal.
"""

from __future__ import annotations

from typing import Any

from rag_core import PipelineError, PipelineState

from musicgen.plugin.options import PromptOptions, split_options, tool_signature
from musicgen.plugin.prompt import MusicPrompt, build_prompt
from musicgen.plugin.track import make_track


def source_text(state: PipelineState, input: str, text: str | None
                ) -> tuple[str | list[str], dict]:
    """The text the prompt is built from (retrieved passages: a list, best first), and
    build_prompt's provenance arguments."""
    if text is not None:
        return text, {"input": "text"}
    if input == "auto":
        input = "answer" if state.answer else "retrieved" if state.retrieved else "question"
    if input == "answer":
        if not state.answer and "answer" in state.outputs:
            raise PipelineError("The answer step returned an empty answer, so there is nothing "
                                'to make music from; try input = "retrieved".')  # fmt: skip
        if not state.answer:
            raise PipelineError(
                "The music step takes input = \"answer\" but there is no answer: put an answer "
                'step before it, e.g. steps = [{tool = "retrieve"}, {tool = "answer"}, '
                '{tool = "music", input = "answer"}].'
            )
        return state.answer, {"input": "answer"}
    if input == "retrieved":
        if not state.retrieved:
            raise PipelineError(
                "The music step takes input = \"retrieved\" but no passages were retrieved: put a "
                'retrieve step before it (steps = [{tool = "retrieve"}, {tool = "music"}]), or '
                "ask about something the store holds."
            )
        chunks = state.retrieved
        return [c["text"] for c in chunks], {
            "input": "retrieved",
            "chunk_ids": [c.get("id") for c in chunks],
            "sources": [str(c.get("source")) for c in chunks if c.get("source")],
        }
    return state.question or "", {"input": "question"}


def music_prompt(state: PipelineState, options: PromptOptions) -> MusicPrompt:
    """The music prompt: ``options.prompt`` as it is, else built from the text or the input."""
    if options.prompt is not None:
        return MusicPrompt.given(options.prompt)
    source, provenance = source_text(state, options.input, options.text)
    return build_prompt(source, prompt_from=options.prompt_from, llm=options.llm,
                        config=state.config, **provenance)  # fmt: skip


def run(state: PipelineState, **options: Any) -> dict:
    """Turn the answer, the retrieved passages or the question (``input``; "auto" takes the
    first that exists, in that order) into music; ``prompt`` skips prompt building. The
    options and their defaults: ``tool_signature()`` (docs/musicgen.md)."""
    from rag_core import progress_bar  # loads the CLI's helpers: not at plugin load

    prompt_options, generation, track = split_options(options)
    prompt = music_prompt(state, prompt_options)
    with progress_bar("music") as bar:

        def on_step(done: int, total: int) -> None:
            state.progress(done, total)
            bar(done, total)

        return make_track(prompt, generation, track, on_step=on_step)


run.__signature__ = tool_signature()
