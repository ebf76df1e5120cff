"""The codes of a few seeded generations, pinned: a refactor of the generation path must not
change what a seed draws.

Each case runs ``generate_tokens`` on the smoke checkpoint (random weights in the real layout,
built from a fixed seed) or on a tiny stereo or melody checkpoint, and compares the shape and
the sha256 of the int32 codes with the values recorded when the case was written. A changed
hash means the same arguments now give other codes; change a value here only for an intended
change of behaviour, and say so in the commit. ``python -m tests.musicgen.test_pinned_codes``
prints the current values.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

PROMPTS = ["lofi piano, rain", "epic brass with drums"]
# A continuation prompt: fixed codes in the smoke checkpoint's vocabulary (2048).
PROMPT_CODES = np.random.default_rng(0).integers(0, 2048, (1, 4, 10)).astype(np.int32)

# name -> (checkpoint, prompts, options)
CASES = {
    "sampling": ("smoke", PROMPTS[:1], {"duration": 0.4, "seed": 7}),
    "seed-per-prompt": (
        "smoke",
        PROMPTS,
        {"duration": 0.3, "seed": [3, 11], "top_p": 0.9, "temperature": 0.8},
    ),
    "greedy": ("smoke", PROMPTS, {"duration": 0.3, "temperature": 0}),
    "no-guidance": (
        "smoke",
        PROMPTS[:1],
        {"duration": 0.3, "guidance_scale": 1, "top_k": 50, "seed": 1},
    ),
    "continuation": ("smoke", PROMPTS, {"duration": 0.5, "seed": 2, "prompt_codes": PROMPT_CODES}),
    # 1 s windows (see load_checkpoint): 1.6 s is two windows, the second re-feeding 0.4 s.
    "long-form": (
        "smoke-1s-window",
        PROMPTS[:1],
        {"duration": 1.6, "seed": 4, "extend_stride": 0.6},
    ),
    "stereo": ("stereo", PROMPTS[:1], {"duration": 0.3, "seed": 5, "guidance_scale": 2.0}),
    "melody": ("melody", PROMPTS[:1], {"duration": 0.3, "seed": 6, "melody": "tune"}),
}

PINNED = {
    "sampling": (
        (1, 4, 20),
        "203f8dc46fc450f23eaa31f6c4bee9c99768e2a146ac7bae0774f40912e572a2",
    ),
    "seed-per-prompt": (
        (2, 4, 15),
        "b1ef6d4c6170da236d4229ac87d6412e23a60d61dce617f3eb510d05ce800787",
    ),
    "greedy": (
        (2, 4, 15),
        "8f76a16710393c2b165d9301f865385d8ca614d793cf420f31f7bcf6c905c515",
    ),
    "no-guidance": (
        (1, 4, 15),
        "8d43e917290f9d9a1657c3e7adc12a027105da3b50b685ee58f7ab2f915eeb11",
    ),
    "continuation": (
        (2, 4, 25),
        "7a19d117977dcbe38eaa4b3aa1ab9c852983964d4aea7e5138f9a1ab0dcc5c9b",
    ),
    "long-form": (
        (1, 4, 80),
        "41ecb98661cc19c6c902a39743be2a441bace560941d381b11f6a44ec9d68aef",
    ),
    "stereo": (
        (1, 8, 15),
        "a2d5d19f06762ec46328fc7642b0114ceb3ac22b235e908559853607899ef975",
    ),
    "melody": (
        (1, 4, 15),
        "bd1d2c54aec7f2df454f40b1930151d635f05242892452f7857a84ce3575a4fb",
    ),
}


def digest(codes: mx.array) -> tuple[tuple[int, ...], str]:
    array = np.ascontiguousarray(np.array(codes), dtype="<i4")
    return array.shape, hashlib.sha256(array.tobytes()).hexdigest()


def load_checkpoint(kind: str, root: Path):
    import musicgen

    if kind.startswith("smoke"):
        from musicgen.plugin.smoke import write_smoke_checkpoint

        model = musicgen.load(write_smoke_checkpoint(root / "smoke"), progress=False)
        if kind == "smoke-1s-window":
            model.max_duration = 1.0  # long-form windows of 50 frames instead of 1500
        return model
    from tests.musicgen.feature_checkpoints import melody_checkpoint, stereo_checkpoint

    path = stereo_checkpoint() if kind == "stereo" else melody_checkpoint()
    return musicgen.load(path, progress=False)


def run_case(model, prompts: list[str], options: dict) -> mx.array:
    options = dict(options)
    if options.get("melody") == "tune":
        from tests.musicgen.feature_checkpoints import SAMPLE_RATE, tune

        options.update(melody=tune(0.6), melody_sample_rate=SAMPLE_RATE)
    if "prompt_codes" in options:
        options["prompt_codes"] = mx.array(options["prompt_codes"])
    return model.generate_tokens(prompts, **options)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The checkpoints, loaded on demand, on the CPU: the values were pinned there (a GPU's
    float paths round differently, and its fused kernels are tested against references)."""
    root = tmp_path_factory.mktemp("pinned")
    cache = {}

    def get(kind: str):
        if kind not in cache:
            cache[kind] = load_checkpoint(kind, root / kind)
        return cache[kind]

    device = mx.default_device()
    mx.set_default_device(mx.cpu)
    yield get
    mx.set_default_device(device)


@pytest.mark.parametrize("name", list(CASES))
def test_seeded_codes_are_unchanged(models, name):
    kind, prompts, options = CASES[name]
    assert digest(run_case(models(kind), prompts, options)) == PINNED[name]


if __name__ == "__main__":
    import tempfile

    mx.set_default_device(mx.cpu)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = {}
        for name, (kind, prompts, options) in CASES.items():
            if kind not in loaded:
                loaded[kind] = load_checkpoint(kind, Path(tmp) / kind)
            print(f"    {name!r}: {digest(run_case(loaded[kind], prompts, options))},")
