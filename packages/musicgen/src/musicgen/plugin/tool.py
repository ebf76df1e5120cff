"""The `music` tool: text -> music prompt -> audio file + JSON sidecar, through the registry.

``make_track`` is the one code path behind the tool, `mlx-rag music generate/from-text` and the
demo. It checks every option, the output path and what the model's config.json allows
(musicgen.plugin.preflight) before loading anything, gets the model with
``rag_core.get_registry().get(model_id)``, writes the audio to a temporary file in the target
folder and renames it into place (musicgen.plugin.outputs), so an error, Ctrl-C or SIGTERM
never leaves a partial file behind. ``track_record`` and ``write_track`` (the record, then the
audio and its sidecar) are shared with the batch runner (musicgen.plugin.batch.runner).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rag_core.errors import ModelUnavailableError, PipelineError

from musicgen.audio import DEFAULT_NORMALIZE
from musicgen.errors import InvalidArgumentError
from musicgen.plugin.outputs import (
    check_free,
    find_sidecar,
    legacy_sidecar_path,
    output_path,
    reserve_output,
    sidecar_path,
    write_json,
)
from musicgen.plugin.prompt import MusicPrompt, build_prompt

DEFAULT_MODEL = "facebook/musicgen-small"
INPUTS = ("auto", "answer", "retrieved", "question")
SIDECAR_VERSION = 2  # 2: named track.wav.json; prompt_source without a copy of the prompt
StepCallback = Callable[[float, float], None]  # (done, total): steps, or a progress bar's unit
Status = Callable[[str], None]


@dataclass(frozen=True)
class Sampling:
    """How a track is generated; ``check`` raises InvalidArgumentError on a bad value."""

    duration: float = 8.0
    guidance_scale: float = 3.0
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0

    def check(self, seed: int | None = None, frame_rate: float | None = None) -> None:
        """Durations up to what ``MusicGen.generate_tokens`` accepts (long-form, in windows),
        and (given the model's ``frame_rate``) at least one frame."""
        from musicgen.generate import check_options
        from musicgen.longform import LONGFORM_MAX_DURATION

        check_options(**asdict(self), seed=seed, frame_rate=frame_rate,
                      max_duration=LONGFORM_MAX_DURATION)


def _seed(seed: int | None) -> int:
    """The seed to use: the given one, or a fresh random one (recorded, so it can be reused)."""
    return secrets.randbits(32) if seed is None else seed


def check_quantize(quantize: Any) -> int | None:
    """None (full precision), 4 or 8; InvalidArgumentError otherwise."""
    from musicgen.quantize import BITS

    if quantize is not None and (type(quantize) is not int or quantize not in BITS):
        raise InvalidArgumentError(
            f"quantize must be 4 or 8 (bits per decoder weight), got {quantize!r}; leave it "
            "out for full precision."
        )
    return quantize


def load_music_model(
    model_id: str, on_status: Status | None = None, quantize: int | None = None, *,
    smoke_hint: bool = True,
) -> tuple[Any, Any]:
    """(the loaded MusicGen, the registry spec of the checkpoint it was loaded from); errors
    say what to do (with ``smoke_hint``, that the smoke checkpoint needs no download).

    ``quantize`` (4 or 8) loads it with a quantized decoder, cached in the registry under its
    own id ("<id>@q4"), apart from the full-precision model; the spec returned is then the
    full-precision model's, whose files it was made from.
    """
    from rag_core.plugins import get_registry
    from rag_core.retrieval import get_model

    from musicgen.plugin import quantized_id, weights_spec
    from musicgen.plugin.smoke import SMOKE_ID

    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidArgumentError("model is empty: give a model id such as "
                                   f"{DEFAULT_MODEL} or a local MusicGen folder.")  # fmt: skip
    if check_quantize(quantize) is not None:
        model_id = quantized_id(model_id, quantize)
    spec = get_registry().spec(model_id)
    if on_status is not None and not get_registry().is_loaded(spec.id):
        on_status(f"Loading {model_id} ...")
    source = weights_spec(spec)
    try:
        return get_model(model_id, "music"), source
    except ModelUnavailableError as exc:
        if source.id == SMOKE_ID or not smoke_hint:
            raise
        error = ModelUnavailableError(
            f"{exc} To check the pipeline without a download, use the untrained smoke "
            f"checkpoint: --model {SMOKE_ID} (model = \"{SMOKE_ID}\" in [tools.music]); it "
            "makes noise, not music.")
        error.cause = getattr(exc, "cause", exc)
        raise error from None


def make_track(
    prompt: MusicPrompt,
    *,
    model: str = DEFAULT_MODEL,
    sampling: Sampling | None = None,
    seed: int | None = None,
    output: str | os.PathLike | None = None,
    format: str | None = None,
    normalize: str = DEFAULT_NORMALIZE,
    overwrite: bool = False,
    on_step: StepCallback | None = None,
    on_status: Status | None = None,
    melody: str | os.PathLike | None = None,
    continue_from: str | os.PathLike | None = None,
    stream: bool = False,
    quantize: int | None = None,
) -> dict:
    """Generate audio for ``prompt`` and write it with its sidecar; return the result record.

    ``melody``: an audio file whose melody conditions the music (MusicGen-Melody models).
    ``continue_from``: an audio file the track continues (it starts the track; ``duration``
    counts it). ``stream``: write the .wav/.flac file while generating (clipped, since peak
    or RMS normalization needs the whole track). ``quantize``: 4 or 8 bits per decoder
    weight (see ``load_music_model``). See docs/musicgen-features.md.
    """
    from musicgen.plugin.preflight import check_track_options
    from musicgen.plugin.smoke import NOTICE, is_smoke_checkpoint

    start = time.perf_counter()
    status = on_status or (lambda message: None)
    sampling = sampling or Sampling()
    seed = _seed(seed)
    check_track_options(model, sampling, seed, normalize=normalize, overwrite=overwrite,
                        melody=melody, continue_from=continue_from, stream=stream,
                        quantize=quantize)  # fmt: skip
    path = output_path(output, prompt.text, format)
    if stream:
        if path.suffix.lower() not in (".wav", ".flac"):
            raise InvalidArgumentError(f"cannot stream to {path.name}: use a .wav or .flac file.")
        normalize = "clip"
    with reserve_output(path, overwrite) as tmp:
        music, spec = load_music_model(model, status, quantize)
        untrained = is_smoke_checkpoint(spec.location)
        if untrained:
            status(f"Note: '{model}' is an {NOTICE}")
        prompt = with_cut_note(prompt, music.tokenizer, status)
        loaded = time.perf_counter()
        status(f"Generating {sampling.duration:g} s with {model} (seed {seed}) ...")
        audio_prompt = None if continue_from is None else music.encode_audio(continue_from)
        steps = music.stream_tokens(prompt.text, seed=seed, melody=melody,
                                    prompt_codes=audio_prompt, **asdict(sampling))  # fmt: skip
        steps = _reported(steps, on_step)
        audio = None
        if stream:
            from musicgen.streaming import CHUNK_FRAMES, decode_stream, frame_chunks, write_stream

            status(f"Streaming to {tmp} (renamed to {path.name} when done) ...")
            chunks = decode_stream(music, frame_chunks(steps, CHUNK_FRAMES, audio_prompt))
            write_stream(tmp, chunks, music.sample_rate, format=path.suffix)
            generated = decoded = time.perf_counter()
            import soundfile

            info = soundfile.info(str(tmp))
            channels, samples = info.channels, info.frames
        else:
            import mlx.core as mx

            frames = [step.frame for step in steps if step.frame is not None]
            codes = mx.stack(frames, axis=-1)
            if audio_prompt is not None:
                codes = mx.concatenate([audio_prompt, codes], axis=-1)
            mx.eval(codes)
            generated = time.perf_counter()
            audio = music.decode(codes)[0]
            decoded = time.perf_counter()
            channels, samples = audio.shape
            clipping = clipping_note(audio, normalize, path.suffix)
            if clipping:
                status(f"Note: {clipping}")
        parameters = {**asdict(sampling), "normalize": normalize}
        for key, audio_file in (("melody", melody), ("continue_from", continue_from)):
            if audio_file is not None:
                parameters[key] = str(audio_file)
        if stream:
            parameters["stream"] = True
        if quantize is not None:
            parameters["quantize"] = quantize
        record = track_record(path, prompt, model=model, model_source=spec.location,
                              untrained=untrained, seed=seed, parameters=parameters,
                              sample_rate=music.sample_rate, channels=channels,
                              samples=samples)  # fmt: skip
        record["timings"] = {
            "load_s": round(loaded - start, 3),
            "generate_s": round(generated - loaded, 3),
            "decode_s": round(decoded - generated, 3),
        }
        written = write_track(path, audio, record, normalize=normalize, overwrite=overwrite,
                              tmp=tmp, started=start)  # fmt: skip
    return {key: written[key] for key in record}


def with_cut_note(prompt: MusicPrompt, tokenizer: Any, status: Status | None = None
                  ) -> MusicPrompt:
    """``prompt``, with a note when it is longer than the text encoder reads (where it was
    cut; the note also goes to ``status``)."""
    cut = tokenizer.cut_point(prompt.text)
    if cut is None:
        return prompt
    tail = " ".join(prompt.text[:cut].split()[-6:])
    note = (f"The prompt is longer than the text encoder reads ({tokenizer.max_length} "
            f"tokens): it was cut after character {cut} of {len(prompt.text)}, at "
            f"'...{tail}'; the rest was not used.")  # fmt: skip
    if status is not None:
        status(f"Note: {note}")
    return dataclasses.replace(prompt, notes=[*prompt.notes, note])


def clipping_note(audio: Any, normalize: str, suffix: str) -> str | None:
    """What ``normalize`` "none" costs: samples beyond [-1, 1] that a 16-bit .wav/.flac file
    clips (.ogg keeps them); None when nothing is clipped."""
    import numpy as np

    if normalize != "none" or suffix.lower() not in (".wav", ".flac"):
        return None
    clipped = int(np.sum(np.abs(np.asarray(audio)) > 1.0))
    if not clipped:
        return None
    return (f"--normalize none: {clipped} samples lie beyond [-1, 1] and were clipped to fit the "
            f"16-bit {suffix.lower()} file; --normalize peak scales the track to fit instead.")


def track_record(
    path: Path,
    prompt: MusicPrompt,
    *,
    model: str,
    model_source: str,
    untrained: bool,
    seed: int,
    parameters: dict,
    sample_rate: int,
    channels: int,
    samples: int,
) -> dict:
    """The result record of a track written to ``path`` (the sidecar's content, but the
    timings and what ``sidecar`` adds). The prompt is stored once, in ``prompt``."""
    from musicgen.plugin import split_quantized
    from musicgen.plugin.smoke import NOTICE

    def quantized_bits(model_id: str) -> int | None:  # "musicgen-small@q4" given as the model
        parts = split_quantized(model_id)
        return None if parts is None else parts[1]

    record = {
        "path": str(path.resolve()),
        "sidecar": str(sidecar_path(path).resolve()),
        "format": path.suffix[1:].lower(),
        "prompt": prompt.text,
        "prompt_source": {k: v for k, v in prompt.to_dict().items() if k != "text"},
        "model": model,
        "model_source": model_source,
        "untrained": untrained,
        "seed": seed,
        "parameters": parameters,
        "duration": round(samples / sample_rate, 4),
        "sample_rate": sample_rate,
        "channels": channels,
        "quantize": parameters.get("quantize") or quantized_bits(model),
    }
    if untrained:
        record["notice"] = NOTICE
    return record


def write_track(
    path: Path,
    audio: Any,
    record: dict,
    *,
    normalize: str = DEFAULT_NORMALIZE,
    overwrite: bool = False,
    tmp: Path | None = None,
    started: float | None = None,
) -> dict:
    """Write ``audio`` (channels, samples) to ``path``, then its sidecar; return the sidecar.

    The audio goes through a temporary file renamed into place (``tmp``: one already reserved
    with ``reserve_output``; ``audio=None``: ``tmp`` already holds it, as after streaming).
    An older sidecar of the same track (``track.json``) is removed once the new one is written.
    ``record["timings"]`` gets ``write_s``, and ``total_s`` since ``started``.
    """
    from musicgen.audio import save_audio

    begin = time.perf_counter()
    with contextlib.nullcontext(tmp) if tmp is not None else reserve_output(path, overwrite) as tmp:
        if audio is not None:
            save_audio(tmp, audio, record["sample_rate"], normalize=normalize,
                       format=path.suffix)
        check_free(path, overwrite, when="appeared while generating")
        legacy = find_sidecar(path) if overwrite else None
        os.replace(tmp, path)
    done = time.perf_counter()
    timings = {**record.get("timings", {}), "write_s": round(done - begin, 3)}
    if started is not None:
        timings["total_s"] = round(done - started, 3)
    data = sidecar({**record, "timings": timings})
    write_json(sidecar_path(path), data)
    if legacy is not None and legacy == legacy_sidecar_path(path):  # it described the old audio
        legacy.unlink(missing_ok=True)
    return data


def _reported(steps, on_step: StepCallback | None):
    """The generation steps, each reported to ``on_step`` (done, total) as it is consumed."""
    for step in steps:
        if on_step is not None:
            on_step(step.index + 1, step.num_steps)
        yield step


def sidecar(record: dict) -> dict:
    """The sidecar: the result record plus what it takes to reproduce the track."""
    from importlib.metadata import PackageNotFoundError, version

    def version_of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "unknown"

    p = record["parameters"]
    command = [
        "mlx-rag", "music", "generate", record["prompt"], "--model", record["model"],
        "--duration", f"{p['duration']:g}", "--seed", str(record["seed"]),
        "--guidance-scale", f"{p['guidance_scale']:g}", "--top-k", str(p["top_k"]),
        "--top-p", f"{p['top_p']:g}", "--temperature", f"{p['temperature']:g}",
        "--normalize", p["normalize"], "--output", Path(record["path"]).name,
    ]  # fmt: skip
    for key, flag in (("melody", "--melody"), ("continue_from", "--continue")):
        if p.get(key):
            command += [flag, p[key]]
    if p.get("stream"):
        command.append("--stream")
    if p.get("quantize"):
        command += ["--quantize", str(p["quantize"])]
    return {
        "sidecar_version": SIDECAR_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generator": {
            "musicgen": version_of("mlx-rag-musicgen"),
            "rag_core": version_of("rag-core"),
            "mlx": version_of("mlx"),
            "python": sys.version.split()[0],
        },
        **record,
        "reproduce": shlex.join(command),
    }


