"""Meta's MusicGen in MLX: text prompts to music, loaded from transformers-format checkpoints.

import musicgen
model = musicgen.load("facebook/musicgen-small")
audio = model.generate(["lofi piano, rain"], duration=8.0, seed=0)
musicgen.save_audio("out.wav", audio[0], model.sample_rate)

options = musicgen.GenerationOptions(duration=8.0, min_p=0.05, seed=0)
audio = model.generate(["lofi piano, rain"], options)
"""

from musicgen.audio import save_audio
from musicgen.codes import check_codes, codes_from_steps
from musicgen.config import DecoderConfig, MusicGenConfig, T5Config
from musicgen.errors import AudioError, CheckpointError, InvalidArgumentError, MusicGenError
from musicgen.generate import GenerationStep, generate_step
from musicgen.loading import load
from musicgen.model import MusicGen
from musicgen.options import (
    MAX_DURATION,
    GenerationOptions,
    OptionField,
    check_options,
    option_fields,
)
from musicgen.sampling import make_sampler

__all__ = [
    "MAX_DURATION",
    "AudioError",
    "CheckpointError",
    "DecoderConfig",
    "GenerationOptions",
    "GenerationStep",
    "InvalidArgumentError",
    "MusicGen",
    "MusicGenConfig",
    "MusicGenError",
    "OptionField",
    "T5Config",
    "check_codes",
    "check_options",
    "codes_from_steps",
    "generate_step",
    "load",
    "make_sampler",
    "option_fields",
    "save_audio",
]
