"""Checks before any work, past the values (checked when the options are made): the model's
precision, the audio inputs, and what the model's config.json says.

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
from typing import TYPE_CHECKING, Any

from musicgen.errors import AudioError, InvalidArgumentError
from musicgen.options import GenerationOptions
from musicgen.plugin.options import TrackOptions

if TYPE_CHECKING:
    from musicgen.plugin.models import Precision


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
        from rag_core import looks_like_repo_id

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
    """The facts of a registered music model (``ModelNotFoundError`` for an unknown id,
    ``ModelKindError`` for a model of another kind), or None when its config.json is not at
    hand or not readable (loading then reports it)."""
    from rag_core import get_registry

    from musicgen.config import MusicGenConfig
    from musicgen.encodec import EncodecConfig
    from musicgen.errors import CheckpointError
    from musicgen.plugin.models import weights_spec
    from musicgen.plugin.smoke import SMOKE_ID, smoke_config, vocab_size

    spec = weights_spec(get_registry().spec(model_id, kind="music"))
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
    options: GenerationOptions,
    *,
    melody: str | os.PathLike | None = None,
    continue_from: str | os.PathLike | None = None,
) -> None:
    """Check ``options``, ``melody`` and ``continue_from`` against what the model's
    config.json says, without loading it."""
    melody_info = None if melody is None else check_audio_file("melody", melody)
    prompt_info = None if continue_from is None else check_audio_file("continue_from",
                                                                      continue_from)
    if prompt_info is not None and prompt_info.duration >= options.duration:
        raise InvalidArgumentError(
            f"continue_from: {continue_from} lasts {prompt_info.duration:.2f} s, but the track "
            f"it starts lasts {options.duration:g} s (--duration counts it): ask for a longer "
            "duration or trim the audio."
        )
    facts = model_facts(model_id)
    if facts is None:
        return
    options.check(frame_rate=facts.frame_rate)
    if melody_info is not None and not facts.is_melody:
        raise InvalidArgumentError(
            f"melody: '{model_id}' conditions on text only; melody conditioning needs a "
            "MusicGen-Melody checkpoint (e.g. facebook/musicgen-melody)."
        )


def check_track(options: GenerationOptions, track: TrackOptions) -> tuple[str, Precision]:
    """Every check ``make_track`` makes before loading, past those the options made when they
    were made: the model's precision, the audio files, and what its config.json allows
    (InvalidArgumentError, AudioError, ModelNotFoundError). Returns the model's base id and
    the precision it will be loaded in (``choose_precision``)."""
    from musicgen.plugin.models import choose_precision

    chosen = choose_precision(track.model, track.quantize, track.dtype)
    check_with_model(track.model, options, melody=track.melody,
                     continue_from=track.continue_from)
    return chosen


def check_music_options(music: dict, smoke: bool = False) -> tuple[str, Precision]:
    """The music tool's checks on ``music`` (its options by name; with ``smoke``, for the
    smoke checkpoint) before anything is loaded or queued: ``check_track``, then that the
    output is free. Returns ``check_track``'s base id and precision."""
    from musicgen.plugin.options import split_options
    from musicgen.plugin.outputs import check_free, output_path
    from musicgen.plugin.smoke import SMOKE_ID

    _, generation, track = split_options({**music, "model": SMOKE_ID} if smoke else music)
    chosen = check_track(generation, track)
    check_free(output_path(track.output, "", track.format), track.overwrite)
    return chosen
