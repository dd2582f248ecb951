"""`DotParts` against the model's own scores, for every registered model that has them: the inner
products (plus offsets) are the known users' scores, or for a non-exact model rank every user's movies
exactly as the scores do."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

from movierec.data.synth import synthesize
from movierec.models.core.recommender import DotParts
from movierec.models.registry import MODELS, create_model

FAST: dict[str, dict[str, Any]] = {
    "ials": {"factors": 6, "epochs": 2},
    "bpr": {"factors": 6, "epochs": 2},
    "biased-mf-sgd": {"factors": 6, "epochs": 2},
    "biased-mf-als": {"factors": 6, "epochs": 2},
    "svdpp": {"factors": 6, "epochs": 2},
    "bayesian-mf": {"factors": 3, "burn_in": 3, "samples": 4, "thin": 1},
    "dot-bias-sigmoid": {"factors": 6, "epochs": 2},
    "mean-normalized-mf": {"factors": 6, "epochs": 5},
}
# the models that must have inner-product parts (others may add them: the loop below checks all)
EXPECTED = set(FAST)


@pytest.fixture(scope="module")
def data():
    return synthesize(60, 45, 900, seed=3)


def _fitted(name: str, data: Any):
    return create_model(name, **FAST.get(name, {})).fit(data.ratings, catalog=data.catalog)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dot_parts_are_the_models_scores(name: str, data: Any) -> None:
    model = _fitted(name, data)
    parts = model._dot_parts()
    assert isinstance(parts, DotParts)
    n_users, n_items = len(model.users_), len(model.items_)
    assert parts.users.shape[0] == n_users and parts.items.shape[0] == n_items
    assert parts.offsets.shape == (n_items,) and parts.users.shape[1] == parts.items.shape[1]
    dots = parts.users.astype(np.float64) @ parts.items.astype(np.float64).T + parts.offsets[None, :]
    scores = model._score_users(np.arange(n_users))
    if parts.exact:
        np.testing.assert_allclose(dots, scores, rtol=1e-5, atol=1e-5)
    else:  # strictly increasing per user: the same order as the scores
        for u in range(n_users):
            assert spearmanr(dots[u], scores[u]).statistic > 0.999999
            order = np.argsort(dots[u], kind="stable")
            assert np.all(np.diff(scores[u][order]) >= -1e-9)
    again = model._dot_parts()  # the same arrays while the learned ones stand (callers cache on them)
    assert again.users is parts.users and again.items is parts.items and again.offsets is parts.offsets


def test_every_model_with_parts_is_checked(data: Any) -> None:
    """A model that gains `_dot_parts` joins EXPECTED, so the check above covers it."""
    with_parts = set()
    for name in MODELS:
        cls = MODELS[name]
        if cls._dot_parts is not MODELS["popularity"]._dot_parts:
            with_parts.add(name)
    assert with_parts == EXPECTED


def test_refit_rebuilds_the_parts(data: Any) -> None:
    model = _fitted("biased-mf-als", data)
    first = model._dot_parts()
    model.random_state = 1
    model.fit(data.ratings)
    second = model._dot_parts()
    assert second.users is not first.users and not np.array_equal(first.users, second.users)
