"""MusicGen-Melody against transformers: chroma features, loading, greedy generation; bad input."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from musicgen import AudioError, CheckpointError, InvalidArgumentError
from musicgen.audio_input import resample
from musicgen.chroma import ChromaExtractor, chroma_filter_bank
from musicgen.melody import MelodyDecoder
from transformers.audio_utils import chroma_filter_bank as reference_filter_bank

from tests.musicgen.checkpoints import (
    AUDIO_ATOL,
    PROMPTS,
    reference_generate,
    reference_inputs,
)
from tests.musicgen.feature_checkpoints import (
    CHROMA_LENGTH,
    MELODY_PREPROCESSOR,
    SAMPLE_RATE,
    loaded,
    melody_checkpoint,
    melody_reference,
    reference_chroma,
    tune,
)


@pytest.fixture(scope="module")
def melody_path():
    return melody_checkpoint(audio_channels=1)


@pytest.fixture(scope="module")
def melody_model(melody_path):
    return loaded(melody_path)


@pytest.mark.parametrize(("rate", "n_fft"), [(32000, 16384), (800, 128), (800, 100)])
def test_chroma_filter_bank_matches_transformers(rate, n_fft):
    expected = reference_filter_bank(num_frequency_bins=n_fft, num_chroma=12, sampling_rate=rate)
    np.testing.assert_allclose(chroma_filter_bank(rate, n_fft), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("settings", "seconds"),
    [
        (MELODY_PREPROCESSOR, [1.3, 0.7]),  # padded to the longest
        (dict(MELODY_PREPROCESSOR, chunk_length=1), [1.6, 1.2]),  # both cut to 1 s
        (dict(MELODY_PREPROCESSOR, n_fft=256), [0.2]),  # shorter than one window
        (  # the real facebook/musicgen-melody settings
            dict(MELODY_PREPROCESSOR, sampling_rate=32000, n_fft=16384, hop_length=4096),
            [3.0],
        ),
    ],
)
def test_chroma_matches_the_reference_feature_extractor(settings, seconds):
    rate = settings["sampling_rate"]
    waves = [tune(s, rate, seed=i)[0] for i, s in enumerate(seconds)]
    names = ChromaExtractor.__dataclass_fields__
    extractor = ChromaExtractor(**{k: v for k, v in settings.items() if k in names})
    chroma = extractor(waves)
    expected = reference_chroma(waves, settings).numpy()
    assert chroma.shape == expected.shape
    assert np.array_equal(chroma, expected)
    assert len(np.unique(chroma.argmax(-1))) > 1  # the tune moves between pitch classes


def test_melody_checkpoint_loads_by_model_type(melody_model, melody_path):
    assert melody_model.config.is_melody
    assert isinstance(melody_model.decoder, MelodyDecoder)
    assert melody_model.decoder.chroma_length == CHROMA_LENGTH
    assert melody_model.chroma.n_fft == MELODY_PREPROCESSOR["n_fft"]
    assert "audio_enc_to_dec_proj" in melody_model.decoder


@pytest.mark.parametrize(
    ("melody_seconds", "guidance_scale"),
    [
        (0.5, 3.0),  # 13 chroma frames, tiled to the decoder's 20
        (1.2, 3.0),  # 31 frames, cut to 20
        (0.5, 1.0),  # no classifier-free guidance
        (None, 3.0),  # text only: the reference's "no melody" chroma
    ],
)
def test_melody_greedy_matches_transformers(
    melody_model, melody_path, melody_seconds, guidance_scale
):
    prompts, frames = PROMPTS[:2], 15
    melody = None if melody_seconds is None else [tune(melody_seconds, seed=s) for s in (1, 2)]
    inputs = reference_inputs(melody_path, prompts)
    if melody is not None:
        inputs["input_features"] = reference_chroma([m[0] for m in melody], MELODY_PREPROCESSOR)
    expected_codes, expected_audio = reference_generate(
        melody_reference(melody_path),
        inputs,
        do_sample=False,
        guidance_scale=guidance_scale,
        max_new_tokens=frames + 3,
    )
    codes = melody_model.generate_tokens(
        prompts,
        duration=frames / 50,
        guidance_scale=guidance_scale,
        temperature=0,
        melody=melody,
        melody_sample_rate=None if melody is None else SAMPLE_RATE,
    )
    assert np.array_equal(np.array(codes), expected_codes.numpy())
    audio = melody_model.decode(codes)
    np.testing.assert_allclose(np.array(audio), expected_audio.numpy(), rtol=0, atol=AUDIO_ATOL)


def test_the_melody_changes_the_music(melody_model):
    def codes(melody):
        return np.array(
            melody_model.generate_tokens(
                "calm", duration=0.3, temperature=0, melody=melody, melody_sample_rate=SAMPLE_RATE
            )
        )

    assert not np.array_equal(codes(tune(0.5, seed=1)), codes(tune(0.5, seed=2)))
    assert not np.array_equal(codes(tune(0.5, seed=1)), codes(None))


def test_a_melody_file_at_another_rate_is_read_and_resampled(melody_model, tmp_path):
    wave = tune(0.6, rate=1000, seed=3, channels=2)  # stereo, 1 kHz: mixed down, resampled
    path = tmp_path / "melody.wav"
    sf.write(path, wave.T, 1000, subtype="FLOAT")
    from_file = melody_model.generate_tokens(["calm"], duration=0.2, temperature=0, melody=path)
    mono_800 = resample(wave.mean(axis=0), 1000, SAMPLE_RATE)
    from_array = melody_model.generate_tokens(
        ["calm"], duration=0.2, temperature=0, melody=mono_800, melody_sample_rate=SAMPLE_RATE
    )
    assert np.array_equal(np.array(from_file), np.array(from_array))


def test_resampling_keeps_a_tone_and_gives_the_expected_length():
    for old, new in [(44100, 32000), (22050, 32000), (1000, 800), (32001, 32000)]:
        t = np.arange(old) / old  # one second
        out = resample(np.sin(2 * np.pi * 110 * t), old, new)
        assert out.shape == (new,)
        t_new = np.arange(new) / new
        middle = slice(new // 10, -new // 10)
        np.testing.assert_allclose(out[middle], np.sin(2 * np.pi * 110 * t_new)[middle], atol=1e-4)


def test_resampling_is_the_windowed_sinc_of_the_reference():
    """Both code paths (polyphase, per-output) against the formula, term by term, in float64."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300)
    for old, new in [(1000, 800), (800, 1000), (997, 800)]:  # 997/800: the per-output path
        scale = min(1, new / old) * 0.945
        n = np.arange(-(-len(x) * new // old))
        m = np.arange(len(x))
        t = np.clip((m[None] - n[:, None] * old / new) * scale, -24, 24)
        weights = np.sinc(t) * np.cos(t * np.pi / 48) ** 2 * scale
        np.testing.assert_allclose(resample(x, old, new), weights @ x, rtol=0, atol=2e-6)


def test_a_melody_for_a_model_without_melody_conditioning_is_refused(tiny_model):
    with pytest.raises(InvalidArgumentError, match="needs a MusicGen-Melody checkpoint"):
        tiny_model.generate_tokens("calm", duration=0.2, melody=tune(0.5), melody_sample_rate=800)


@pytest.mark.parametrize(
    ("melody", "rate", "error", "message"),
    [
        (np.zeros(800, np.float32), 800, InvalidArgumentError, "is silent"),
        (np.full(800, np.nan, np.float32), 800, InvalidArgumentError, "NaN or infinite"),
        (np.zeros(0, np.float32), 800, InvalidArgumentError, "is empty"),
        (np.ones((3, 800), np.float32), 800, InvalidArgumentError, "1 or 2 channels"),
        (tune(0.5), None, InvalidArgumentError, "give the sample rate"),
        (tune(0.5), 0, InvalidArgumentError, "sample rate must be a positive integer"),
        (tune(0.5), 800.5, InvalidArgumentError, "sample rate must be a positive integer"),
        ([tune(0.5)] * 3, 800, InvalidArgumentError, "3 audio clips for 2 prompts"),
        ("missing.wav", None, AudioError, "does not exist"),
    ],
)
def test_bad_melodies(melody_model, melody, rate, error, message):
    with pytest.raises(error, match=message):
        melody_model.generate_tokens(
            ["calm", "epic"], duration=0.2, melody=melody, melody_sample_rate=rate
        )


def test_an_unreadable_melody_file_says_so(melody_model, tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(AudioError, match=r"cannot read audio from .*broken\.wav"):
        melody_model.generate_tokens("calm", duration=0.2, melody=path)
    with pytest.raises(InvalidArgumentError, match="leave the sample rate out for files"):
        sf.write(tmp_path / "ok.wav", tune(0.3)[0], 800)
        melody_model.generate_tokens(
            "calm", duration=0.2, melody=tmp_path / "ok.wav", melody_sample_rate=1000
        )


def test_a_bad_preprocessor_config_is_a_checkpoint_error(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text('{"n_fft": 0}')
    with pytest.raises(CheckpointError, match="n_fft must be a positive integer"):
        ChromaExtractor.from_dir(tmp_path)
    assert ChromaExtractor.from_dir(tmp_path / "elsewhere") == ChromaExtractor()


def test_melody_generation_is_seeded_and_batched(melody_model):
    melody = [tune(0.4, seed=5), tune(0.7, seed=6)]
    first = melody_model.generate(
        PROMPTS[:2], duration=0.3, seed=4, melody=melody, melody_sample_rate=SAMPLE_RATE
    )
    again = melody_model.generate(
        PROMPTS[:2], duration=0.3, seed=4, melody=melody, melody_sample_rate=SAMPLE_RATE
    )
    assert first.shape == (2, 1, 15 * 16)
    assert mx.array_equal(first, again)


@pytest.mark.parametrize("guidance_scale", [3.0, 1.0])
def test_the_compiled_melody_path_equals_the_plain_one(melody_model, guidance_scale):
    from musicgen.delay import codebook_delays
    from musicgen.generate import generate_step
    from musicgen.melody import PrefixStaticCache
    from musicgen.sampling import make_sampler

    decoder = melody_model.decoder
    states, _ = melody_model.encode_text(PROMPTS[:2])
    chroma = mx.array(melody_model.chroma([tune(0.5, seed=8)[0], tune(0.9, seed=9)[0]]))
    prefix, mask, unconditional = decoder.conditioning(states, chroma)
    prompt = mx.array(np.random.default_rng(0).integers(0, 32, (2, 4, 6)), dtype=mx.int32)

    def frames(compile):
        steps = generate_step(
            decoder, prefix, mask, num_frames=20, guidance_scale=guidance_scale,
            sampler=make_sampler(1.0, 8), key=mx.random.key(3),
            delays=codebook_delays(4), prompt=prompt, unconditional=unconditional,
            compile=compile,
        )  # fmt: skip
        return np.stack([np.array(s.frame) for s in steps if s.frame is not None], axis=-1)

    assert isinstance(decoder.make_static_cache(10), PrefixStaticCache)
    compiled, plain = frames(True), frames(False)
    assert compiled.shape == (2, 4, 14)
    assert np.array_equal(compiled, plain)


@pytest.mark.parametrize("channels", [1, 2])
def test_the_layout_of_a_melody_checkpoint_is_exact(channels):
    """musicgen.plugin.layout (model sizes for the registry) knows the melody tensors."""
    import json

    from musicgen.plugin.layout import checkpoint_shapes
    from safetensors import safe_open

    path = melody_checkpoint(audio_channels=channels)
    with safe_open(str(path / "model.safetensors"), "np") as f:
        written = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    legacy = {".parametrizations.weight.original0": ".weight_g",
              ".parametrizations.weight.original1": ".weight_v"}  # fmt: skip
    for old, new in legacy.items():
        written = {k.replace(old, new): v for k, v in written.items()}
    assert checkpoint_shapes(json.loads((path / "config.json").read_text())) == written


def test_the_cli_conditions_on_a_melody_file(melody_path, tiny_path, tmp_path):
    import json

    from tests.musicgen.feature_checkpoints import run_cli

    melody_file = tmp_path / "hum.wav"
    sf.write(melody_file, tune(0.8, seed=4)[0], SAMPLE_RATE, subtype="FLOAT")
    args = ["music", "generate", "calm", "--duration", "0.3", "--seed", "1", "--melody",
            melody_file, "--normalize", "none"]  # fmt: skip
    out = tmp_path / "melody.wav"
    code, output = run_cli(*args, "--model", melody_path, "--output", out, "--json")
    assert code == 0, output
    record = json.loads(output[output.index("{") :])
    assert record["parameters"]["melody"] == str(melody_file)
    sidecar = out.with_name(out.name + ".json")
    assert f"--melody {melody_file}" in json.loads(sidecar.read_text())["reproduce"]
    written, _ = sf.read(str(out), dtype="float32")
    expected = loaded(melody_path).generate("calm", duration=0.3, seed=1, melody=melody_file)
    np.testing.assert_allclose(written, np.clip(np.array(expected)[0, 0], -1, 1), atol=1 / 2**14)

    code, output = run_cli(*args, "--model", tiny_path, "--output", tmp_path / "no.wav")
    assert code == 1 and "needs a MusicGen-Melody checkpoint" in output
    assert not (tmp_path / "no.wav").exists()
