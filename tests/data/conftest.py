"""Fixtures shared by the data tests: small synthetic datasets, built once per test module."""

from __future__ import annotations

import pytest

from movierec.data.dataset import Dataset
from movierec.data.synth import synthesize


@pytest.fixture(scope="module")
def stars() -> Dataset:
    """Whole stars, every user with >= 20 ratings (so ua/ub hold exactly 10 per user)."""
    return synthesize(120, 300, 9_000, scale="1-5", seed=7)


@pytest.fixture(scope="module")
def halves() -> Dataset:
    return synthesize(120, 300, 9_000, scale="0.5-5", seed=7)
