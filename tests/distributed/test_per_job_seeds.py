"""A job's codes depend on its prompt and seed only, not on the batch it is generated in: the
batch runner makes one ``generate_tokens`` call per batch with one seed per job."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from musicgen import GenerationOptions

PROMPTS = ["lofi piano, rain", "epic brass with drums", "calm", "the rain with a calm piano"]
SEEDS = [11, 12, 13, 14]
OPTIONS = GenerationOptions(duration=0.4, top_k=0)


def codes(model, prompts, seeds, progress=None):
    """What the runner generates for a batch of jobs with these prompts and seeds."""
    return np.array(model.generate_tokens(prompts, OPTIONS.replace(seed=seeds), progress=progress))


def test_a_batch_of_one_is_generate_tokens_with_that_seed(tiny_musicgen):
    expected = tiny_musicgen.generate_tokens(PROMPTS[1], OPTIONS, seed=12)
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
    mixed = np.array(tiny_musicgen.generate_tokens(PROMPTS, OPTIONS, seed=11))
    assert not np.array_equal(mixed[1:], together[1:])


def test_decoding_a_batch_matches_decoding_each_job(tiny_musicgen):
    together = mx.array(codes(tiny_musicgen, PROMPTS, SEEDS))
    audio = np.array(tiny_musicgen.decode(together))
    for i in range(len(PROMPTS)):
        assert np.array_equal(audio[i], np.array(tiny_musicgen.decode(together[i: i + 1]))[0])


def test_progress_is_reported_per_step_up_to_the_total(tiny_musicgen):
    reports = []
    together = codes(tiny_musicgen, PROMPTS, SEEDS, lambda done, total: reports.append((done,
                                                                                         total)))
    assert np.array_equal(together, codes(tiny_musicgen, PROMPTS, SEEDS))
    assert [done for done, _ in reports] == list(range(1, len(reports) + 1))
    assert {total for _, total in reports} == {len(reports)}
