"""EASE and GF-CF on a catalog larger than ``max_items``: W learned on the most-rated movies, the rest
scored by the popularity fallback below them; unchanged when the catalog fits."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from movierec.artifacts import load_model, save_model
from movierec.data.dataset import Ratings
from movierec.models.core.interactions import interaction_matrix, session_matrix, session_rows
from movierec.models.ranking.ease import EASE, ease_weights
from movierec.models.ranking.gfcf import GFCF, gfcf_filter


def skewed() -> Ratings:
    """40 users x 25 movies, popularity falling with the movie id, timestamps in bursts (sessions)."""
    rng = np.random.default_rng(11)
    mask = rng.random((40, 25)) < np.linspace(0.9, 0.08, 25)[None, :]
    mask[:, 0] = True
    users, items = np.nonzero(mask)
    values = rng.integers(1, 11, len(users)) / 2.0
    times = users * 10**6 + rng.integers(0, 4, len(users)) * 3600 + rng.integers(0, 20, len(users))
    return Ratings.from_arrays(users + 1, items + 1, values, times, scale=(0.5, 5.0))


MODELS = [
    (EASE, {"reg": 3.0}),
    (GFCF, {"factors": 3, "ideal_weight": 0.5}),
]


@pytest.mark.parametrize(("cls", "params"), MODELS)
def test_a_catalog_within_max_items_gives_todays_model(cls, params):
    data = skewed()
    plain = cls(**params).fit(data)  # default max_items 16,000: far above 25 movies
    at_the_edge = cls(**params, max_items=data.n_items).fit(data)
    assert plain.kept_ is None and at_the_edge.kept_ is None
    np.testing.assert_array_equal(at_the_edge.weights_, plain.weights_)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(at_the_edge._score_users(users), plain._score_users(users))
    assert set(plain._state()) == {"weights"}  # the same artifact as before the cap existed
    # and the weights are the closed forms on the whole catalog, as before
    if cls is EASE:
        x = interaction_matrix(plain.seen_, 0.0, "binary")
        expected = ease_weights(x, 3.0, 0.5, session_matrix(data, 30.0, 0.0, "binary"), 2.0)
        np.testing.assert_array_equal(plain.weights_, expected)


def _expected_kept(data: Ratings, n: int) -> np.ndarray:
    counts = np.bincount(data.item_index, minlength=data.n_items)
    return np.sort(np.argsort(-counts, kind="stable")[:n])


@pytest.mark.parametrize(("cls", "params"), MODELS)
def test_capped_model_learns_the_most_rated_movies_and_places_the_rest_below(cls, params, tmp_path):
    data = skewed()
    n = 10
    model = cls(**params, max_items=n).fit(data)
    kept = _expected_kept(data, n)
    np.testing.assert_array_equal(model.kept_, kept)
    # W is the model's closed form on the kept columns alone (sessions restricted to them too)
    x = interaction_matrix(model.seen_, 0.0, "binary")
    if cls is EASE:
        sessions = sp.csr_matrix(session_matrix(data, 30.0, 0.0, "binary"))[:, kept]
        expected = ease_weights(x[:, kept], 3.0, 0.5, sessions, 2.0)
    else:
        graph = sp.vstack([sp.csr_matrix(x, dtype=np.float64),
                           0.3 * session_rows(data, 30.0, 0.0, "binary")]).tocsr()[:, kept]
        expected = gfcf_filter(graph, 3, 0.5)
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-12, atol=1e-14)

    users = np.arange(data.n_users)
    scores = model._score_users(users)
    np.testing.assert_allclose(scores[:, kept], x[:, kept] @ expected, rtol=1e-10, atol=1e-12)
    rest = np.setdiff1d(np.arange(data.n_items), kept)
    counts = np.bincount(data.item_index, minlength=data.n_items)
    # fallback: the user's lowest kept score - 1 + n_i / (n_max + 1), strictly below every kept movie
    low = scores[:, kept].min(axis=1, keepdims=True)
    np.testing.assert_allclose(scores[:, rest], low - 1 + counts[rest][None, :] / (counts[rest].max() + 1))
    assert (scores[:, rest].max(axis=1) < scores[:, kept].min(axis=1)).all()

    # pairs, fold-in, contributions and similarity agree with the score rows
    pairs_u = np.repeat(users, data.n_items)
    pairs_i = np.tile(np.arange(data.n_items), data.n_users)
    np.testing.assert_allclose(model._predict(pairs_u, pairs_i), scores.ravel(), rtol=1e-10, atol=1e-12)
    row = sp.csr_matrix(model.seen_)[3]
    fold = model._fold_in(row.indices, row.data)
    np.testing.assert_allclose(fold, scores[3], rtol=1e-10, atol=1e-12)
    target = np.array([kept[0], kept[-1], rest[0]])
    parts = model._contributions(row.indices, row.data, target)
    assert parts.shape == (3, len(row.indices))
    np.testing.assert_allclose(parts[:2].sum(axis=1), fold[target[:2]], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(parts[2], 0.0)  # a fallback score has no rated movie behind it
    similarity = model._item_similarity(np.array([kept[2], rest[1]]))
    np.testing.assert_allclose(similarity[0, kept], (expected[2] + expected[:, 2]) / 2)
    np.testing.assert_array_equal(similarity[0, rest], 0.0)
    np.testing.assert_array_equal(similarity[1], 0.0)

    # the artifact carries the kept movies and the fallback
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m").model
    np.testing.assert_array_equal(loaded._score_users(users), scores)
