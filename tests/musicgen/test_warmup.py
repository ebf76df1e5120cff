"""The warm-up passes ``musicgen.load`` runs on threads while it reads the decoder's weights."""

from __future__ import annotations

import threading

import mlx.core as mx
import musicgen
import numpy as np
import pytest
from musicgen import kernels, loading, warmup


@pytest.mark.parametrize(
    "value, expected", [("0", False), ("off", False), ("1", True), ("yes", True)]
)
def test_the_variable_turns_it_on_and_off(monkeypatch, value, expected):
    monkeypatch.setenv(warmup.ENV, value)
    assert warmup.warm_up_enabled() is expected


def test_off_by_default_on_the_cpu(monkeypatch):
    monkeypatch.delenv(warmup.ENV, raising=False)
    device = mx.default_device()
    mx.set_default_device(mx.cpu)
    try:
        assert not warmup.warm_up_enabled()
    finally:
        mx.set_default_device(device)


def test_load_warms_the_codec_and_text_encoder_and_generates_the_same(tiny_path, monkeypatch):
    made: list[warmup.WarmUp] = []

    class Recorded(warmup.WarmUp):
        def __init__(self):
            super().__init__()
            made.append(self)

    monkeypatch.setattr(loading, "WarmUp", Recorded)
    outputs = {}
    for value in ("1", "0"):
        monkeypatch.setenv(warmup.ENV, value)
        model = musicgen.load(tiny_path)
        outputs[value] = np.array(model.generate(["warm", "cold"], duration=0.1, seed=3))
    warmed, cold = made
    assert sorted(warmed.done) == ["codec", "text encoder"] and not warmed.errors
    assert not cold.done and not cold.enabled
    np.testing.assert_array_equal(outputs["1"], outputs["0"])


def test_a_failing_pass_is_recorded_not_raised():
    warm_up = warmup.WarmUp(enabled=True)
    warm_up.run("broken", lambda: 1 / 0)
    warm_up.run("fine", lambda: mx.ones(3) * 2)
    warm_up.wait()
    assert warm_up.done == ["fine"]
    assert [type(e) for e in warm_up.errors] == [ZeroDivisionError]


@pytest.fixture
def kernels_possible(monkeypatch):
    """The process could run the CUDA kernels (as on a GPU machine), whatever this one has."""
    monkeypatch.setattr(kernels, "_process_can_run_kernels", lambda: True)


@pytest.mark.usefixtures("kernels_possible")
def test_warm_up_threads_run_plain_operations_only():
    seen: list[bool] = []
    warm_up = warmup.WarmUp(enabled=True)
    warm_up.run("probe", lambda: seen.append(kernels.available()) or mx.zeros(1))
    warm_up.wait()
    assert seen == [False] and warm_up.done == ["probe"] and not warm_up.errors
    assert kernels.available()


@pytest.mark.usefixtures("kernels_possible")
def test_plain_operations_hold_for_this_thread_only():
    other: list[bool] = []
    with kernels.plain_operations():
        assert not kernels.available()
        thread = threading.Thread(target=lambda: other.append(kernels.available()))
        thread.start()
        thread.join()
    assert other == [True] and kernels.available()
