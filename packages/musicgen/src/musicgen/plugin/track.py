"""Making a track: a music prompt -> an audio file and its sidecar, through the registry.

``make_track`` is the one code path behind the `music` tool, `mlx-rag music generate` and
`from-text`, and the demo. It checks everything before loading anything (the options when
they were made, then the output path and what the model's config.json allows:
musicgen.plugin.preflight), gets the model from the registry in the precision asked for
(musicgen.plugin.models), generates with the model's own ``generate_tokens`` or ``stream``,
and writes the audio to a temporary file in the target folder that is renamed into place
(musicgen.plugin.outputs), so an error, Ctrl-C or SIGTERM never leaves a partial file behind.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from typing import Any

from rag_core import mark_phase

from musicgen.errors import InvalidArgumentError
from musicgen.options import GenerationOptions
from musicgen.plugin.models import load_music_model
from musicgen.plugin.options import TrackOptions
from musicgen.plugin.outputs import output_path, reserve_output
from musicgen.plugin.preflight import check_track
from musicgen.plugin.prompt import MusicPrompt
from musicgen.plugin.sidecar import track_parameters, track_record, write_track
from musicgen.plugin.smoke import NOTICE

Progress = Callable[[int, int], None]  # (steps done, steps in all)
Status = Callable[[str], None]


def with_seed(options: GenerationOptions) -> GenerationOptions:
    """``options`` with one seed: the given one, or a fresh random one (recorded, so the track
    can be made again); a list of seeds is for several prompts, not a track."""
    if isinstance(options.seed, tuple):
        raise InvalidArgumentError(
            f"seed must be one integer for a track, got a list of {len(options.seed)}."
        )
    return options if options.seed is not None else options.replace(seed=secrets.randbits(32))


def make_track(
    prompt: MusicPrompt,
    options: GenerationOptions | None = None,
    track: TrackOptions | None = None,
    *,
    on_step: Progress | None = None,
    on_status: Status | None = None,
) -> dict:
    """Generate audio for ``prompt`` and write it with its sidecar; return the result record.

    ``options``: how to generate (default: the defaults, with a random seed); ``track``: the
    model, its precision and the file (musicgen.plugin.options.TrackOptions). ``on_step(done,
    total)`` hears every generation step (raising there stops it); ``on_status`` gets status
    lines. See docs/musicgen.md.
    """
    start = time.perf_counter()
    status = on_status or (lambda message: None)
    options = with_seed(options or GenerationOptions())
    track = track or TrackOptions()
    check_track(options, track)
    path = output_path(track.output, prompt.text, track.format)
    if track.stream and path.suffix.lower() not in (".wav", ".flac"):
        raise InvalidArgumentError(f"cannot stream to {path.name}: use a .wav or .flac file.")
    normalize = "clip" if track.stream else track.normalize
    with reserve_output(path, track.overwrite) as tmp:
        mark_phase("checks")
        loaded = load_music_model(track.model, track.quantize, track.dtype, on_status=status)
        music = loaded.model
        if loaded.untrained:
            status(f"Note: '{track.model}' is an {NOTICE}")
        prompt = with_cut_note(prompt, music.tokenizer, status)
        mark_phase("load")
        ready = time.perf_counter()
        status(f"Generating {options.duration:g} s with {track.model} (seed {options.seed}) ...")
        if track.stream:
            from musicgen.streaming import write_stream

            status(f"Streaming to {tmp} (renamed to {path.name} when done) ...")
            chunks = music.stream(prompt.text, options, prompt_audio=track.continue_from,
                                  melody=track.melody, progress=on_step)  # fmt: skip
            write_stream(tmp, chunks, music.sample_rate, format=path.suffix)
            mark_phase("generate")
            generated = decoded = time.perf_counter()
            import soundfile

            info = soundfile.info(str(tmp))
            audio, channels, samples = None, info.channels, info.frames
        else:
            prompt_codes = None
            if track.continue_from is not None:
                prompt_codes = music.encode_audio(track.continue_from)
            codes = music.generate_tokens(prompt.text, options, melody=track.melody,
                                          prompt_codes=prompt_codes, progress=on_step)
            mark_phase("generate")
            generated = time.perf_counter()
            audio = music.decode(codes)[0]
            mark_phase("decode")
            decoded = time.perf_counter()
            channels, samples = audio.shape
            clipping = clipping_note(audio, normalize, path.suffix)
            if clipping:
                status(f"Note: {clipping}")
        parameters = track_parameters(options, loaded, normalize=normalize, melody=track.melody,
                                      continue_from=track.continue_from, stream=track.stream)
        record = track_record(path, prompt, model=track.model, loaded=loaded,
                              parameters=parameters, channels=channels, samples=samples)
        record["timings"] = {
            "load_s": round(ready - start, 3),
            "generate_s": round(generated - ready, 3),
            "decode_s": round(decoded - generated, 3),
        }
        written = write_track(path, audio, record, normalize=normalize,
                              overwrite=track.overwrite, tmp=tmp, started=start)  # fmt: skip
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
