"""Chat completions with retrieval: the request, the generation, and OpenAI's response shapes.

The last user message is the question: passages are retrieved for it, numbered [1], [2], ...,
and the model answers from them (earlier turns and the caller's system messages come along).
The response is an OpenAI chat completion (or its chunks, streamed) with two extra fields:
``sources`` (the numbered passages, in the first chunk when streaming) and ``citations`` (the
passages the answer cites, in the last).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rag_core.answer import LanguageModel, Sampling, citations, stream_responses
from rag_core.server.requests import Fields, bad

ROLES = ("system", "developer", "user", "assistant")
# OpenAI name -> Sampling field; mlx-lm's server takes the same names.
SAMPLING_NAMES = {
    "temperature": "temp", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
    "max_tokens": "max_tokens", "max_completion_tokens": "max_tokens", "seed": "seed",
    "repetition_penalty": "repetition_penalty", "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty", "logit_bias": "logit_bias",
}  # fmt: skip
FIELDS = ("model", "messages", "stream", "stream_options", "stop", "k", "n", "user", "logprobs",
          "metadata", *SAMPLING_NAMES)
DEFAULT_K = 4
MAX_K = 50


@dataclass
class ChatRequest:
    """A checked chat completion request."""

    question: str
    history: list[dict] = field(default_factory=list)
    instructions: str = ""
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    k: int = DEFAULT_K
    stop: list[str] = field(default_factory=list)
    sampling: Sampling = field(default_factory=Sampling)


def parse_chat_request(body: dict) -> ChatRequest:
    """Check a /v1/chat/completions body; every problem is a 400 naming its field."""
    fields = Fields(body, allowed=FIELDS)
    if fields.integer("n", 1) != 1:
        raise bad("n", "must be 1 (one answer per request)")
    if fields.flag("logprobs"):
        raise bad("logprobs", "is not supported")
    if "max_tokens" in body and "max_completion_tokens" in body:
        raise bad("max_tokens", "and 'max_completion_tokens' mean the same; send one")
    stream_options = fields.get("stream_options", {}, False)
    if not isinstance(stream_options, dict):
        raise bad("stream_options", "must be an object such as {\"include_usage\": true}")
    options = Fields(stream_options, allowed=("include_usage",), prefix="stream_options.")
    question, history, instructions = _conversation(body.get("messages"))
    sampling = {k: v for k, v in body.items() if k in SAMPLING_NAMES}
    return ChatRequest(
        question=question, history=history, instructions=instructions,
        model=fields.text("model"), stream=fields.flag("stream"),
        include_usage=options.flag("include_usage"),
        k=fields.integer("k", DEFAULT_K, minimum=1, maximum=MAX_K),
        stop=_stop(body.get("stop")),
        sampling=Fields(sampling).dataclass(Sampling, SAMPLING_NAMES),
    )


def _conversation(messages) -> tuple[str, list[dict], str]:
    """(question, earlier turns, the caller's instructions) from OpenAI chat messages."""
    if not isinstance(messages, list) or not messages:
        raise bad("messages", "must be a non-empty array of {role, content} objects")
    turns, instructions = [], []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(where, "must be an object with 'role' and 'content'")
        role = Fields(message, prefix=f"{where}.").text("role", required=True, choices=ROLES)
        text = _content(message.get("content"), f"{where}.content")
        if role in ("system", "developer"):
            instructions.append(text)
        else:
            turns.append({"role": role, "content": text})
    if not turns or turns[-1]["role"] != "user":
        raise bad("messages", "must end with a user message: the question to answer")
    return turns[-1]["content"], turns[:-1], "\n\n".join(instructions)


def _content(content, where: str) -> str:
    """A message's text: a string, or text parts [{"type": "text", "text": ...}]."""
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            fields = Fields(part if isinstance(part, dict) else {}, prefix=f"{where}[{i}].")
            if fields.text("type", required=True) != "text":
                raise bad(f"{where}[{i}].type", "must be 'text' (only text is understood)")
            parts.append(fields.text("text", required=True))
        content = "\n".join(parts)
    if not isinstance(content, str) or not content.strip():
        raise bad(where, "must be a non-empty string (or a list of text parts)")
    return content


def _stop(stop) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise bad("stop", "must be a non-empty string or an array of them")
    if len(stops) > 4:
        raise bad("stop", "may hold at most 4 sequences")
    return stops


class StopSequences:
    """Cuts streamed text at the first stop sequence, holding back what may start one."""

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to send now, whether a stop sequence was reached)."""
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        keep = max((n for s in self.stops for n in range(1, len(s))
                    if self.pending.endswith(s[:n])), default=0)
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


@dataclass
class Delta:
    """A piece of the answer; the last one has ``finish_reason`` and the token counts."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def generate(llm: LanguageModel, chat: ChatRequest, passages: list[dict]) -> Iterator[Delta]:
    """The answer as Deltas, cut at the request's stop sequences."""
    stopper = StopSequences(chat.stop)
    last = None
    for last in stream_responses(llm, chat.question, passages, chat.sampling, chat.history,
                                 chat.instructions):
        text, stopped = stopper.feed(last.text)
        if stopped:
            yield Delta(text, "stop", last.prompt_tokens, last.generation_tokens)
            return
        if text:
            yield Delta(text)
    tail = stopper.flush()
    if last is None:
        yield Delta(tail, "stop")
        return
    yield Delta(tail, last.finish_reason or "stop", last.prompt_tokens, last.generation_tokens)


def numbered(passages: list[dict]) -> list[dict]:
    """The passages as ``sources``: each with its citation number."""
    return [{"number": n, **p} for n, p in enumerate(passages, 1)]


class Completion:
    """OpenAI's response objects for one request: chunks while streaming, or the whole."""

    def __init__(self, model: str):
        self.id = f"chatcmpl-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.model = model

    def _base(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def chunk(self, delta: dict, finish_reason: str | None = None, **extra) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._base("chat.completion.chunk"), "choices": [choice], **extra}

    def usage_chunk(self, last: Delta) -> dict:
        return {**self._base("chat.completion.chunk"), "choices": [], "usage": usage(last)}

    def whole(self, deltas: list[Delta], passages: list[dict]) -> dict:
        text = "".join(d.text for d in deltas)
        last = deltas[-1]
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "logprobs": None, "finish_reason": last.finish_reason}
        return {**self._base("chat.completion"), "choices": [choice], "usage": usage(last),
                "sources": numbered(passages), "citations": cited(text, passages)}


def usage(last: Delta) -> dict:
    return {"prompt_tokens": last.prompt_tokens, "completion_tokens": last.completion_tokens,
            "total_tokens": last.prompt_tokens + last.completion_tokens}


def cited(text: str, passages: list[dict]) -> list[dict]:
    return [{"number": c.number, "source": c.source, "lines": c.lines}
            for c in citations(text, passages)]
