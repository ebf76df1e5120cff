"""Per-prompt seeds: row b of a batch with seeds [..., s, ...] is what a batch of one with seed s
draws, on the compiled and the plain decoding path, whatever else shares the batch."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from musicgen.delay import codebook_delays
from musicgen.errors import InvalidArgumentError
from musicgen.generate import generate_step
from musicgen.longform import _window_keys
from musicgen.sampling import make_sampler

from tests.musicgen.checkpoints import PROMPTS

SEEDS = [5, 9]
OPTIONS = {"duration": 0.3, "guidance_scale": 3.0, "top_k": 0, "top_p": 0.0, "temperature": 1.0}


def step_tokens(model, prompts, key, *, compile):
    states, mask = model.encode_text(prompts)
    steps = generate_step(
        model.decoder,
        states,
        mask,
        num_frames=12,
        guidance_scale=3.0,
        sampler=make_sampler(1.0, 0, 0.0),
        key=key,
        delays=codebook_delays(model.num_codebooks),
        compile=compile,
    )
    return np.array(mx.stack([step.tokens for step in steps], axis=-1))


@pytest.mark.parametrize("compile", [True, False])
def test_each_row_draws_what_a_batch_of_one_with_its_seed_draws(tiny_model, compile):
    keys = mx.stack([mx.random.key(s) for s in SEEDS])
    together = step_tokens(tiny_model, PROMPTS[:2], keys, compile=compile)
    for b, seed in enumerate(SEEDS):
        alone = step_tokens(tiny_model, PROMPTS[b: b + 1], mx.random.key(seed), compile=compile)
        np.testing.assert_array_equal(together[b], alone[0])
    assert not np.array_equal(together[0], together[1])


def test_compiled_per_row_keys_equal_the_plain_path(tiny_model):
    keys = mx.stack([mx.random.key(s) for s in SEEDS])
    np.testing.assert_array_equal(
        step_tokens(tiny_model, PROMPTS[:2], keys, compile=True),
        step_tokens(tiny_model, PROMPTS[:2], keys, compile=False),
    )


def test_generate_tokens_with_a_seed_list_matches_single_runs(tiny_model):
    together = np.array(tiny_model.generate_tokens(PROMPTS[:2], seed=SEEDS, **OPTIONS))
    for b, seed in enumerate(SEEDS):
        alone = np.array(tiny_model.generate_tokens(PROMPTS[b], seed=seed, **OPTIONS))
        np.testing.assert_array_equal(together[b], alone[0])
    swapped = np.array(tiny_model.generate_tokens(PROMPTS[1::-1], seed=SEEDS[::-1], **OPTIONS))
    np.testing.assert_array_equal(swapped, together[::-1])
    one = np.array(tiny_model.generate_tokens(PROMPTS[0], seed=[SEEDS[0]], **OPTIONS))
    np.testing.assert_array_equal(one[0], together[0])


def test_long_form_window_keys_follow_each_rows_own_chain():
    rows = _window_keys(mx.stack([mx.random.key(s) for s in SEEDS]))
    singles = [_window_keys(mx.random.key(s)) for s in SEEDS]
    for _ in range(3):
        keys = np.array(next(rows))
        for b, single in enumerate(singles):
            np.testing.assert_array_equal(keys[b], np.array(next(single)))


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ([1, 2, 3], "list of 3 seeds for 2 prompts"),
        ([1], "list of 1 seeds for 2 prompts"),
        ([], "list of 0 seeds"),
        ([1, -2], "seed 1 must be an integer"),
        ([1, True], "seed 1 must be an integer"),
        ("7", "seed must be None or an integer"),
    ],
)
def test_bad_seed_lists_are_rejected_before_any_work(tiny_model, seed, message):
    with pytest.raises(InvalidArgumentError, match=message):
        tiny_model.stream_tokens(PROMPTS[:2], seed=seed, **OPTIONS)


def test_long_form_rows_match_single_runs(tiny_model, monkeypatch):
    monkeypatch.setattr(tiny_model, "max_duration", 0.4)  # 20-frame windows: three of them
    options = {**OPTIONS, "duration": 1.0}
    together = np.array(tiny_model.generate_tokens(PROMPTS[:2], seed=SEEDS, **options))
    for b, seed in enumerate(SEEDS):
        alone = np.array(tiny_model.generate_tokens(PROMPTS[b], seed=seed, **options))
        np.testing.assert_array_equal(together[b], alone[0])
