"""MusicGen: text prompts -> codes (T5 + decoder) -> audio (EnCodec)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import mlx.core as mx

from musicgen.config import MusicGenConfig
from musicgen.decoder import MusicGenDecoder
from musicgen.delay import codebook_delays
from musicgen.errors import InvalidArgumentError
from musicgen.generate import (
    GenerationStep,
    check_options,
    check_prompts,
    generate_step,
    random_key,
)
from musicgen.sampling import make_sampler
from musicgen.t5 import T5Encoder
from musicgen.tokenizer import PromptTokenizer


class MusicGen:
    """A loaded MusicGen model; build it with ``musicgen.load``."""

    def __init__(
        self,
        config: MusicGenConfig,
        tokenizer: PromptTokenizer,
        text_encoder: T5Encoder,
        decoder: MusicGenDecoder,
        codec: Any,
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.decoder = decoder
        self.codec = codec  # musicgen.encodec.EncodecModel

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sampling_rate)

    @property
    def frame_rate(self) -> float:
        """Codec frames (decoder steps) per second of audio."""
        return self.codec.frame_rate

    @property
    def num_codebooks(self) -> int:
        return self.config.decoder.num_codebooks

    @property
    def audio_channels(self) -> int:
        return self.config.decoder.audio_channels

    @property
    def dtype(self) -> mx.Dtype:
        return self.decoder.layer_norm.weight.dtype

    def encode_text(self, prompts: str | Sequence[str]) -> tuple[mx.array, mx.array]:
        """Prompts -> decoder-width text states (B, S, D) and their mask (B, S)."""
        ids, mask = self.tokenizer(check_prompts(prompts))
        states = self.text_encoder(ids, mask)
        return self.decoder.project_text(states, mask), mask

    def stream_tokens(
        self,
        prompts: str | Sequence[str],
        *,
        duration: float = 8.0,
        guidance_scale: float = 3.0,
        top_k: int = 250,
        top_p: float = 0.0,
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> Iterator[GenerationStep]:
        """The generator form of ``generate_tokens``: one GenerationStep per decoding step.

        Arguments are checked when called, before the generator starts.
        """
        prompts = check_prompts(prompts)
        num_frames = check_options(
            duration=duration,
            guidance_scale=guidance_scale,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            seed=seed,
            frame_rate=self.frame_rate,
        )
        states, mask = self.encode_text(prompts)
        return generate_step(
            self.decoder,
            states,
            mask,
            num_frames=num_frames,
            guidance_scale=guidance_scale,
            sampler=make_sampler(temperature, top_k, top_p),
            key=random_key(seed),
            delays=codebook_delays(self.num_codebooks, self.audio_channels),
        )

    def generate_tokens(
        self,
        prompts: str | Sequence[str],
        *,
        duration: float = 8.0,
        guidance_scale: float = 3.0,
        top_k: int = 250,
        top_p: float = 0.0,
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> mx.array:
        """Codes (B, K, round(duration x frame_rate)) int32 for the prompts, delay pattern undone.

        ``temperature=0`` or ``top_k=1`` is greedy; ``seed`` makes sampling reproducible.
        """
        steps = self.stream_tokens(
            prompts,
            duration=duration,
            guidance_scale=guidance_scale,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            seed=seed,
        )
        frames = [step.frame for step in steps if step.frame is not None]
        codes = mx.stack(frames, axis=-1)
        mx.eval(codes)
        return codes

    def decode(self, codes: mx.array) -> mx.array:
        """Codes (B, K, T) -> float32 audio (B, channels, T x hop) at ``sample_rate``."""
        codes = self._check_codes(codes)
        if self.audio_channels == 2:  # interleaved left/right codebooks
            audio = mx.concatenate(
                [self.codec.decode(codes[:, 0::2]), self.codec.decode(codes[:, 1::2])], axis=1
            )
        else:
            audio = self.codec.decode(codes)
        audio = audio.astype(mx.float32)
        mx.eval(audio)
        return audio

    def generate(
        self,
        prompts: str | Sequence[str],
        *,
        duration: float = 8.0,
        guidance_scale: float = 3.0,
        top_k: int = 250,
        top_p: float = 0.0,
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> mx.array:
        """Audio (B, channels, samples) float32 for the prompts: generate_tokens then decode."""
        codes = self.generate_tokens(
            prompts,
            duration=duration,
            guidance_scale=guidance_scale,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            seed=seed,
        )
        return self.decode(codes)

    def _check_codes(self, codes: Any) -> mx.array:
        codes = mx.array(codes) if not isinstance(codes, mx.array) else codes
        K, vocab = self.num_codebooks, self.config.decoder.vocab_size
        if codes.ndim != 3 or codes.shape[1] != K or codes.shape[2] < 1:
            raise InvalidArgumentError(
                f"codes must have shape (batch, {K}, frames), got {tuple(codes.shape)}."
            )
        if not mx.issubdtype(codes.dtype, mx.integer):
            raise InvalidArgumentError(f"codes must be integers, got {codes.dtype}.")
        if codes.size and (mx.min(codes).item() < 0 or mx.max(codes).item() >= vocab):
            raise InvalidArgumentError(f"codes must lie in [0, {vocab}).")
        return codes.astype(mx.int32)