# ---- the tool --------------------------------------------------------------------------------


def source_text(state, input: str, text: str | None) -> tuple[str | list[str], dict]:
    """The text the prompt is built from (retrieved passages: a list, best first), and
    build_prompt's provenance arguments."""
    if text is not None:
        if not isinstance(text, str):
            raise InvalidArgumentError(f"text must be a string, got {type(text).__name__}.")
        return text, {"input": "text"}
    if input not in INPUTS:
        raise InvalidArgumentError(f"input must be one of {', '.join(INPUTS)}, got {input!r}.")
    if input == "auto":
        input = "answer" if state.answer else "retrieved" if state.retrieved else "question"
    if input == "answer":
        if not state.answer and "answer" in state.outputs:
            raise PipelineError("The answer step returned an empty answer, so there is nothing "
                                'to make music from; try input = "retrieved".')  # fmt: skip
        if not state.answer:
            raise PipelineError(
                "The music step takes input = \"answer\" but there is no answer: put an answer "
                'step before it, e.g. steps = [{tool = "retrieve"}, {tool = "answer"}, '
                '{tool = "music", input = "answer"}].'
            )
        return state.answer, {"input": "answer"}
    if input == "retrieved":
        if not state.retrieved:
            raise PipelineError(
                "The music step takes input = \"retrieved\" but no passages were retrieved: put a "
                'retrieve step before it (steps = [{tool = "retrieve"}, {tool = "music"}]), or '
                "ask about something the store holds."
            )
        chunks = state.retrieved
        return [c["text"] for c in chunks], {
            "input": "retrieved",
            "chunk_ids": [c.get("id") for c in chunks],
            "sources": [str(c.get("source")) for c in chunks if c.get("source")],
        }
    return state.question or "", {"input": "question"}


