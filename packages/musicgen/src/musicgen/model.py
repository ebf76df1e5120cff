"""MusicGen: text prompts -> codes (T5 + decoder) -> audio (EnCodec).

Every generation method takes a ``GenerationOptions`` (``options``) and keyword arguments that
override its fields (``duration=10, seed=7``); inputs (prompts, a melody, an audio prompt or its
codes) are arguments of their own. Arguments are checked when a method is called, before any
work.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import mlx.core as mx

from musicgen.audio_input import prepare_audio
from musicgen.codes import Progress, check_codes, codes_from_steps, report_steps
from musicgen.config import MusicGenConfig
from musicgen.continuation import encode_audio
from musicgen.decoder import MusicGenDecoder
from musicgen.delay import codebook_delays
from musicgen.errors import InvalidArgumentError
from musicgen.generate import GenerationStep, check_prompts, random_key
from musicgen.longform import (
    MelodyClips,
    check_prompt_codes,
    generation_steps,
    plan_windows,
    stride_frames,
)
from musicgen.options import TRAINED_DURATION, GenerationOptions, options_from
from musicgen.sampling import make_sampler
from musicgen.streaming import (
    CHUNK_FRAMES,
    check_chunk_frames,
    decode_chunks,
    decode_in_chunks,
    frame_chunks,
)
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

    def check_codes(self, codes: Any) -> mx.array:
        """Codes (batch, num_codebooks, frames) in the decoder's vocabulary, as int32; anything
        else raises InvalidArgumentError."""
        return check_codes(codes, self.num_codebooks, self.config.decoder.vocab_size)

    def encode_text(self, prompts: str | Sequence[str]) -> tuple[mx.array, mx.array]:
        """Prompts -> decoder-width text states (B, S, D) and their mask (B, S)."""
        ids, mask = self.tokenizer(check_prompts(prompts))
        states = self.text_encoder(ids, mask)
        return self.decoder.project_text(states, mask), mask

    def stream_tokens(
        self,
        prompts: str | Sequence[str],
        options: GenerationOptions | None = None,
        *,
        melody=None,
        melody_sample_rate: int | None = None,
        prompt_codes: mx.array | None = None,
        **overrides: Any,
    ) -> Iterator[GenerationStep]:
        """The generator form of ``generate_tokens`` (the same arguments, documented there):
        one GenerationStep per decoding step; ``musicgen.codes_from_steps`` gathers them.

        Arguments are checked when called, before the generator starts. With ``prompt_codes``
        the frames yielded are those after the prompt.
        """
        return self._steps(prompts, options, melody, melody_sample_rate, prompt_codes, overrides)[0]

    def generate_tokens(
        self,
        prompts: str | Sequence[str],
        options: GenerationOptions | None = None,
        *,
        melody=None,
        melody_sample_rate: int | None = None,
        prompt_codes: mx.array | None = None,
        progress: Progress | None = None,
        **overrides: Any,
    ) -> mx.array:
        """Codes (B, K, round(duration x frame_rate)) int32 for the prompts, delay pattern undone.

        ``options`` (default ``GenerationOptions()``) and keyword ``overrides`` of its fields
        (``duration``, ``guidance_scale``, ``top_k``, ``top_p``, ``min_p``, ``temperature``,
        ``seed``, ``extend_stride``; see GenerationOptions) say how to generate.
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
        audiocraft; musicgen.longform). ``progress(done, total)`` is called after every step.
        """
        steps, prompt = self._steps(
            prompts, options, melody, melody_sample_rate, prompt_codes, overrides
        )
        return codes_from_steps(steps, prompt, progress=progress)

    def decode(self, codes: mx.array) -> mx.array:
        """Codes (B, K, T) -> float32 audio (B, channels, T x hop) at ``sample_rate``.

        Codes longer than ``DECODE_WINDOW`` frames (or ``max_duration``) are decoded a window
        at a time (the same samples, bounded memory).
        """
        codes = self.check_codes(codes)
        if codes.shape[0] > 1 and mx.default_device() == mx.cpu:
            # On the CPU an optimized BLAS (OpenBLAS, rag_core.blas) picks other kernels for
            # other batch sizes, which round differently: decoding each row alone keeps a
            # track's samples independent of what shared its batch.
            return mx.concatenate([self.decode(codes[i : i + 1]) for i in range(len(codes))])
        window = min(round(self.max_duration * self.frame_rate), DECODE_WINDOW)
        if codes.shape[2] > window:
            return decode_in_chunks(self.codec, codes, self.audio_channels, window)
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
        self, prompts: str | Sequence[str], options: GenerationOptions | None = None, **kwargs
    ) -> mx.array:
        """Audio (B, channels, samples) float32 for the prompts: ``generate_tokens`` (whose
        arguments it takes) then ``decode``."""
        return self.decode(self.generate_tokens(prompts, options, **kwargs))

    def encode_audio(self, audio, sample_rate: int | None = None, *, batch: int = 1) -> mx.array:
        """Audio (a file path, an array (samples,) or (channels, samples), or a list of them)
        -> codes (batch, K, ceil(samples / hop)) with the EnCodec encoder, at ``sample_rate``.

        Audio at another rate is resampled; mono becomes stereo for stereo models (both
        channels alike) and stereo becomes mono for mono models (the mean). See
        musicgen.continuation.
        """
        return encode_audio(
            self.codec, audio, sample_rate, channels=self.audio_channels, batch=batch
        )

    def generate_continuation(
        self,
        prompt_audio,
        sample_rate: int | None,
        prompts: str | Sequence[str],
        options: GenerationOptions | None = None,
        *,
        melody=None,
        melody_sample_rate: int | None = None,
        progress: Progress | None = None,
        **overrides: Any,
    ) -> mx.array:
        """Audio that continues ``prompt_audio`` (B, channels, samples): the prompt, re-coded
        by EnCodec, then the continuation, ``duration`` seconds in all (as audiocraft's
        ``generate_continuation``). The prompt must be shorter than ``duration`` and 30 s.
        The other arguments are those of ``generate_tokens`` (but ``prompt_codes``).
        """
        options = options_from(options, overrides)
        codes = self._audio_prompt(prompt_audio, sample_rate, prompts)
        return self.generate(
            prompts,
            options,
            melody=melody,
            melody_sample_rate=melody_sample_rate,
            prompt_codes=codes,
            progress=progress,
        )

    def stream(
        self,
        prompts: str | Sequence[str],
        options: GenerationOptions | None = None,
        *,
        chunk_frames: int = CHUNK_FRAMES,
        prompt_audio=None,
        prompt_sample_rate: int | None = None,
        melody=None,
        melody_sample_rate: int | None = None,
        progress: Progress | None = None,
        **overrides: Any,
    ) -> Iterator[mx.array]:
        """Audio chunks (B, channels, samples) float32 while generating: ``generate`` (or
        ``generate_continuation`` with ``prompt_audio``) a piece at a time. The other arguments
        are those of ``generate_tokens`` (but ``prompt_codes``; ``progress`` hears every
        decoding step as the chunks are consumed).

        Every ``chunk_frames`` generated frames are decoded as soon as the delay pattern has
        completed them; the codec holds back its look-ahead (a few frames) until the next
        chunk. The chunks, concatenated, are the audio ``generate`` returns for the same
        arguments and seed, up to float rounding. Arguments are checked when called.
        """
        check_chunk_frames(chunk_frames)
        options = options_from(options, overrides)
        codes = None
        if prompt_audio is not None:
            codes = self._audio_prompt(prompt_audio, prompt_sample_rate, prompts)
        steps = self.stream_tokens(
            prompts,
            options,
            melody=melody,
            melody_sample_rate=melody_sample_rate,
            prompt_codes=codes,
        )
        chunks = frame_chunks(report_steps(steps, progress), chunk_frames, codes)
        return decode_chunks(self.codec, chunks, self.num_codebooks, self.audio_channels)

    def _steps(
        self,
        prompts: str | Sequence[str],
        options: GenerationOptions | None,
        melody,
        melody_sample_rate: int | None,
        prompt_codes,
        overrides: dict[str, Any],
    ) -> tuple[Iterator[GenerationStep], mx.array | None]:
        """The checked generation: its steps (lazy) and the prompt codes (B, K, P) or None."""
        prompts = check_prompts(prompts)
        options = options_from(options, overrides)
        num_frames = options.check(
            num_prompts=len(prompts), frame_rate=self.frame_rate, window=self.max_duration
        )
        window_frames = round(self.max_duration * self.frame_rate)
        if prompt_codes is not None:
            prompt_codes = check_prompt_codes(
                self.check_codes(prompt_codes),
                len(prompts),
                min(num_frames, window_frames),
                self.frame_rate,
            )
        stride = stride_frames(options.extend_stride, self.max_duration, self.frame_rate)
        prompt_frames = 0 if prompt_codes is None else prompt_codes.shape[2]
        windows = plan_windows(num_frames, window_frames, stride, prompt_frames)
        clips = self._melody(melody, melody_sample_rate, len(prompts), num_frames > window_frames)
        steps = generation_steps(
            self.decoder,
            lambda: self.encode_text(prompts),
            windows,
            delays=codebook_delays(self.num_codebooks, self.audio_channels),
            guidance_scale=options.guidance_scale,
            sampler=make_sampler(
                options.temperature, options.top_k, options.top_p, options.min_p
            ),
            key=random_key(options.seed),
            prompt_codes=prompt_codes,
            melody=clips,
        )
        return steps, prompt_codes

    def _melody(self, melody, sample_rate: int | None, batch: int, long: bool):
        """The melody clips of a generation (MelodyClips), or None without a melody."""
        if melody is None:
            return None
        if not self.config.is_melody:
            raise InvalidArgumentError(
                "melody conditioning needs a MusicGen-Melody checkpoint (e.g. "
                "facebook/musicgen-melody); this model conditions on text only."
            )
        clips = prepare_audio(
            melody,
            sample_rate,
            target_rate=self.chroma.sampling_rate,
            channels=1,
            batch=batch,
            what="melody",
        )
        window = self.max_duration if long else None
        return MelodyClips(self.chroma, clips, self.frame_rate, window)

    def _audio_prompt(self, audio, sample_rate: int | None, prompts) -> mx.array:
        """The codes of an audio prompt, one row per text prompt."""
        prompts = check_prompts(prompts)
        if audio is None:
            raise InvalidArgumentError(
                "prompt_audio is missing: give the audio (a file path or an array) to continue."
            )
        return self.encode_audio(audio, sample_rate, batch=len(prompts))
