"""The prompt tokenizer: the repo's own tokenizer.json, padded as transformers pads a batch.

Prompts longer than the text encoder reads (tokenizer_config.json's ``model_max_length``, 512
for T5) are cut there, ending with ``</s>`` as a truncated T5 input does; ``cut_point`` says
where, so callers can tell the user.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from tokenizers import Tokenizer

from musicgen.errors import CheckpointError


class PromptTokenizer:
    """Prompts -> (token ids (B, S) int32, attention mask (B, S) int32), right-padded."""

    def __init__(self, tokenizer: Tokenizer, pad_id: int, max_length: int | None = None):
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.max_length = max_length  # tokens the text encoder reads (None: no limit)
        if max_length is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(max_length)

    @classmethod
    def from_dir(cls, path: Path) -> PromptTokenizer:
        file = path / "tokenizer.json"
        if not file.is_file():
            hint = (
                " The repo has only spiece.model: run `python -m musicgen.convert` on it to write "
                "tokenizer.json."
                if (path / "spiece.model").is_file()
                else ""
            )
            raise CheckpointError(
                f"{file} is missing: MusicGen needs the repo's tokenizer files.{hint}"
            )
        try:
            tokenizer = Tokenizer.from_file(str(file))
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise CheckpointError(f"{file} could not be read as a tokenizer: {exc}") from None
        tokenizer.no_padding()
        pad = _pad_token(path)
        pad_id = tokenizer.token_to_id(pad)
        if pad_id is None:
            raise CheckpointError(f"{file}: the pad token {pad!r} is not in the vocabulary.")
        return cls(tokenizer, pad_id, _max_length(path))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def cut_point(self, prompt: str) -> int | None:
        """Where ``prompt`` is cut to fit ``max_length`` tokens: the number of its characters
        the text encoder reads; None when it reads all of them."""
        encoding = self.tokenizer.encode(prompt)
        if not encoding.overflowing:
            return None
        ends = [end for (_, end), special in zip(encoding.offsets, encoding.special_tokens_mask,
                                                 strict=True) if not special]
        return max(ends, default=0)

    def __call__(self, prompts: list[str]) -> tuple[mx.array, mx.array]:
        encodings = self.tokenizer.encode_batch(prompts)
        length = max(len(e.ids) for e in encodings)
        ids = [e.ids + [self.pad_id] * (length - len(e.ids)) for e in encodings]
        mask = [[1] * len(e.ids) + [0] * (length - len(e.ids)) for e in encodings]
        return mx.array(ids, dtype=mx.int32), mx.array(mask, dtype=mx.int32)


def _pad_token(path: Path) -> str:
    """The pad token named by tokenizer_config.json or special_tokens_map.json ('<pad>' for T5)."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            pad = json.loads((path / name).read_text()).get("pad_token")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(pad, dict):
            pad = pad.get("content")
        if isinstance(pad, str):
            return pad
    return "<pad>"


def _max_length(path: Path) -> int | None:
    """tokenizer_config.json's model_max_length; None when absent or "unlimited" (1e30)."""
    try:
        length = json.loads((path / "tokenizer_config.json").read_text()).get("model_max_length")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(length, bool) or not isinstance(length, (int, float)):
        return None
    return int(length) if 1 <= length <= 1_000_000 else None
