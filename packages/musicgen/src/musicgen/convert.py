"""Convert a pickled MusicGen checkpoint (pytorch_model.bin) to safetensors, once, explicitly.

    python -m musicgen.convert SRC DST

SRC is a local directory or a hub repo id holding pytorch_model.bin (or its shards with
pytorch_model.bin.index.json); DST receives model.safetensors (sharded when large), config.json
and the tokenizer files, ready for ``musicgen.load(DST)``. Needs torch, which unpickles the
weights with ``weights_only=True``; ``musicgen.load`` itself never unpickles anything.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from rag_core import RagError, resolve_model_path

from musicgen.errors import CheckpointError, MusicGenError

COPIED_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "spiece.model",
)
BIN_INDEX = "pytorch_model.bin.index.json"
DEFAULT_SHARD_BYTES = 5 * 2**30


def convert(
    src: str | Path, dst: str | Path, *, max_shard_bytes: int = DEFAULT_SHARD_BYTES
) -> Path:
    """Write the safetensors form of the checkpoint at ``src`` into ``dst``; return ``dst``."""
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError:
        raise MusicGenError(
            "converting pytorch_model.bin needs torch: `pip install torch`, then run again."
        ) from None
    src = resolve_model_path(src, ["*.json", "pytorch_model*.bin", "spiece.model"])
    dst = Path(dst)
    if not (src / "config.json").is_file():
        raise CheckpointError(f"{src / 'config.json'} is missing: is {src} a MusicGen checkpoint?")
    tensors = {}
    for file in _bin_files(src):
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for damaged or unsafe pickles
            raise CheckpointError(f"{file} could not be read as PyTorch weights: {exc}") from None
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise CheckpointError(f"{file} does not hold a plain state dict of tensors.")
        # Tied tensors share storage, which safetensors refuses: give each its own copy.
        tensors.update({k: v.detach().clone().contiguous() for k, v in state.items()})
    dst.mkdir(parents=True, exist_ok=True)
    _save_sharded(tensors, dst, max_shard_bytes, save_file)
    for name in COPIED_FILES:
        if (src / name).is_file() and (src / name).resolve() != (dst / name).resolve():
            shutil.copyfile(src / name, dst / name)
    if not (dst / "tokenizer.json").is_file():
        _write_tokenizer_json(src, dst)
    return dst


def _bin_files(src: Path) -> list[Path]:
    index = src / BIN_INDEX
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{index} is not a valid index: {exc}") from None
        missing = [n for n in names if not (src / n).is_file()]
        if missing:
            raise CheckpointError(f"{src / missing[0]} is missing: {BIN_INDEX} lists it.")
        return [src / n for n in names]
    if (src / "pytorch_model.bin").is_file():
        return [src / "pytorch_model.bin"]
    raise CheckpointError(f"{src} has no pytorch_model.bin (nor {BIN_INDEX}) to convert.")


def _save_sharded(tensors: dict, dst: Path, max_bytes: int, save_file) -> None:
    shards: list[dict] = [{}]
    size = 0
    for key, value in tensors.items():
        nbytes = value.numel() * value.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = value
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], dst / "model.safetensors", metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, dst / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(v.numel() * v.element_size() for v in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (dst / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _write_tokenizer_json(src: Path, dst: Path) -> None:
    """Old repos ship only spiece.model: let transformers write the fast tokenizer.json."""
    try:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    except Exception as exc:  # ImportError, or sentencepiece/protobuf missing, or bad files
        raise CheckpointError(
            f"{src} has no tokenizer.json and it could not be made from spiece.model ({exc}); "
            "install transformers and sentencepiece, or copy tokenizer.json from the original "
            "repo into the output directory."
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m musicgen.convert",
        description="Convert a MusicGen pytorch_model.bin checkpoint to safetensors (needs torch).",
    )
    parser.add_argument("src", help="checkpoint directory or hub repo id with pytorch_model.bin")
    parser.add_argument("dst", help="output directory for model.safetensors and config files")
    parser.add_argument(
        "--max-shard-gb", type=float, default=DEFAULT_SHARD_BYTES / 2**30, help="shard size limit"
    )
    args = parser.parse_args(argv)
    try:
        dst = convert(args.src, args.dst, max_shard_bytes=int(args.max_shard_gb * 2**30))
    except RagError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {dst}; load it with musicgen.load({str(dst)!r}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
