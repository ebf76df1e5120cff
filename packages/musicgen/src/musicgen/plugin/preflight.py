"""Checks before any work: every option of a track, and what the model's config.json says.

A model's frame rate and whether it takes a melody come from config.json, read from a local
folder or the Hugging Face cache (never downloaded), so that a duration shorter than one frame
or a melody for a text-only model fails before a download or a load, not after. When the
config.json cannot be had without a download, these checks are left to the model itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musicgen.audio import DEFAULT_NORMALIZE
from musicgen.errors import AudioError, InvalidArgumentError


@dataclass(frozen=True)
class ModelFacts:
    """What a checkpoint's config.json says about the audio it generates."""

    frame_rate: float  # codec frames (decoder steps) per second
    is_melody: bool  # MusicGen-Melody: takes a melody
    audio_channels: int


def local_config(location: str) -> dict | None:
    """config.json of a model folder or of a hub repo in the local cache; None otherwise."""
    folder = Path(location).expanduser()
    if folder.is_dir():
        file = folder / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache
        from rag_core.hub import looks_like_repo_id

        if not looks_like_repo_id(location):
            return None
        cached = try_to_load_from_cache(location, "config.json")
        if not isinstance(cached, str):
            return None
        file = Path(cached)
    try:
        values = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return values if isinstance(values, dict) else None


def model_facts(model_id: str) -> ModelFacts | None:
    """The facts of a registered music model (``ModelNotFoundError`` for an unknown id), or
    None when its config.json is not at hand or not readable (loading then reports it)."""
    from rag_core import get_registry

    from musicgen.config import MusicGenConfig
    from musicgen.encodec import EncodecConfig
    from musicgen.errors import CheckpointError
    from musicgen.plugin import weights_spec
    from musicgen.plugin.smoke import SMOKE_ID, smoke_config, vocab_size

    spec = weights_spec(get_registry().spec(model_id))
    values = local_config(spec.location)
    if values is None and spec.id == SMOKE_ID:  # built on first use: its config is known
        values = smoke_config(vocab_size())
    if values is None:
        return None
    try:
        config = MusicGenConfig.from_dict(values)
        codec = EncodecConfig.from_dict(config.audio_encoder)
        frame_rate = codec.frame_rate
    except (CheckpointError, TypeError, ValueError, ZeroDivisionError):
        return None
    return ModelFacts(frame_rate, config.is_melody, config.decoder.audio_channels)


def check_audio_file(name: str, path: str | os.PathLike) -> Any:
    """soundfile's info on an audio file; AudioError when it is missing or not audio."""
    import soundfile

    file = Path(path).expanduser()
    if not file.is_file():
        raise AudioError(f"{name}: {path} is not an audio file; give a wav, flac or ogg file "
                         "that exists.")  # fmt: skip
    try:
        return soundfile.info(str(file))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise AudioError(f"{name}: {path} cannot be read as audio ({exc}); give a wav, flac "
                         "or ogg file.") from None


def check_with_model(
    model_id: str,
    sampling: Any,
    seed: Any = None,
    *,
    melody: str | os.PathLike | None = None,
    continue_from: str | os.PathLike | None = None,
) -> None:
    """Check ``sampling`` (a ``Sampling``), ``melody`` and ``continue_from`` against what the
    model's config.json says, without loading it."""
    melody_info = None if melody is None else check_audio_file("melody", melody)
    prompt_info = None if continue_from is None else check_audio_file("continue_from",
                                                                      continue_from)
    if prompt_info is not None and prompt_info.duration >= sampling.duration:
        raise InvalidArgumentError(
            f"continue_from: {continue_from} lasts {prompt_info.duration:.2f} s, but the track "
            f"it starts lasts {sampling.duration:g} s (--duration counts it): ask for a longer "
            "duration or trim the audio."
        )
    facts = model_facts(model_id)
    if facts is None:
        return
    sampling.check(seed, frame_rate=facts.frame_rate)
    if melody_info is not None and not facts.is_melody:
        raise InvalidArgumentError(
            f"melody: '{model_id}' conditions on text only; melody conditioning needs a "
            "MusicGen-Melody checkpoint (e.g. facebook/musicgen-melody)."
        )


def check_track_options(
    model: str,
    sampling: Any,
    seed: int | None,
    *,
    normalize: str = DEFAULT_NORMALIZE,
    overwrite: bool = False,
    melody: str | os.PathLike | None = None,
    continue_from: str | os.PathLike | None = None,
    stream: bool = False,
    quantize: int | None = None,
) -> None:
    """Every check ``make_track`` makes before loading: the values, the audio files, and what
    the model's config.json allows (InvalidArgumentError, AudioError, ModelNotFoundError)."""
    from musicgen.audio import NORMALIZE_MODES
    from musicgen.plugin.tool import DEFAULT_MODEL, check_quantize

    sampling.check(seed)
    if normalize not in NORMALIZE_MODES:
        raise InvalidArgumentError(
            f"normalize must be one of {', '.join(NORMALIZE_MODES)}, got {normalize!r}."
        )
    for name, flag in (("overwrite", overwrite), ("stream", stream)):
        if not isinstance(flag, bool):
            raise InvalidArgumentError(f"{name} must be true or false, got {flag!r}.")
    check_quantize(quantize)
    if not isinstance(model, str) or not model.strip():
        raise InvalidArgumentError("model is empty: give a model id such as "
                                   f"{DEFAULT_MODEL} or a local MusicGen folder.")  # fmt: skip
    check_with_model(model, sampling, seed, melody=melody, continue_from=continue_from)
