"""The sampler against transformers' logits warpers, and its distribution."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch
from musicgen.sampling import _keep_top_k, _keep_top_p, make_sampler
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper


@pytest.fixture(scope="module")
def logits() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 2, (8, 64)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 5, 63])
def test_top_k_keeps_what_transformers_keeps(logits, k):
    expected = TopKLogitsWarper(k)(None, torch.from_numpy(logits)).numpy()
    ours = np.array(_keep_top_k(mx.array(logits), k))
    assert np.array_equal(np.isinf(ours), np.isinf(expected))
    assert np.array_equal(ours[~np.isinf(ours)], logits[~np.isinf(expected)])


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.99])
def test_top_p_keeps_what_transformers_keeps(logits, p):
    expected = TopPLogitsWarper(p)(None, torch.from_numpy(logits)).numpy()
    ours = np.array(_keep_top_p(mx.array(logits), p))
    assert np.array_equal(np.isinf(ours), np.isinf(expected))


def test_greedy_is_argmax(logits):
    for sampler in (make_sampler(temperature=0), make_sampler(top_k=1)):
        assert np.array_equal(np.array(sampler(mx.array(logits), None)), logits.argmax(-1))


def test_samples_follow_the_filtered_tempered_distribution():
    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0], np.float32)
    temperature, top_k, top_p = 0.7, 4, 0.9
    scaled = logits / temperature
    probs = np.exp(scaled - scaled.max())
    probs[4] = 0  # outside the top 4
    probs /= probs.sum()
    order = np.argsort(probs)
    drop = np.cumsum(probs[order]) <= 1 - top_p
    probs[order[drop]] = 0  # outside the top 0.9
    probs /= probs.sum()
    sampler = make_sampler(temperature, top_k, top_p)
    draws = np.array(sampler(mx.broadcast_to(mx.array(logits), (40000, 5)), mx.random.key(0)))
    frequencies = np.bincount(draws, minlength=5) / draws.size
    np.testing.assert_allclose(frequencies, probs, atol=0.01)
    assert frequencies[4] == 0 and probs[3] == 0 and frequencies[3] == 0


def test_the_key_decides_the_draw(logits):
    sampler = make_sampler(temperature=1.0, top_k=0)
    first = np.array(sampler(mx.array(logits), mx.random.key(3)))
    assert np.array_equal(first, np.array(sampler(mx.array(logits), mx.random.key(3))))
    others = [np.array(sampler(mx.array(logits), mx.random.key(s))) for s in range(4, 8)]
    assert any(not np.array_equal(first, other) for other in others)
