"""A job's codes depend on its prompt and seed only, not on the batch it is generated in."""

from __future__ import annotations

from dataclasses import asdict

import mlx.core as mx
import numpy as np
from musicgen.plugin.batch.generate import generate_codes
from musicgen.plugin.tool import Sampling

PROMPTS = ["lofi piano, rain", "epic brass with drums", "calm", "the rain with a calm piano"]
SEEDS = [11, 12, 13, 14]
SAMPLING = Sampling(duration=0.4, guidance_scale=3.0, top_k=0, top_p=0.0, temperature=1.0)
OPTIONS = asdict(SAMPLING)


def codes(model, prompts, seeds):
    return np.array(generate_codes(model, prompts, seeds, SAMPLING))


def test_a_batch_of_one_is_generate_tokens_with_that_seed(tiny_musicgen):
    expected = tiny_musicgen.generate_tokens(PROMPTS[1], seed=12, **OPTIONS)
    assert np.array_equal(codes(tiny_musicgen, PROMPTS[1:2], [12]), np.array(expected))


def test_codes_do_not_depend_on_the_batch_composition(tiny_musicgen):
    together = codes(tiny_musicgen, PROMPTS, SEEDS)
    alone = [codes(tiny_musicgen, [p], [s])[0] for p, s in zip(PROMPTS, SEEDS, strict=True)]
    assert np.array_equal(together, np.stack(alone))
    reordered = codes(tiny_musicgen, PROMPTS[::-1][:3], SEEDS[::-1][:3])
    assert np.array_equal(reordered, together[::-1][:3])
    assert len({row.tobytes() for row in together}) == len(PROMPTS)
    # The model's own batched sampling draws from one key for the whole batch, so there a
    # prompt's codes change with its neighbours: the reason batch jobs keep their own keys.
    mixed = np.array(tiny_musicgen.generate_tokens(PROMPTS, seed=11, **OPTIONS))
    assert not np.array_equal(mixed[1:], together[1:])


def test_decoding_a_batch_matches_decoding_each_job(tiny_musicgen):
    together = mx.array(codes(tiny_musicgen, PROMPTS, SEEDS))
    audio = np.array(tiny_musicgen.decode(together))
    for i in range(len(PROMPTS)):
        assert np.array_equal(audio[i], np.array(tiny_musicgen.decode(together[i: i + 1]))[0])


def test_progress_is_reported_per_step_up_to_one(tiny_musicgen):
    fractions = []
    together = np.array(generate_codes(tiny_musicgen, PROMPTS, SEEDS, SAMPLING, fractions.append))
    assert np.array_equal(together, codes(tiny_musicgen, PROMPTS, SEEDS))
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
