"""The sampler against transformers' logits warpers, and its distribution."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch
from musicgen.sampling import _below_min_p, _keep_top_k, _keep_top_p, make_sampler
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


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference_probabilities(logits, temperature, top_k, top_p, min_p) -> np.ndarray:
    """NumPy: temperature, top-k, top-p (transformers' order), then min-p measured on the
    untempered probabilities (mlx-lm's rule); the distribution one draw follows, per row."""
    logits = logits.astype(np.float64)
    keep = np.ones_like(logits, dtype=bool)
    if min_p > 0:
        raw = softmax(logits)
        keep_min_p = raw >= min_p * raw.max(axis=-1, keepdims=True)
    scaled = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = np.sort(scaled, axis=-1)[:, -top_k][:, None]
        keep &= scaled >= kth
    if 0 < top_p < 1:
        probs = softmax(np.where(keep, scaled, -np.inf))
        for row, p in enumerate(probs):
            order = np.argsort(p)
            drop = np.cumsum(p[order]) <= 1 - top_p
            drop[-1] = False
            keep[row, order[drop]] = False
    if min_p > 0:
        keep &= keep_min_p
    return softmax(np.where(keep, scaled, -np.inf))


MIN_P_LOGITS = np.array(
    [
        [3.0, 2.6, 2.0, 1.5, 1.0, 0.2, -0.5, -1.0],
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2],  # flat: min-p keeps almost every code
        [5.0, 1.0, 0.9, 0.8, 0.0, -1.0, -2.0, -3.0],  # peaked: min-p keeps few
    ],
    np.float32,
)


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p", "min_p"),
    [
        (1.0, 0, 0.0, 0.1),
        (1.5, 0, 0.0, 0.2),  # hot: the kept set is still the untempered one
        (0.7, 5, 0.0, 0.05),
        (1.0, 0, 0.9, 0.1),
        (1.3, 6, 0.95, 0.15),
    ],
)
def test_min_p_samples_follow_the_numpy_reference(temperature, top_k, top_p, min_p):
    draws_per_row = 20000
    expected = reference_probabilities(MIN_P_LOGITS, temperature, top_k, top_p, min_p)
    sampler = make_sampler(temperature, top_k, top_p, min_p)
    batch = mx.repeat(mx.array(MIN_P_LOGITS), draws_per_row, axis=0)
    draws = np.array(sampler(batch, mx.random.key(11))).reshape(len(MIN_P_LOGITS), -1)
    for row, probs in zip(draws, expected, strict=True):
        frequencies = np.bincount(row, minlength=probs.size) / row.size
        assert np.array_equal(frequencies > 0, probs > 0)  # exactly the codes kept
        np.testing.assert_allclose(frequencies, probs, atol=0.012)


def test_min_p_keeps_what_mlx_lm_keeps():
    from mlx_lm.sample_utils import apply_min_p

    logits = mx.array(np.random.default_rng(1).normal(0, 2, (16, 64)).astype(np.float32))
    for p in (0.01, 0.1, 0.5, 1.0):
        ours = np.array(_below_min_p(logits, p))
        theirs = np.isinf(np.array(apply_min_p(logits - mx.logsumexp(logits, -1, True), p)))
        assert np.array_equal(ours, theirs)
        assert not ours.all(axis=-1).any()  # the most likely code always stays


def test_min_p_reaches_generation(tiny_model):
    options = {"duration": 0.3, "seed": 3, "top_k": 0}
    plain = np.array(tiny_model.generate_tokens(["calm"], **options))
    filtered = np.array(tiny_model.generate_tokens(["calm"], **options, min_p=0.5))
    assert not np.array_equal(plain, filtered)
    # min_p = 1 keeps the most likely code alone: greedy, whatever the seed.
    only_top = tiny_model.generate_tokens(["calm"], **options, min_p=1.0)
    greedy = tiny_model.generate_tokens(["calm"], duration=0.3, temperature=0)
    assert np.array_equal(np.array(only_top), np.array(greedy))
