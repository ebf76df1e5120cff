"""Session fixtures for the MusicGen tests: tiny random checkpoints, loaded both ways."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.musicgen.checkpoints import write_tiny_musicgen

    return write_tiny_musicgen(tmp_path_factory.mktemp("musicgen") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_path: Path):
    import musicgen

    return musicgen.load(tiny_path)


@pytest.fixture(scope="session")
def tiny_reference(tiny_path: Path):
    from tests.musicgen.checkpoints import reference_model

    return reference_model(tiny_path)


@pytest.fixture(scope="session")
def stereo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.musicgen.checkpoints import write_tiny_musicgen

    return write_tiny_musicgen(tmp_path_factory.mktemp("musicgen") / "stereo", audio_channels=2)


@pytest.fixture(scope="session")
def stereo_reference(stereo_path: Path):
    from tests.musicgen.checkpoints import reference_model

    return reference_model(stereo_path)
