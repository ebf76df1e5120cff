"""Answer a question from retrieved passages with an mlx-lm model, streaming tokens and citing
passages as [1], [2], ... which `citations` maps back to their sources."""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages you are given. After each claim, "
    "cite the passages it comes from by number in square brackets, like [1] or [2][3]. "
    "If the passages do not contain the answer, say that you do not know."
)
CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
LLM_ALLOW_PATTERNS = [
    "*.json", "*.safetensors", "*.jinja", "tokenizer.model", "*.tiktoken", "*.txt",
]  # fmt: skip


MAX_SEED = 2**64 - 1  # MLX seeds are unsigned 64-bit integers


@dataclass
class Sampling:
    """Generation settings: mlx-lm's `make_sampler` (temp 0 is greedy; top_k 0, or at least
    the vocabulary size, keeps every token) and `make_logits_processors` (penalties and
    logit_bias; None leaves one out)."""

    max_tokens: int = 512
    temp: float = 0.0
    top_p: float = 0.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[int, float] | None = None  # token id -> added to its logit

    def __post_init__(self):
        problems = []
        if self.max_tokens < 1:
            problems.append(f"max_tokens must be >= 1 (got {self.max_tokens})")
        if self.temp < 0:
            problems.append(f"temp must be >= 0 (got {self.temp})")
        if not 0 <= self.top_p <= 1:
            problems.append(f"top_p must be in [0, 1] (got {self.top_p})")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (got {self.top_k})")
        if not 0 <= self.min_p <= 1:
            problems.append(f"min_p must be in [0, 1] (got {self.min_p})")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            problems.append(f"repetition_penalty must be > 0 (got {self.repetition_penalty})")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if value is not None and not -2 <= value <= 2:
                problems.append(f"{name} must be in [-2, 2] (got {value})")
        if self.logit_bias is not None:
            try:
                self.logit_bias = {int(k): float(v) for k, v in self.logit_bias.items()}
            except (TypeError, ValueError):
                problems.append("logit_bias must map token ids to numbers")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            problems.append(f"seed must be in [0, 2**64 - 1] (got {self.seed})")
        if problems:
            raise ValueError("Bad sampling options: " + "; ".join(problems) + ".")

    def sampler(self):
        """mlx-lm's sampler for these settings. mlx-lm refuses a top_k of the vocabulary size
        or more, which keeps every token anyway: it is applied as 0 (no top-k) then."""
        from mlx_lm.sample_utils import make_sampler

        samplers = {}

        def sample(logprobs):
            top_k = self.top_k if self.top_k < logprobs.shape[-1] else 0
            if top_k not in samplers:
                samplers[top_k] = make_sampler(
                    temp=self.temp, top_p=self.top_p, min_p=self.min_p, top_k=top_k
                )
            return samplers[top_k](logprobs)

        return sample

    def logits_processors(self) -> list:
        """mlx-lm logits processors for the penalties and bias that are set (often none)."""
        options = {name: getattr(self, name) for name in (
            "logit_bias", "repetition_penalty", "presence_penalty", "frequency_penalty")}
        options = {k: v for k, v in options.items() if v is not None}
        if not options:
            return []
        from mlx_lm.sample_utils import make_logits_processors

        return make_logits_processors(**options)


@dataclass
class LanguageModel:
    """An mlx-lm model with its tokenizer, as the registry hands it out (kind "llm")."""

    model: Any
    tokenizer: Any
    name: str

    def complete(self, messages: list[dict], max_tokens: int = 256) -> str:
        """The model's greedy (repeatable) reply to chat ``messages`` (``{"role",
        "content"}``), through its chat template when it has one."""
        from mlx_lm import generate
        from mlx_lm.sample_utils import make_sampler

        prompt = render_prompt(self.tokenizer, messages)
        return generate(self.model, self.tokenizer, prompt, max_tokens=max_tokens,
                        sampler=make_sampler(temp=0.0), verbose=False)


def load_llm(source: str) -> LanguageModel:
    """Load an mlx-lm model from a local directory or a hub repo id."""
    from mlx_lm import load

    from rag_core.hub import resolve_model_path

    path = resolve_model_path(source, allow_patterns=LLM_ALLOW_PATTERNS)
    model, tokenizer = load(str(path))
    return LanguageModel(model, tokenizer, str(source))


def is_mlx_lm_dir(source: str) -> bool:
    """True for a local directory holding a model of a type mlx-lm implements."""
    path = Path(source).expanduser()
    if not path.is_dir() or (path / "modules.json").exists() or not any(path.glob("*.safetensors")):
        return False
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return False
    return isinstance(model_type, str) and model_type in _mlx_lm_model_types()


