"""Shared fixtures.

Every test runs with ``MOVIEREC_DATA`` pointing at a temporary folder, so no test reads or writes the
user's real cache. Real MovieLens archives come from the mirror folder (``$MOVIEREC_MIRROR``, default
``../shared/data/movielens`` beside the project); tests that need one are skipped, with the reason,
where it is absent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from movierec.data.dataset import Dataset
from movierec.data.download import load_dataset

ROOT = Path(__file__).resolve().parents[1]

# Properties are checked for correctness, not speed: a busy 2-core CI machine must not turn a slow
# example into a failure (speed is measured by benchmarks/, never by tests).
settings.register_profile("movierec", deadline=None)
settings.load_profile("movierec")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI's root callback reconfigures the root logger (force=True); keep that out of other
    tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def mirror_dir() -> Path:
    env = os.environ.get("MOVIEREC_MIRROR")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "movielens"


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The folder holding the verified MovieLens archives."""
    folder = mirror_dir()
    if not (folder / "ml-100k.zip").is_file() or not (folder / "ml-latest-small.zip").is_file():
        pytest.skip(f"MovieLens archives not found in {folder}")
    return folder


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    """One torch thread, as the benchmark anchors were measured: the models here work on small
    tensors, where a second OpenMP thread only adds synchronisation (and stalls badly when the
    machine is busy). Results do not depend on it."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_DATA", str(tmp_path_factory.mktemp("movierec-data")))
    monkeypatch.setenv("MOVIEREC_MIRROR", str(mirror_dir()))


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home shared by the session's real-data fixtures (parsed once, then cached)."""
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture(scope="session")
def ml100k(mirror: Path, shared_cache: Path) -> Dataset:
    return load_dataset("ml-100k", mirror=str(mirror), data_dir=shared_cache)


@pytest.fixture(scope="session")
def mlsmall(mirror: Path, shared_cache: Path) -> Dataset:
    return load_dataset("ml-latest-small", mirror=str(mirror), data_dir=shared_cache)
