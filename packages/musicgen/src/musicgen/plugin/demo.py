"""The RAG -> music demo on the sample corpus shipped with the package.

Ingest the corpus into a store, then run the pipeline retrieve -> (answer) -> music through
rag_core's tools: the answer step is added when an LLM is available locally, and the music
step builds its prompt from the answer or the retrieved passages. When the music model cannot
be reached, the demo says why and how to fix it, then continues with the untrained smoke
checkpoint, labelled as such.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from musicgen.plugin.models import load_music_model
from musicgen.plugin.preflight import check_music_options
from musicgen.plugin.prompt import find_llm, llm_hint
from musicgen.plugin.smoke import NOTICE, SMOKE_ID

DEFAULT_QUESTION = "What music would suit a foggy night in the old harbour?"
DEFAULT_DURATION = 6.0
Say = Callable[[str], None]


def corpus_dir() -> Path:
    """The sample corpus: a few short Markdown documents whose text suggests music."""
    return Path(str(files("musicgen.plugin") / "data" / "demo_corpus"))


def demo_store() -> Path:
    """The demo's own store (``demo/store.sqlite3`` in the mlx-rag data dir), so the demo never
    mixes its documents into the user's store."""
    from rag_core import home_dir

    return home_dir() / "demo" / "store.sqlite3"


def choose_model(model: str, say: Say, *, smoke: bool = False, quantize: int | None = None,
                 dtype: str = "auto") -> str:
    """``model`` (in the precision ``quantize`` and ``dtype`` ask for) if it can be loaded;
    else, after saying why, the smoke checkpoint."""
    from rag_core import ModelUnavailableError

    if smoke:
        say(f"Using the smoke checkpoint as asked: {NOTICE}")
        return SMOKE_ID
    try:
        # Loads once; the music step then finds it loaded.
        load_music_model(model, quantize, dtype, on_status=say, smoke_hint=False)
        return model
    except ModelUnavailableError as exc:
        say(f"The music model '{model}' cannot be loaded: {exc}")
        say(f"To hear real music: when online, run `mlx-rag models pull {model}` (or set "
            "HF_HOME to a Hugging Face cache that has it), then run the demo again.")  # fmt: skip
        say(f"Continuing with '{SMOKE_ID}', an {NOTICE}")
        return SMOKE_ID


def run_demo(
    question: str = DEFAULT_QUESTION,
    *,
    store: str | Path | None = None,
    k: int = 3,
    smoke: bool = False,
    say: Say = print,
    on_step: Callable[[str, dict], None] | None = None,
    **music: Any,
) -> dict:
    """Run the demo; ``say`` reports progress, ``on_step(name, result)`` each finished step.

    ``music`` holds options of the `music` tool (model, duration, seed, output, prompt_from,
    llm, ...). Returns {"store", "ingest", "question", "retrieved", "answer", "music",
    "fallback"}.
    """
    from rag_core import get_config, ingest_paths, run_pipeline

    from musicgen.plugin.options import tool_defaults

    music = {"duration": DEFAULT_DURATION, **music}
    # What the music step runs with: its own options over [tools.music] over the defaults.
    values = {**tool_defaults(), **get_config().tool_options("music"), **music}
    check_music_options(values, smoke)
    # The demo's own store holds the sample corpus of this install only: documents of another
    # checkout's or install's copy would come back as duplicate passages.
    own_store = not store
    store = Path(store).expanduser() if store else demo_store()
    report = ingest_paths([corpus_dir()], store=store, note=say, prune_others=own_store)
    say(f"Ingested the sample corpus ({corpus_dir()}) into {store}: {report.summary()}")
    requested = values["model"]
    music["model"] = choose_model(requested, say, smoke=smoke, quantize=values["quantize"],
                                  dtype=values["dtype"])
    steps: list[dict] = [{"tool": "retrieve", "k": k, "store": str(store)}]
    if values["prompt_from"] != "extract":
        llm = values["llm"]
        answerer, why_not = find_llm(llm, get_config(), required=values["prompt_from"] == "llm")
        if answerer is not None:
            steps.append({"tool": "answer", "model": llm} if llm else {"tool": "answer"})
        else:  # the music step then extracts its prompt from the passages, without the LLM
            say(f"Note: {why_not}, so there is no answer step and the music prompt is "
                f"extracted from the retrieved passages. {llm_hint(llm)}")
            music["prompt_from"] = "extract"
    steps.append({"tool": "music", **music,
                  "input": "answer" if len(steps) > 1 else "retrieved"})  # fmt: skip

    def after_step(step, result: dict, seconds: float) -> None:
        if on_step is not None:
            on_step(step.name, result)
        if step.name == ("answer" if len(steps) > 2 else "retrieve"):
            say(f"Generating {music['duration']:g} s of music with {music['model']} ...")

    state = run_pipeline(steps, question, on_step=after_step)
    return {
        "store": str(store),
        "ingest": report.summary(),
        "question": question,
        "retrieved": state.retrieved,
        "answer": state.answer,
        "music": state.outputs["music"],
        "fallback": music["model"] == SMOKE_ID and requested != SMOKE_ID,
    }
