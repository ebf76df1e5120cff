"""The MusicGen models the plugin registers, their variants, and getting one for a track.

A variant is a music model (any id, alias or folder) with a quantized decoder or another
compute dtype, registered under its own id so the registry caches it apart: ``ID@q4``,
``ID@q8``, ``ID@float16``, ``ID@bfloat16``, ``ID@float32`` and both at once (``ID@q4-float16``).
``load_music_model`` picks the variant from the ``quantize`` and ``dtype`` options, whose
"auto" dtype is float16 on a GPU (Metal, CUDA) and float32 on the CPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_core import ModelSpec, ModelUnavailableError, get_registry, looks_like_repo_id

from musicgen.errors import InvalidArgumentError
from musicgen.plugin.options import DTYPES, check_dtype, check_quantize
from musicgen.plugin.smoke import SMOKE_ID, is_smoke_checkpoint

T5_BASE = {"model_type": "t5", "vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 3072,
           "num_layers": 12, "num_heads": 12}  # fmt: skip
ENCODEC_32KHZ = {
    "model_type": "encodec", "sampling_rate": 32000, "upsampling_ratios": [8, 5, 4, 4],
    "target_bandwidths": [2.2], "codebook_size": 2048, "codebook_dim": 128, "hidden_size": 128,
    "num_filters": 64, "num_lstm_layers": 2, "use_causal_conv": False, "use_conv_shortcut": False,
}  # fmt: skip
# The hub repos' decoders (all use t5-base and encodec_32khz): (hidden, layers, heads).
HUB_MODELS = {
    "facebook/musicgen-small": (1024, 24, 16, "300M-parameter decoder; the default"),
    "facebook/musicgen-medium": (1536, 48, 24, "1.5B-parameter decoder"),
    "facebook/musicgen-large": (2048, 48, 32, "3.3B-parameter decoder"),
}
# A variant's tag (after the "@") -> (bits, dtype); None: as the base model (full precision,
# float32).
TAGS = {
    **{f"q{bits}": (bits, None) for bits in (4, 8)},
    **{dtype: (None, dtype) for dtype in DTYPES},
    **{f"q{bits}-{dtype}": (bits, dtype) for bits in (4, 8) for dtype in DTYPES},
}
Status = Callable[[str], None]


def hub_config(hidden: int, layers: int, heads: int) -> dict:
    """config.json content of a facebook/musicgen-* repo with this decoder."""
    decoder = {"model_type": "musicgen_decoder", "vocab_size": 2048, "hidden_size": hidden,
               "ffn_dim": 4 * hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
               "num_codebooks": 4, "pad_token_id": 2048, "bos_token_id": 2048}  # fmt: skip
    return {"model_type": "musicgen", "text_encoder": T5_BASE, "audio_encoder": ENCODEC_32KHZ,
            "decoder": decoder}  # fmt: skip


def float32_bytes(config: dict) -> int:
    """Memory of a loaded checkpoint in float32, from its exact layout."""
    from musicgen.plugin.layout import parameter_count

    return 4 * parameter_count(config)


def load_model(source: str):
    """The registry's loader: a local directory or a hub repo id -> a MusicGen (float32)."""
    from musicgen.loading import load

    return load(source)


def is_musicgen_dir(source: str) -> bool:
    """A local directory whose config.json says model_type musicgen or musicgen_melody."""
    path = Path(source).expanduser()
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") in ("musicgen", "musicgen_melody")


def is_musicgen_repo(source: str) -> bool:
    """A hub repo id such as facebook/musicgen-stereo-small or facebook/musicgen-melody."""
    if not looks_like_repo_id(source):
        return False
    return "musicgen" in source.split("/")[1].lower()


# ---- variants ---------------------------------------------------------------------------------


def split_variant(source: str) -> tuple[str, int | None, str | None] | None:
    """"musicgen-small@q4-float16" -> ("musicgen-small", 4, "float16"); "x@q8" -> ("x", 8,
    None); None for a source without a variant tag."""
    base, at, tag = source.rpartition("@")
    if not at or not base or tag not in TAGS:
        return None
    return (base, *TAGS[tag])


def default_dtype() -> str:
    """The "auto" dtype: float16 where MLX computes on a GPU (Metal, CUDA), float32 on the
    CPU, where half precision is slower (docs/performance.md)."""
    import mlx.core as mx

    return "float16" if mx.default_device().type == mx.DeviceType.gpu else "float32"


