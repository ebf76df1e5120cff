"""Loading transformers-format MusicGen checkpoints (facebook/musicgen-small and kin).

A checkpoint directory holds config.json (model_type musicgen; text_encoder, audio_encoder and
decoder sub-configs), the weights as model.safetensors or as shards with
model.safetensors.index.json (float32 or float16), and the T5 tokenizer files. Every problem is
reported as a CheckpointError naming the file and what is wrong with it; pickled
pytorch_model.bin weights are never opened here (see ``python -m musicgen.convert``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from rag_core import mark_phase, resolve_model_path

from musicgen.config import MusicGenConfig, dtype_from_name
from musicgen.decoder import MusicGenDecoder
from musicgen.errors import CheckpointError
from musicgen.kernels import persist_compiled_kernels
from musicgen.model import MusicGen
from musicgen.quantize import check_bits, quantize_model
from musicgen.t5 import T5Encoder
from musicgen.tokenizer import PromptTokenizer
from musicgen.warmup import WarmUp

ALLOW_PATTERNS = [
    "config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",  # MusicGen-Melody's chroma settings
]
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

Weights = dict[str, mx.array]


def load(
    path_or_repo: str | os.PathLike,
    dtype: str = "float32",
    *,
    progress: bool = True,
    quantize: int | None = None,
) -> MusicGen:
    """Load a MusicGen model from a local directory or a Hugging Face repo id.

    ``dtype`` ("float32", "float16" or "bfloat16") is the compute type of the text encoder and
    the decoder; the EnCodec codec always runs in float32. Sizes come from config.json alone.
    ``quantize`` (4 or 8) stores the decoder layers' and the T5 encoder's matmul weights in that
    many bits (see ``musicgen.quantize``).
    """
    dtype = dtype_from_name(dtype)
    quantize = check_bits(quantize)
    persist_compiled_kernels()  # before anything compiles a GPU kernel
    path = resolve_model_path(path_or_repo, ALLOW_PATTERNS, progress=progress)
    config = MusicGenConfig.from_file(path / "config.json")
    tokenizer = PromptTokenizer.from_dir(path)
    if tokenizer.vocab_size > config.text_encoder.vocab_size:
        raise CheckpointError(
            f"{path / 'tokenizer.json'} has {tokenizer.vocab_size} tokens but the text encoder in "
            f"config.json embeds only {config.text_encoder.vocab_size}: the tokenizer belongs to "
            "another model."
        )
    weights, origin = read_weights(path)  # lazy: read from the files when evaluated
    groups = _split_components(weights, origin, path)
    del weights  # each tensor is then held by its module alone (see _evaluate_in_parts)
    mark_phase("load.files")

    text_encoder, decoder = T5Encoder(config.text_encoder), _decoder(config)
    text_encoder.set_dtype(dtype)
    decoder.set_dtype(dtype)
    text_encoder = _load_module(
        text_encoder, groups.pop("text_encoder"), T5Encoder.sanitize, "text_encoder", origin, path
    )
    decoder = _load_module(
        decoder, groups.pop("decoder"), MusicGenDecoder.sanitize, "decoder", origin, path
    )
    mark_phase("load.modules")
    codec = load_codec(config, groups.pop("audio_encoder"), origin, path)
    mark_phase("load.codec")
    warm_up = WarmUp()  # the kernels of each part loaded while the later parts are read
    warm_up.run("codec", lambda: codec.decode(mx.zeros((1, codec.num_codebooks, 8), mx.int32)))
    chroma = None
    if config.is_melody:
        from musicgen.chroma import ChromaExtractor

        chroma = ChromaExtractor.from_dir(path)
    model = MusicGen(config, tokenizer, text_encoder, decoder, codec, chroma)
    quantize_model(model, quantize)
    _evaluate_in_parts(text_encoder)
    mark_phase("load.text_encoder")
    warm_up.run("text encoder", lambda: text_encoder(*_dummy_prompt()))
    _evaluate_in_parts(decoder)
    mark_phase("load.decoder")
    warm_up.wait()
    mark_phase("load.warm_up")
    return model


def _dummy_prompt() -> tuple[mx.array, mx.array]:
    """Token ids and mask of a two-token prompt, for a warm-up pass."""
    return mx.zeros((1, 2), mx.int32), mx.ones((1, 2), mx.int32)


def _cast_as_read(module: nn.Module, weights: Weights, sanitize) -> Weights:
    """``weights``, each cast (lazily) to the dtype of the parameter of ``module`` it becomes.

    Casting before ``sanitize`` means that a tensor it joins from several (the decoder's
    q/k/v projections) is joined in the compute dtype: a float32 checkpoint loaded as float16
    is then read once and written once in float16, never joined in float32 and cast again.
    A tensor that ``sanitize`` passes on unchanged gets its parameter's dtype (the decoder's
    heads stay float32); a joined one the dtype of the module's other parameters.
    """
    expected = dict(tree_flatten(module.parameters()))
    key_of = {id(value): key for key, value in weights.items()}
    targets = {}
    for name, value in sanitize(dict(weights)).items():
        key = key_of.get(id(value))
        if key is not None and name in expected:
            targets[key] = expected[name].dtype
    dtypes = [v.dtype for v in expected.values()]
    common = max(set(dtypes), key=dtypes.count) if dtypes else None
    return {
        key: value.astype(targets.get(key, common))
        if common is not None and mx.issubdtype(value.dtype, mx.floating)
        else value
        for key, value in weights.items()
    }


def _evaluate_in_parts(module: nn.Module) -> None:
    """Evaluate ``module``'s parameters a layer at a time.

    Each parameter is still lazy here: read from the checkpoint, cast to the compute dtype and,
    with ``quantize``, quantized. Evaluated together, every full-precision tensor would be read
    before the first is released (float32 musicgen-small: 2.4 GB, for 0.5 GB kept in 4 bits);
    one layer at a time (each item of a list of modules, such as the decoder's layers), at
    most one layer's worth is alive at once, in a few dozen evaluations rather than one per
    submodule (each is a round trip to the device).
    """
    own = [v for v in module.values() if isinstance(v, mx.array)]
    parts: list = [own] if own else []
    for child in module.children().values():
        parts.extend(child if isinstance(child, (list, tuple)) else [child])
    for part in parts:
        mx.eval(part.parameters() if isinstance(part, nn.Module) else part)
    mx.eval(module.parameters())


def _decoder(config: MusicGenConfig):
    """The LM of the checkpoint's model_type: cross-attention (musicgen) or prefix (melody)."""
    if config.is_melody:
        from musicgen.melody import MelodyDecoder

        return MelodyDecoder(
            config.decoder, config.text_encoder.d_model, config.num_chroma, config.chroma_length
        )
    return MusicGenDecoder(config.decoder, config.text_encoder.d_model)


def load_codec(config: MusicGenConfig, weights: Weights, origin: dict[str, str], path: Path):
    """The EnCodec model of the checkpoint, from its 'audio_encoder.' weights, in float32."""
    from musicgen.encodec import EncodecConfig, EncodecModel

    codec_config = EncodecConfig.from_dict(config.audio_encoder)
    decoder = config.decoder
    # The LM may use fewer codebooks than the codec stores (audiocraft's set_num_codebooks):
    # encode and decode with the first ones, as transformers does.
    per_channel = decoder.num_codebooks // decoder.audio_channels
    if per_channel > codec_config.num_quantizers:
        raise CheckpointError(
            f"{path / 'config.json'}: the decoder predicts {decoder.num_codebooks} codebooks "
            f"({per_channel} per audio channel) but the audio_encoder stores only "
            f"{codec_config.num_quantizers} (codebook_size {codec_config.codebook_size} and "
            f"target_bandwidths {codec_config.target_bandwidths} at {codec_config.frame_rate} "
            "frames/s): the decoder and the codec come from different models."
        )
    codec = EncodecModel(codec_config, num_codebooks=per_channel)
    if codec.config.codebook_size != decoder.vocab_size:
        raise CheckpointError(
            f"{path / 'config.json'}: decoder.vocab_size {decoder.vocab_size} differs from "
            f"audio_encoder.codebook_size {codec.config.codebook_size}."
        )
    # Text-to-music never encodes: the encoder's weights stay on disk until `encode` asks.
    codec.defer_encoder(lambda: _codec_encoder_weights(path))
    decoding = {k: v for k, v in weights.items() if not k.startswith(_CODEC_ENCODER)}
    codec = _load_module(codec, decoding, EncodecModel.sanitize, "audio_encoder", origin, path)
    mx.eval(codec.parameters())
    return codec


_CODEC_ENCODER = "encoder."


def _codec_encoder_weights(path: Path) -> Weights:
    """The EnCodec encoder's tensors, read again from the checkpoint in ``path`` on first use."""
    try:
        weights, origin = read_weights(path)
    except (CheckpointError, OSError) as exc:
        raise CheckpointError(
            f"The EnCodec encoder (used to encode audio, e.g. for continuation) is read from "
            f"{path} on first use, but that checkpoint can no longer be read: {exc} Restore the "
            "checkpoint, or load the model again from a complete copy."
        ) from None
    encoding = {
        k: v
        for k, v in _split_components(weights, origin, path)["audio_encoder"].items()
        if k.startswith(_CODEC_ENCODER)
    }
    from musicgen.encodec import EncodecConfig, EncodecModel
    from musicgen.encodec.seanet import EncodecEncoder

    config = MusicGenConfig.from_file(path / "config.json")
    module = EncodecEncoder(EncodecConfig.from_dict(config.audio_encoder))
    n = len(_CODEC_ENCODER)

    def sanitize(w: Weights) -> Weights:
        return {k[n:]: v for k, v in EncodecModel.sanitize(w).items()}

    module = _load_module(module, encoding, sanitize, "audio_encoder", origin, path)
    return dict(tree_flatten(module.parameters()))


def read_weights(path: Path) -> tuple[Weights, dict[str, str]]:
    """All tensors of the checkpoint in ``path`` and, for each, the file it came from."""
    index = path / INDEX_FILE
    if index.is_file():
        files = _index_files(index)
    elif (path / SINGLE_FILE).is_file():
        files = {SINGLE_FILE: None}
    else:
        raise CheckpointError(_no_weights_message(path))
    weights, origin = {}, {}
    for name, expected_keys in files.items():
        file = path / name
        keys = _check_safetensors(file)
        if expected_keys is not None and set(keys) != expected_keys:
            missing = sorted(expected_keys - set(keys))
            raise CheckpointError(
                f"{file} does not hold the tensors {INDEX_FILE} assigns to it "
                f"(e.g. missing {_few(missing)}): re-download the checkpoint."
                if missing
                else f"{file} holds tensors {INDEX_FILE} does not list: "
                f"{_few(sorted(set(keys) - expected_keys))}."
            )
        try:
            tensors = mx.load(str(file))
        except Exception as exc:  # mlx raises RuntimeError/ValueError on bad files
            raise CheckpointError(
                f"{file} could not be read ({exc}); the download may be damaged: fetch it again."
            ) from None
        for key, value in tensors.items():
            if key in weights:
                raise CheckpointError(f"{file}: tensor '{key}' also appears in {origin[key]}.")
            weights[key] = value
            origin[key] = name
    return weights, origin


def _index_files(index: Path) -> dict[str, set[str]]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            raise TypeError("empty weight_map")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index} is not a valid safetensors index: {exc}") from None
    files: dict[str, set[str]] = {}
    for key, name in weight_map.items():
        files.setdefault(name, set()).add(key)
    for name in files:
        if not (index.parent / name).is_file():
            raise CheckpointError(
                f"{index.parent / name} is missing: {INDEX_FILE} lists it as a weight shard. "
                "Download all shards of the checkpoint."
            )
    return files


