"""MusicGen: text prompts -> codes (T5 + decoder) -> audio (EnCodec)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import mlx.core as mx

from musicgen.config import MusicGenConfig
from musicgen.decoder import MusicGenDecoder
from musicgen.errors import InvalidArgumentError
from musicgen.generate import GenerationStep, check_prompts
from musicgen.longform import TRAINED_DURATION, generation_steps
from musicgen.t5 import T5Encoder
from musicgen.tokenizer import PromptTokenizer

# Frames EnCodec decodes at a time: its float32 activations peak near 5 MB per frame and clip
# (encodec_32khz), so a 10 s clip decoded whole would need 2.5 GB, in 1 s windows 0.27 GB.
DECODE_WINDOW = 50


class MusicGen:
    """A loaded MusicGen model; build it with ``musicgen.load``."""

    def __init__(
        self,
        config: MusicGenConfig,
        tokenizer: PromptTokenizer,
        text_encoder: T5Encoder,
        decoder: MusicGenDecoder,
        codec: Any,
        chroma: Any = None,
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.decoder = decoder  # MusicGenDecoder, or melody.MelodyDecoder for melody checkpoints
        self.codec = codec  # musicgen.encodec.EncodecModel
        self.chroma = chroma  # chroma.ChromaExtractor of melody checkpoints, else None
        # Seconds generated in one window (what the model was trained on); longer pieces are
        # generated in windows (musicgen.longform).
        self.max_duration = TRAINED_DURATION

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

    def stream_tokens(self, prompts: str | Sequence[str], **options) -> Iterator[GenerationStep]:
        """The generator form of ``generate_tokens`` (the same keyword options, documented
        there): one GenerationStep per decoding step.

        Arguments are checked when called, before the generator starts. With ``prompt_codes``
        the frames yielded are those after the prompt.
        """
        return generation_steps(self, prompts, **generation_options(options))

    def generate_tokens(
        self,
        prompts: str | Sequence[str],
        *,
        duration: float = 8.0,
        guidance_scale: float = 3.0,
        top_k: int = 250,
        top_p: float = 0.0,
        temperature: float = 1.0,
        seed: int | Sequence[int] | None = None,
        melody=None,
        melody_sample_rate: int | None = None,
        prompt_codes: mx.array | None = None,
        extend_stride: float | None = None,
    ) -> mx.array:
        """Codes (B, K, round(duration x frame_rate)) int32 for the prompts, delay pattern undone.

        ``temperature=0`` or ``top_k=1`` is greedy; ``seed`` makes sampling reproducible; a
        list of seeds (one per prompt) samples row b as a batch of one with ``seed[b]`` would.
        ``guidance_scale`` > 1 guides as transformers does, 1 skips the unconditional branch,
        and values below 1 apply the same formula (0 is unconditional; transformers has no
        working path there).
        ``melody`` (MusicGen-Melody checkpoints): a file path or an array at
        ``melody_sample_rate`` (one clip, or one per prompt) whose chroma conditions the music.
        ``prompt_codes`` (B, K, P), e.g. from ``encode_audio``, are continued: they are the
        first P frames of the result. Beyond ``max_duration`` (30 s) the piece is generated in
        windows that each re-feed the last 30 - ``extend_stride`` seconds (default 18 s, as
        audiocraft; musicgen.longform).
        """
        steps = self.stream_tokens(
            prompts,
            duration=duration,
            guidance_scale=guidance_scale,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            seed=seed,
            melody=melody,
            melody_sample_rate=melody_sample_rate,
            prompt_codes=prompt_codes,
            extend_stride=extend_stride,
        )
        frames = [step.frame for step in steps if step.frame is not None]
        codes = mx.stack(frames, axis=-1)
        if prompt_codes is not None:
            prompt = self._check_codes(prompt_codes)
            prompt = mx.broadcast_to(prompt, (codes.shape[0], *prompt.shape[1:]))
            codes = mx.concatenate([prompt, codes], axis=-1)
        mx.eval(codes)
        return codes

    def decode(self, codes: mx.array) -> mx.array:
        """Codes (B, K, T) -> float32 audio (B, channels, T x hop) at ``sample_rate``.

        Codes longer than ``DECODE_WINDOW`` frames (or ``max_duration``) are decoded a window
        at a time (the same samples, bounded memory).
        """
        codes = self._check_codes(codes)
        if codes.shape[0] > 1 and mx.default_device() == mx.cpu:
            # On the CPU an optimized BLAS (OpenBLAS, rag_core.blas) picks other kernels for
            # other batch sizes, which round differently: decoding each row alone keeps a
            # track's samples independent of what shared its batch.
            return mx.concatenate([self.decode(codes[i : i + 1]) for i in range(len(codes))])
        window = min(round(self.max_duration * self.frame_rate), DECODE_WINDOW)
        if codes.shape[2] > window:
            from musicgen.streaming import decode_in_chunks

            return decode_in_chunks(self, codes, window)
        if self.audio_channels == 2:  # interleaved left/right codebooks
            audio = mx.concatenate(
                [self.codec.decode(codes[:, 0::2]), self.codec.decode(codes[:, 1::2])], axis=1
            )
        else:
            audio = self.codec.decode(codes)
        audio = audio.astype(mx.float32)
        mx.eval(audio)
        return audio

    def generate(self, prompts: str | Sequence[str], **options) -> mx.array:
        """Audio (B, channels, samples) float32 for the prompts: ``generate_tokens`` (whose
        keyword options it takes) then ``decode``."""
        return self.decode(self.generate_tokens(prompts, **options))

    def encode_audio(self, audio, sample_rate: int | None = None, *, batch: int = 1) -> mx.array:
        """Audio (a file path, an array (samples,) or (channels, samples), or a list of them)
        -> codes (batch, K, ceil(samples / hop)) with the EnCodec encoder, at ``sample_rate``.

        Audio at another rate is resampled; mono becomes stereo for stereo models (both
        channels alike) and stereo becomes mono for mono models (the mean). See
        musicgen.continuation.
        """
        from musicgen.continuation import encode_audio

        return encode_audio(self, audio, sample_rate, batch=batch)

    def generate_continuation(
        self, prompt_audio, sample_rate: int | None, prompts: str | Sequence[str], **options
    ) -> mx.array:
        """Audio that continues ``prompt_audio`` (B, channels, samples): the prompt, re-coded
        by EnCodec, then the continuation, ``duration`` seconds in all (as audiocraft's
        ``generate_continuation``). The prompt must be shorter than ``duration`` and 30 s.
        Keyword options: those of ``generate_tokens`` but ``prompt_codes``.
        """
        from musicgen.continuation import continuation_codes

        options = generation_options(options, exclude=("prompt_codes",))
        codes = continuation_codes(self, prompt_audio, sample_rate, prompts)
        return self.generate(prompts, **options, prompt_codes=codes)

    def stream(
        self,
        prompts: str | Sequence[str],
        *,
        chunk_frames: int = 50,
        prompt_audio=None,
        prompt_sample_rate: int | None = None,
        **options,
    ) -> Iterator[mx.array]:
        """Audio chunks (B, channels, samples) float32 while generating: ``generate`` (or
        ``generate_continuation`` with ``prompt_audio``) a piece at a time. Keyword options:
        those of ``generate_tokens`` but ``prompt_codes``.

        Every ``chunk_frames`` generated frames are decoded as soon as the delay pattern has
        completed them; the codec holds back its look-ahead (a few frames) until the next
        chunk. The chunks, concatenated, are the audio ``generate`` returns for the same
        arguments and seed, up to float rounding. Arguments are checked when called.
        """
        from musicgen.continuation import continuation_codes
        from musicgen.streaming import check_chunk_frames, decode_stream, frame_chunks

        check_chunk_frames(chunk_frames)
        options = generation_options(options, exclude=("prompt_codes",))
        codes = None
        if prompt_audio is not None:
            codes = continuation_codes(self, prompt_audio, prompt_sample_rate, prompts)
        steps = self.stream_tokens(prompts, **options, prompt_codes=codes)
        return decode_stream(self, frame_chunks(steps, chunk_frames, codes))

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


def generation_options(options: dict, exclude: tuple[str, ...] = ()) -> dict:
    """``options`` checked against the keywords of ``MusicGen.generate_tokens`` (the one
    definition of the generation options), with its defaults filled in (but for ``exclude``).

    An unknown keyword, or one in ``exclude``, is a TypeError as for any Python call.
    """
    unknown = [name for name in options if name not in GENERATION_DEFAULTS or name in exclude]
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
    defaults = {k: v for k, v in GENERATION_DEFAULTS.items() if k not in exclude}
    return {**defaults, **options}


GENERATION_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(MusicGen.generate_tokens).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
}
