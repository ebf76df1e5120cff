"""EnCodec decodes layer by layer: the same samples as one lazy graph, at a fraction of its peak.

At encodec_32khz's shapes (musicgen-small's codec, random weights; memory depends on shapes
only) the whole decoder as one graph peaks at ~5 MB per frame; evaluated a layer at a time, at
~2 MB per frame (the last convolutions' working memory).
"""

from __future__ import annotations

import gc

import mlx.core as mx
import numpy as np
import pytest
from musicgen.encodec import EncodecConfig, EncodecModel
from musicgen.plugin import HUB_MODELS, hub_config

FRAMES = 10


@pytest.fixture(scope="module")
def codec() -> EncodecModel:
    hidden, layers, heads, _ = HUB_MODELS["facebook/musicgen-small"]
    mx.random.seed(0)
    model = EncodecModel(
        EncodecConfig.from_dict(hub_config(hidden, layers, heads)["audio_encoder"])
    )
    mx.eval(model.parameters())
    return model


def peak_above_resident(run) -> tuple[np.ndarray, int]:
    gc.collect()
    mx.clear_cache()
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    out = run()
    mx.eval(out)
    return np.array(out), mx.get_peak_memory() - base


def test_stepwise_decoding_matches_the_lazy_graph_at_a_lower_peak(codec):
    codes = mx.random.randint(0, 2048, (1, 4, FRAMES), key=mx.random.key(3))
    embeddings = codec.quantizer.decode(codes)
    mx.eval(embeddings)
    lazy, lazy_peak = peak_above_resident(lambda: codec.decoder(embeddings).transpose(0, 2, 1))
    stepwise, stepwise_peak = peak_above_resident(lambda: codec.decode(codes))
    np.testing.assert_array_equal(stepwise, lazy)
    assert stepwise.shape == (1, 1, FRAMES * 640)
    assert stepwise_peak < 0.5 * lazy_peak, (stepwise_peak, lazy_peak)
    assert stepwise_peak < 2.5e6 * FRAMES, stepwise_peak
