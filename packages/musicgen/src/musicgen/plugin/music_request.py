"""A music request to the server: its fields, their checks, and the job that renders it.

The fields are derived, never listed here: every option of the `music` tool (its signature:
the GenerationOptions fields it takes, model, format, normalize, prompt_from, ...) but those the
server sets itself (``output``, ``overwrite``: it writes new files into its track library only),
plus where the music comes from: exactly one of ``prompt`` (used as is), ``text`` (a prompt is
built from it) or ``question`` (retrieved, answered when an LLM is available, then a prompt is
built, as the pipeline does). A question may come with the ``answer`` and ``passages`` the
client already has (the web page's last answer), so nothing is retrieved or answered again.
``melody`` and ``continue_from`` name tracks of the library by id, never paths.

Every check runs before the job is queued, and an error names the field at fault.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag_core import (
    Fields,
    HTTPError,
    ModelKindError,
    ModelNotFoundError,
    PipelineState,
    get_config,
    get_registry,
    get_tool,
)

from musicgen.options import GenerationOptions, option_fields
from musicgen.plugin.options import tool_defaults
from musicgen.plugin.tracks import TrackError, TrackLibrary

SERVER_SET = ("output", "overwrite")  # the server writes new tracks into its library only
TRACK_INPUTS = ("melody", "continue_from")  # audio files: given as ids of library tracks
SOURCES = ("prompt", "text", "question")  # exactly one
CONTEXT = ("answer", "passages", "k")  # with a question
MAX_PASSAGES = 50
MAX_K = 50
MAX_CHARS = {"prompt": 2_000, "question": 2_000, "text": 200_000, "answer": 50_000}


def request_options() -> dict[str, tuple[Any, Any]]:
    """The tool options a request may set, in the order of the tool's signature: name ->
    (type hint: GenerationOptions' for its fields, else Any; default)."""
    hints = typing.get_type_hints(GenerationOptions)
    return {name: (hints.get(name, Any), default) for name, default in tool_defaults().items()
            if name not in (*SERVER_SET, *SOURCES)}


def describe_fields() -> list[dict]:
    """What GET /api/music/options lists: every request field with its JSON type, default
    and, for the generation options, the help GenerationOptions gives."""
    helps = {f.name: f.help for f in option_fields()}
    config = get_config().tool_options("music")
    fields = [{"name": name, "type": "string", "default": None, "help": about}
              for name, about in (("prompt", "the music prompt, used as is"),
                                  ("text", "a text the prompt is built from"),
                                  ("question", "retrieve, answer, then build the prompt"))]
    for name, (hint, default) in request_options().items():
        fields.append({"name": name, "type": _json_type(hint),
                       "default": config.get(name, default), "help": helps.get(name, "")})
    return fields


def _json_type(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return next((names[a] for a in args if a in names), "any")


@dataclass
class MusicRequest:
    """A checked request: where the music comes from, and the tool's keyword arguments."""

    source: str  # "prompt", "text" or "question"
    options: dict  # the music tool's keyword arguments (output set to the library)
    lane: str  # the registry id the job queues under: one generation at a time per model
    question: str | None = None
    answer: str | None = None
    passages: list[dict] | None = None
    k: int | None = None  # passages to retrieve (None: [tools.retrieve] k, else its default)
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.options["model"]

    def info(self) -> dict:
        """The job's ``info``: what was asked, short."""
        text = self.question if self.source == "question" else self.options.get(self.source)
        return {"source": self.source, self.source: (text or "")[:200], "model": self.model,
                "duration": self.options.get("duration")}


def parse(body: dict, library: TrackLibrary) -> MusicRequest:
    """Check a request body (blocking: it reads the registry, config.json files and the
    library); HTTPError naming the field for anything wrong."""
    for name in SERVER_SET:
        if name in body:
            raise HTTPError(400, f"'{name}' is set by the server: it writes every track into "
                                 "its track library (see GET /api/tracks).", name)
    options = request_options()
    fields = Fields(body, allowed=(*SOURCES, *CONTEXT, *options))
    given = [name for name in SOURCES if body.get(name) is not None]
    if len(given) != 1:
        raise HTTPError(400, "Give exactly one of 'prompt' (used as is), 'text' (a prompt is "
                             "built from it) or 'question' (retrieve, answer, then a prompt)"
                             + (f"; got {', '.join(given)}." if given else "."),
                        given[1] if len(given) > 1 else "prompt")
    source = given[0]
    value = fields.text(source, max_length=MAX_CHARS[source])
    if source != "question":
        for name in CONTEXT:
            if name in body:
                raise HTTPError(400, f"'{name}' goes with a 'question'.", name)
    checked = fields.dataclass(_options_type(options, library))
    tool_options = {**checked.tool_options, **({source: value} if source != "question" else {})}
    request = MusicRequest(source, tool_options, checked.lane)
    if source == "question":
        request.question = value
        request.answer = fields.text("answer", max_length=MAX_CHARS["answer"])
        request.passages = _passages(body.get("passages"))
        request.k = fields.integer("k", minimum=1, maximum=MAX_K)
        if request.answer is not None and request.passages is None:
            raise HTTPError(400, "'answer' needs the 'passages' it was answered from.",
                            "passages")
    return request


def _options_type(options: dict[str, tuple[Any, Any]], library: TrackLibrary) -> type:
    """A dataclass of the request's tool options (each optional), whose ``__post_init__``
    checks them together, as the tool will, and sets ``tool_options`` and ``lane``; its
    ValueErrors become 400s naming the field (``Fields.dataclass``)."""

    def check(self) -> None:
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        defaults = {name: default for name, (_, default) in options.items()}
        configured = {k: v for k, v in get_config().tool_options("music").items()
                      if k in options}
        values = {**defaults, **configured, **given}
        self.tool_options, self.lane = check_options(values, given, library)

    fields = [(name, hint | None if hint is not Any else Any, field(default=None))
              for name, (hint, _) in options.items()]
    return dataclasses.make_dataclass("MusicOptions", fields, namespace={"__post_init__": check})


def check_options(values: dict, given: dict, library: TrackLibrary) -> tuple[dict, str]:
    """The tool's keyword arguments from merged ``values`` (checked), and the job's lane: the
    registry id of the model in the precision it will be loaded in."""
    from musicgen.errors import AudioError
    from musicgen.plugin.models import variant_id
    from musicgen.plugin.preflight import check_music_options

    if "seed" in given and not isinstance(given["seed"], int):
        raise ValueError(f"seed must be an integer (one seed for one track), got "
                         f"{given['seed']!r}.")
    model = values.get("model")
    try:
        get_registry().spec(model, kind="music")
    except ModelKindError as exc:
        raise HTTPError(400, str(exc), "model") from None
    except ModelNotFoundError as exc:
        raise HTTPError(404, str(exc), "model") from None
    for name in TRACK_INPUTS:
        if values.get(name) is not None:
            values[name] = str(_track_path(library, name, values[name]))
    values.update(output=str(library.folder) + os.sep, overwrite=False)
    try:
        base, precision = check_music_options(values)  # every option, before it is queued
    except AudioError as exc:  # an unreadable melody or continue_from track
        raise ValueError(str(exc)) from None
    except ModelNotFoundError as exc:
        raise HTTPError(404, str(exc), "model") from None
    return values, get_registry().spec(variant_id(base, precision)).id


def _track_path(library: TrackLibrary, name: str, track_id: Any) -> Path:
    try:
        return library.get(track_id).path
    except TrackError as exc:
        raise HTTPError(exc.http_status, f"{name}: {exc}", name) from None


PASSAGE_FIELDS = {"text": str, "source": str, "lines": list, "id": int, "number": int,
                  "score": float}


def _passages(value: Any) -> list[dict] | None:
    """The passages a client sends with its answer, as the chat endpoint gave them."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_PASSAGES:
        raise HTTPError(400, f"'passages' must be a list of 1 to {MAX_PASSAGES} passages, as "
                             "/v1/chat/completions returns them in 'sources'.", "passages")
    passages = []
    for i, item in enumerate(value):
        where = f"passages[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise HTTPError(400, f"'{where}' must be an object with a 'text'.", where)
        passage = {}
        for key, kind in PASSAGE_FIELDS.items():
            if item.get(key) is None:
                continue
            ok = isinstance(item[key], kind) or (kind is float and isinstance(item[key], int))
            if not ok or isinstance(item[key], bool):
                raise HTTPError(400, f"'{where}.{key}' has the wrong type.", f"{where}.{key}")
            passage[key] = item[key]
        passages.append(passage)
    return passages


def retrieve(request: MusicRequest) -> None:
    """Fill ``request.passages`` for a question that came without them (blocking; errors
    name the question): the `retrieve` tool, as a pipeline's first step."""
    config = get_config()
    state = PipelineState(question=request.question, config=config)
    options = {**config.tool_options("retrieve"), **({"k": request.k} if request.k else {})}
    try:  # the tool takes the embedding model's lane itself
        result = get_tool("retrieve").run(state, **options)
    except ValueError as exc:  # e.g. a question of stop words only
        raise HTTPError(400, str(exc), "question") from None
    request.passages = [{**p, "number": n} for n, p in enumerate(state.retrieved, 1)]
    request.notes += result.get("notes") or []
    if not request.passages:
        raise HTTPError(409, "Nothing in the store matches the question; ask about what the "
                             "store holds, or give a 'text' or 'prompt'.", "question")


def answer(request: MusicRequest, state: PipelineState) -> None:
    """Answer the question from its passages with the `answer` tool when that is wanted and an
    LLM is at hand (never downloaded, unless prompt_from is "llm"); else a note says why."""
    from musicgen.plugin.prompt import find_llm

    options = request.options
    wanted = options.get("input", "auto") in ("auto", "answer")
    if request.answer is not None or not wanted or options.get("prompt_from") == "extract":
        return
    llm = options.get("llm")
    required = options.get("prompt_from") == "llm" or options.get("input") == "answer"
    model, why_not = find_llm(llm, state.config, required=required)
    if model is None:
        request.notes.append(f"{why_not}, so there is no answer and the music prompt comes "
                             "from the passages.")
        return
    answer_options = {**state.config.tool_options("answer"), **({"model": llm} if llm else {})}
    get_tool("answer").run(state, **answer_options)
    request.answer = state.answer