def run(
    state,
    input: str = "auto",
    text: str | None = None,
    prompt: str | None = None,
    prompt_from: str = "auto",
    llm: str | None = None,
    model: str = DEFAULT_MODEL,
    duration: float = 8.0,
    seed: int | None = None,
    guidance_scale: float = 3.0,
    top_k: int = 250,
    top_p: float = 0.0,
    temperature: float = 1.0,
    output: str | None = None,
    format: str | None = None,
    normalize: str = DEFAULT_NORMALIZE,
    overwrite: bool = False,
    melody: str | None = None,
    continue_from: str | None = None,
    stream: bool = False,
    quantize: int | None = None,
) -> dict:
    """Turn the answer, the retrieved passages or the question (``input``; "auto" takes the
    first that exists, in that order) into music; ``prompt`` skips prompt building.
    ``melody``, ``continue_from``, ``stream`` and ``quantize``: see ``make_track``."""
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidArgumentError("prompt must be a non-empty string.")
        music_prompt = MusicPrompt(" ".join(prompt.split()), "given", "prompt")
    else:
        source, provenance = source_text(state, input, text)
        music_prompt = build_prompt(source, prompt_from=prompt_from, llm=llm,
                                    config=state.config, **provenance)  # fmt: skip
    sampling = Sampling(duration, guidance_scale, top_k, top_p, temperature)
    with progress_bar("music") as bar:
        def on_step(done, total):  # the terminal's bar, and the pipeline's (a server job's)
            bar(done, total)
            state.progress(done, total)

        return make_track(music_prompt, model=model, sampling=sampling, seed=seed, output=output,
                          format=format, normalize=normalize, overwrite=overwrite,
                          on_step=on_step, melody=melody, continue_from=continue_from,
                          stream=stream, quantize=quantize)  # fmt: skip


@contextlib.contextmanager
def progress_bar(
    description: str,
    enabled: bool | None = None,
    *,
    unit: str = "step",
    bar_format: str | None = None,
) -> Iterator[StepCallback]:
    """A callback ``(done, total)`` that drives a tqdm bar on stderr, counting ``unit``s
    (generation steps by default).

    ``enabled=None`` shows it only on a terminal, and not with ``mlx-rag --quiet``. The bar
    starts at the first report, when the total is known, and starts again if the total changes.
    """
    from rag_core.cli.output import is_quiet
    from tqdm import tqdm

    if enabled is None and is_quiet():
        enabled = False
    bar = None

    def on_step(done: int, total: int) -> None:
        nonlocal bar
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, desc=description, unit=unit, leave=False, file=sys.stderr,
                       bar_format=bar_format,
                       disable=None if enabled is None else not enabled)  # fmt: skip
        bar.update(done - bar.n)

    try:
        yield on_step
    finally:
        if bar is not None:
            bar.close()