def _no_weights_message(path: Path) -> str:
    if any(path.glob("pytorch_model*.bin")):
        return (
            f"{path} has only pickled PyTorch weights (pytorch_model.bin), which are never loaded "
            "directly. Convert them once with `python -m musicgen.convert "
            f"{path} OUTPUT_DIR` (needs torch) and load OUTPUT_DIR."
        )
    if any(path.glob("model-*.safetensors")):
        return f"{path} has weight shards but no {INDEX_FILE}: download the index file too."
    return (
        f"{path} has no weights ({SINGLE_FILE} or sharded safetensors with {INDEX_FILE}). If the "
        "repo has only pytorch_model.bin, download it and run `python -m musicgen.convert`."
    )


def _check_safetensors(file: Path) -> list[str]:
    """The tensor names in a safetensors file, after checking it is complete."""
    size = file.stat().st_size
    try:
        with open(file, "rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            if size < 8 or header_size > size - 8:
                raise ValueError("the header is cut off")
            header = json.loads(f.read(header_size))
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointError(
            f"{file} is not a valid safetensors file ({exc}); fetch it again."
        ) from None
    if 8 + header_size + end != size:
        raise CheckpointError(
            f"{file} is truncated or damaged: it has {size} bytes but its header describes "
            f"{8 + header_size + end}. Download it again."
        )
    return list(tensors)


def _split_components(weights: Weights, origin: dict[str, str], path: Path) -> dict[str, Weights]:
    """Group tensors by sub-model; the prefix is removed except for the decoder's."""
    groups: dict[str, Weights] = {"text_encoder": {}, "audio_encoder": {}, "decoder": {}}
    stray = []
    for key, value in weights.items():
        prefix = key.split(".", 1)[0]
        if prefix in ("text_encoder", "audio_encoder"):
            groups[prefix][key[len(prefix) + 1 :]] = value
        elif prefix in ("decoder", "enc_to_dec_proj", "audio_enc_to_dec_proj"):
            groups["decoder"][key] = value
        else:
            stray.append(key)
    if stray:
        raise CheckpointError(
            f"{path / origin[stray[0]]}: unexpected tensors {_few(sorted(stray))} "
            "(a MusicGen checkpoint holds only text_encoder.*, audio_encoder.*, decoder.*, "
            "enc_to_dec_proj.* and, for melody, audio_enc_to_dec_proj.*)."
        )
    return groups


def _load_module(
    module: nn.Module,
    weights: Weights,
    sanitize: Callable[[Weights], Weights],
    component: str,
    origin: dict[str, str],
    path: Path,
) -> nn.Module:
    """Check that ``weights`` fit ``module`` exactly, by name and shape, then load them, each
    cast as it is read to its parameter's dtype (``_cast_as_read``: the codec's weight norm is
    then folded in float32, whatever the storage type)."""
    weights = _cast_as_read(module, weights, sanitize)
    full_names = {id(v): k for k, v in weights.items()}
    prefix = "" if component == "decoder" else component + "."
    sanitized = sanitize(dict(weights))
    expected = dict(tree_flatten(module.parameters()))

    def label(name: str) -> str:
        found = full_names.get(id(sanitized.get(name)))
        if found is None:
            return f"'{component}: {name}'"
        return f"'{prefix}{found}' ({origin[prefix + found]})"

    problems = []
    missing = sorted(expected.keys() - sanitized.keys())
    if missing:
        problems.append(f"{len(missing)} missing ({_few([f'{component}: {m}' for m in missing])})")
    unexpected = sorted(sanitized.keys() - expected.keys())
    if unexpected:
        labels = [label(u) for u in unexpected]
        problems.append(f"{len(unexpected)} unexpected ({_few(labels, quote=False)})")
    for name in sorted(expected.keys() & sanitized.keys()):
        got, want = tuple(sanitized[name].shape), tuple(expected[name].shape)
        if got != want:
            problems.append(f"{label(name)} has shape {got} but config.json implies {want}")
    if problems:
        files = ", ".join(sorted(set(origin.values())))
        raise CheckpointError(
            f"{path} ({files}): the {component} tensors do not match config.json: "
            + "; ".join(problems[:4])
            + ". The weights and config.json come from different models, or a file is damaged."
        )
    module.load_weights(list(sanitized.items()), strict=True)
    return module


def _few(items: list[str], limit: int = 3, quote: bool = True) -> str:
    shown = ", ".join(f"'{i}'" if quote else i for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
