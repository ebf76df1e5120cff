"""codes_from_steps: the one way from generation steps to codes, with progress; check_codes."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from musicgen import InvalidArgumentError, check_codes, codes_from_steps

from tests.musicgen.checkpoints import PROMPTS


def test_steps_become_the_codes_generate_tokens_returns(tiny_model):
    options = {"duration": 0.4, "seed": 4}
    calls = []
    codes = codes_from_steps(
        tiny_model.stream_tokens(PROMPTS[:2], **options),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert codes.dtype == mx.int32 and codes.shape == (2, 4, 20)
    expected = tiny_model.generate_tokens(PROMPTS[:2], **options)
    assert np.array_equal(np.array(codes), np.array(expected))
    assert calls == [(i, 23) for i in range(1, 24)]  # 20 frames + the delay pattern's 3 steps


def test_the_prompt_codes_come_first(tiny_model):
    prompt = tiny_model.generate_tokens("calm", duration=0.2, seed=1)  # (1, 4, 10)
    steps = tiny_model.stream_tokens(PROMPTS[:2], duration=0.5, seed=2, prompt_codes=prompt)
    codes = codes_from_steps(steps, prompt)
    assert codes.shape == (2, 4, 25)
    assert all(np.array_equal(np.array(codes[b, :, :10]), np.array(prompt[0])) for b in (0, 1))
    expected = tiny_model.generate_tokens(PROMPTS[:2], duration=0.5, seed=2, prompt_codes=prompt)
    assert np.array_equal(np.array(codes), np.array(expected))


def test_generate_tokens_reports_progress(tiny_model):
    calls = []
    tiny_model.generate_tokens("calm", duration=0.1, progress=lambda *a: calls.append(a))
    assert calls == [(i, 8) for i in range(1, 9)]


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (np.zeros((1, 3, 5), np.int32), r"shape \(batch, 4, frames\), got \(1, 3, 5\)"),
        (np.zeros((1, 4, 0), np.int32), r"shape \(batch, 4, frames\)"),
        (np.full((1, 4, 5), 32), r"in \[0, 32\)"),
        (np.zeros((1, 4, 5), np.float32), "integers"),
    ],
)
def test_check_codes(codes, message):
    with pytest.raises(InvalidArgumentError, match=message):
        check_codes(codes, 4, 32)
    assert check_codes([[[1, 2]], [[3, 31]]], 1, 32).dtype == mx.int32