@dataclass(frozen=True)
class Precision:
    """How a model is loaded: ``quantize`` bits per decoder weight (None: full precision) and
    the compute ``dtype``."""

    quantize: int | None
    dtype: str

    @property
    def tag(self) -> str:
        """The variant tag: "q4-float16", "float16", "q8"; "" for float32 at full precision."""
        parts = [] if self.quantize is None else [f"q{self.quantize}"]
        return "-".join(parts + ([] if self.dtype == "float32" else [self.dtype]))


def choose_precision(model: str, quantize: int | None = None, dtype: str = "auto"
                     ) -> tuple[str, Precision]:
    """``model`` without its variant tag, and the precision to load it in: what the tag
    says, else what ``quantize`` and ``dtype`` say ("auto": ``default_dtype()``). An option
    that contradicts the tag is an InvalidArgumentError."""
    check_quantize(quantize)
    check_dtype(dtype)
    base, bits, tagged = split_variant(model) or (model, None, None)
    if bits is not None and quantize is not None and bits != quantize:
        raise InvalidArgumentError(f"model '{model}' has a {bits}-bit decoder but quantize is "
                                   f"{quantize}: give one of the two.")  # fmt: skip
    if tagged is not None and dtype not in ("auto", tagged):
        raise InvalidArgumentError(f"model '{model}' computes in {tagged} but dtype is "
                                   f"{dtype}: give one of the two.")  # fmt: skip
    dtype = tagged or (default_dtype() if dtype == "auto" else dtype)
    return base, Precision(quantize if bits is None else bits, dtype)


def variant_id(model: str, precision: Precision) -> str:
    """The registry id of ``model`` (no tag) in ``precision``: its canonical id (aliases and
    folders resolved, so they share one cached model), plus "@" and the tag if any."""
    base = get_registry().spec(model, kind="music").id
    return f"{base}@{precision.tag}" if precision.tag else base


def is_music_variant(source: str) -> bool:
    """``<music model id, alias or folder>@<tag>``, e.g. "musicgen-small@q4"."""
    from rag_core import RagError

    parts = split_variant(source)
    if parts is None or split_variant(parts[0]) is not None:
        return False
    try:
        return get_registry().spec(parts[0]).kind == "music"
    except RagError:
        return False


def load_variant(source: str):
    """The registry's loader for "<base>@<tag>": the base model's files in that precision."""
    from musicgen.loading import load

    base, bits, dtype = split_variant(source)
    spec = get_registry().spec(base)
    if spec.prepare is not None:  # the smoke checkpoint builds its files first
        spec.prepare()
    return load(spec.location, dtype or "float32", quantize=bits)


def weights_spec(spec: ModelSpec) -> ModelSpec:
    """The registry spec whose files a model loads: the base model's for a variant (so a
    quantized or float16 smoke checkpoint is still known as one), else ``spec`` itself."""
    parts = split_variant(spec.id)
    if parts is None or spec.loader is not load_variant:
        return spec
    return get_registry().spec(parts[0])


# ---- a model for a track ---------------------------------------------------------------------


@dataclass(frozen=True)
class MusicModel:
    """A loaded MusicGen with where it came from: its registry ``id`` (variant included), the
    spec whose files it was loaded from (``weights``), and its ``precision``."""

    model: Any  # musicgen.MusicGen
    id: str
    weights: ModelSpec
    precision: Precision

    @property
    def untrained(self) -> bool:
        """Made from the smoke checkpoint's random weights (in any precision)."""
        return is_smoke_checkpoint(self.weights.location)


def load_music_model(model: str, quantize: int | None = None, dtype: str = "auto", *,
                     on_status: Status | None = None, smoke_hint: bool = True) -> MusicModel:
    """``model`` (an id, alias, folder or variant id) from the registry, in the precision
    ``choose_precision`` picks; errors say what to do (with ``smoke_hint``, that the smoke
    checkpoint needs no download)."""
    base, precision = choose_precision(model, quantize, dtype)
    model_id = variant_id(base, precision)
    registry = get_registry()
    weights = weights_spec(registry.spec(model_id))
    if on_status is not None and not registry.is_loaded(model_id):
        on_status(f"Loading {model_id} ...")
    try:
        return MusicModel(registry.get(model_id, kind="music"), model_id, weights, precision)
    except ModelUnavailableError as exc:
        if weights.id == SMOKE_ID or not smoke_hint:
            raise
        error = ModelUnavailableError(
            f"{exc} To check the pipeline without a download, use the untrained smoke "
            f"checkpoint: --model {SMOKE_ID} (model = \"{SMOKE_ID}\" in [tools.music]); it "
            "makes noise, not music.")
        error.cause = getattr(exc, "cause", exc)
        raise error from None
