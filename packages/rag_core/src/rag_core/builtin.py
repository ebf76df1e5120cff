"""rag_core's own plugin (name "rag_core"): the retrieval models and the `retrieve`/`answer` tools.

Loaded by the plugin manager like any other plugin, so it can be turned off the same way.
"""

from __future__ import annotations

from rag_core.answer import Sampling, answer, is_mlx_lm_dir, load_llm
from rag_core.config import get_config
from rag_core.embeddings import is_sentence_transformer_dir
from rag_core.embeddings import load as load_embedder
from rag_core.embeddings.sentence_transformer import ALLOW_PATTERNS as EMBEDDING_FILES
from rag_core.errors import PipelineError
from rag_core.hookspecs import hookimpl
from rag_core.hub import looks_like_repo_id
from rag_core.registry import ModelPattern, ModelSpec
from rag_core.tools import Tool

EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LLM_MODEL = "mlx-community/Qwen2.5-0.5B-Instruct-4bit"
LLM_FILES = ("*.json", "*.safetensors", "*.jinja", "tokenizer.model", "*.txt")


def _hub_repo(owner: str):
    return lambda source: looks_like_repo_id(source) and source.split("/")[0] == owner


@hookimpl
def register_models(register):
    """The default embedding and answering models, and the local/hub families they come from."""
    register(ModelSpec(
        id=EMBEDDING_MODEL, kind="embedding", loader=load_embedder,
        aliases=("all-MiniLM-L6-v2",), size_bytes=91_000_000,
        description="sentence embeddings (384-d, BERT, MLX) for dense and hybrid search",
        allow_patterns=tuple(EMBEDDING_FILES),
    ))  # fmt: skip
    register(ModelSpec(
        id=LLM_MODEL, kind="llm", loader=load_llm, aliases=("qwen2.5-0.5b",),
        size_bytes=280_000_000,
        description="small instruct model (4-bit, mlx-lm) that answers with citations",
        allow_patterns=LLM_FILES,
    ))  # fmt: skip
    register(ModelPattern(
        name="sentence-transformers-dir", kind="embedding", loader=load_embedder,
        matches=is_sentence_transformer_dir,
        description="a local sentence-transformers directory with a BERT-family model",
    ))  # fmt: skip
    register(ModelPattern(
        name="sentence-transformers-hub", kind="embedding", loader=load_embedder,
        matches=_hub_repo("sentence-transformers"),
        description="a sentence-transformers/NAME repo on the Hugging Face Hub",
    ))  # fmt: skip
    register(ModelPattern(
        name="mlx-lm-dir", kind="llm", loader=load_llm, matches=is_mlx_lm_dir,
        description="a local mlx-lm model directory (config.json, safetensors, tokenizer)",
    ))  # fmt: skip
    register(ModelPattern(
        name="mlx-community-hub", kind="llm", loader=load_llm,
        matches=_hub_repo("mlx-community"),
        description="an mlx-community/NAME language model on the Hugging Face Hub",
    ))  # fmt: skip


def retrieve_tool(state, k: int = 4, mode: str = "auto", store: str | None = None) -> dict:
    """Find the `k` passages that best match the question; fills `state.retrieved`."""
    from rag_core.retrieval import retrieve  # the store: imported when a pipeline retrieves

    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    response = retrieve(state.question, k=k, mode=mode, store=store, config=state.config)
    state.retrieved = [r.to_dict() for r in response.results]
    return {"query": response.query, "mode": response.mode, "notes": response.notes,
            "chunks": state.retrieved}


def answer_tool(
    state,
    model: str | None = None,
    max_tokens: int = 512,
    temp: float = 0.0,
    top_p: float = 0.0,
    top_k: int = 0,
    min_p: float = 0.0,
    seed: int | None = None,
) -> dict:
    """Answer the question from the retrieved passages with citations; fills `state.answer`."""
    if not state.retrieved:
        raise PipelineError(
            "The answer step has no passages to answer from: put a retrieve step before it, "
            'e.g. steps = [{tool = "retrieve"}, {tool = "answer"}].'
        )
    from rag_core.plugins import model_lane
    from rag_core.retrieval import get_llm

    sampling = Sampling(max_tokens, temp, top_p, top_k, min_p, seed)
    model = model or (state.config or get_config()).get("llm.model")
    llm = get_llm(model, state.config)
    with model_lane(model):  # one generation at a time per model, as in the server
        result = answer(llm, state.question, state.retrieved, sampling)
    state.answer = result.text
    return result.to_dict()


@hookimpl
def register_tools(register):
    """The `retrieve` and `answer` steps of RAG pipelines."""
    register(Tool("retrieve", retrieve_tool, "hybrid (BM25 + dense) search of the document store"))
    register(Tool("answer", answer_tool, "answer from the retrieved passages, citing them [n]"))
