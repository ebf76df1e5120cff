"""Meta's MusicGen in MLX: text prompts to music, loaded from transformers-format checkpoints.

import musicgen
model = musicgen.load("facebook/musicgen-small")
audio = model.generate(["lofi piano, rain"], duration=8.0, seed=0)
musicgen.save_audio("out.wav", audio[0], model.sample_rate)
"""

from musicgen.audio import save_audio
from musicgen.config import DecoderConfig, MusicGenConfig, T5Config
from musicgen.errors import AudioError, CheckpointError, InvalidArgumentError, MusicGenError
from musicgen.generate import MAX_DURATION, GenerationStep, check_options, generate_step
from musicgen.loading import load
from musicgen.model import MusicGen
from musicgen.sampling import make_sampler

__all__ = [
    "MAX_DURATION",
    "AudioError",
    "CheckpointError",
    "DecoderConfig",
    "GenerationStep",
    "InvalidArgumentError",
    "MusicGen",
    "MusicGenConfig",
    "MusicGenError",
    "T5Config",
    "check_options",
    "generate_step",
    "load",
    "make_sampler",
    "save_audio",
]