@functools.cache
def _mlx_lm_model_types() -> frozenset[str]:
    """The model_type values mlx-lm loads, found without importing it (importing mlx-lm imports
    transformers, which takes seconds; registry patterns are asked about every local dir)."""
    spec = importlib.util.find_spec("mlx_lm")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    package = Path(spec.submodule_search_locations[0])
    types = {
        f.stem for f in (package / "models").glob("*.py") if "class Model(" in f.read_text()
    }
    try:  # model types mlx-lm maps onto another module, e.g. "mistral" -> "llama"
        tree = ast.parse((package / "utils.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", "") == "MODEL_REMAPPING" for t in node.targets
            ):
                types |= {k for k, v in ast.literal_eval(node.value).items() if v in types}
    except (OSError, SyntaxError, ValueError):
        pass
    return frozenset(types)


@dataclass
class Citation:
    number: int
    source: str
    lines: list[int]


@dataclass
class Answer:
    text: str
    citations: list[Citation]
    model: str
    passages: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "answer": self.text,
            "model": self.model,
            "citations": [asdict(c) for c in self.citations],
        }


def build_messages(
    question: str, passages: list[dict], history: Sequence[dict] = (), instructions: str = ""
) -> list[dict]:
    """Chat messages: the instructions (ours, then the caller's), the earlier turns of a
    conversation (``{"role", "content"}``), then the numbered passages and the question."""
    context = "\n\n".join(
        f"[{n}] {p['source']} (lines {p['lines'][0]}-{p['lines'][1]}):\n{p['text']}"
        for n, p in enumerate(passages, 1)
    )
    user = f"Passages:\n\n{context}\n\nQuestion: {question}"
    system = f"{SYSTEM_PROMPT}\n\n{instructions}" if instructions.strip() else SYSTEM_PROMPT
    return [{"role": "system", "content": system}, *history, {"role": "user", "content": user}]


def render_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of the prompt, through the model's chat template when it has one."""
    has_template = getattr(tokenizer, "has_chat_template", None)
    if has_template is None:
        has_template = bool(getattr(tokenizer, "chat_template", None))
    if has_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer.encode(text, add_special_tokens=False)
    text = "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"
    return tokenizer.encode(text)


def stream_responses(
    llm: LanguageModel,
    question: str,
    passages: list[dict],
    sampling: Sampling | None = None,
    history: Sequence[dict] = (),
    instructions: str = "",
) -> Iterator[Any]:
    """mlx-lm's response records as the answer is generated: ``text`` (a piece, maybe empty),
    ``prompt_tokens``, ``generation_tokens`` and, on the last one, ``finish_reason``."""
    import mlx.core as mx
    from mlx_lm import stream_generate

    sampling = sampling or Sampling()
    if sampling.seed is not None:
        mx.random.seed(sampling.seed)
    messages = build_messages(question, passages, history, instructions)
    prompt = render_prompt(llm.tokenizer, messages)
    yield from stream_generate(
        llm.model, llm.tokenizer, prompt, max_tokens=sampling.max_tokens,
        sampler=sampling.sampler(), logits_processors=sampling.logits_processors() or None,
    )


def stream_answer(
    llm: LanguageModel, question: str, passages: list[dict], sampling: Sampling | None = None
) -> Iterator[str]:
    """Yield the answer's text piece by piece as the model generates it."""
    for response in stream_responses(llm, question, passages, sampling):
        if response.text:
            yield response.text


def citations(text: str, passages: list[dict]) -> list[Citation]:
    """The passages cited in `text` as [n] (or [n, m]), in order of first citation."""
    numbers: dict[int, None] = {}
    for match in CITATION.finditer(text):
        for part in match.group(1).split(","):
            n = int(part)
            if 1 <= n <= len(passages):
                numbers[n] = None
    return [
        Citation(n, passages[n - 1]["source"], list(passages[n - 1]["lines"])) for n in numbers
    ]


def answer(
    llm: LanguageModel,
    question: str,
    passages: list[dict],
    sampling: Sampling | None = None,
    on_text=None,
) -> Answer:
    """Generate the whole answer (calling `on_text(piece)` as it streams) with its citations."""
    pieces = []
    for piece in stream_answer(llm, question, passages, sampling):
        pieces.append(piece)
        if on_text is not None:
            on_text(piece)
    text = "".join(pieces).strip()
    return Answer(text, citations(text, passages), llm.name, passages)
