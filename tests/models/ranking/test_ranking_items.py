"""Item-based ranking models: popularity, item-knn (cosine / BM25) and EASE."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from movierec.data.dataset import Ratings
from movierec.data.split import make_split
from movierec.errors import ConfigError
from movierec.eval.protocol import evaluate
from movierec.models.core.interactions import session_matrix, session_rows
from movierec.models.ranking.ease import EASE, ease_weights
from movierec.models.ranking.item_knn import ItemKNN, bm25_rows, knn_similarity
from movierec.models.ranking.popularity import Popularity

# 4 users x 3 movies (raw ids 1..3); user 4 rated only movie 3, and low.
USERS = [1, 1, 1, 2, 2, 3, 3, 4]
ITEMS = [1, 2, 3, 1, 2, 2, 3, 3]
VALUES = [5.0, 4.0, 1.0, 3.0, 5.0, 4.0, 2.0, 1.0]


def tiny() -> Ratings:
    return Ratings.from_arrays(USERS, ITEMS, VALUES, scale=(0.5, 5.0))


def small() -> Ratings:
    """A denser random 30 x 12 case for properties (each user rates about half the movies)."""
    rng = np.random.default_rng(3)
    mask = rng.random((30, 12)) < 0.5
    mask[:, 0] = True  # every user has a rating
    users, items = np.nonzero(mask)
    values = rng.integers(1, 6, len(users)).astype(float)
    return Ratings.from_arrays(users + 1, items + 1, values, scale=(0.5, 5.0))


# -- popularity ------------------------------------------------------------------------------------
def test_popularity_counts_by_hand():
    model = Popularity().fit(tiny())
    np.testing.assert_array_equal(model.counts_, [2, 3, 3])
    # only ratings >= 3, each weighing its value: movie 1: 5 + 3, movie 2: 4 + 5 + 4, movie 3: none
    weighted = Popularity(min_rating=3.0, weighting="rating").fit(tiny())
    np.testing.assert_array_equal(weighted.counts_, [8, 13, 0])
    # the same list for everybody, minus what they have seen; unknown movies score 0
    assert model.recommend(4, k=3)["item"].tolist() == [2, 1]
    np.testing.assert_array_equal(model.predict([1, 99, 1], [2, 1, 99]), [3, 2, 0])
    np.testing.assert_array_equal(model._fold_in(np.array([0]), np.array([5.0])), [2, 3, 3])


# -- EASE ------------------------------------------------------------------------------------------
def test_ease_two_movies_by_hand():
    # G = [[2, 1], [1, 2]]; + lambda 1 -> P = [[3, -1], [-1, 3]] / 8; B_01 = -P_01 / P_11 = 1/3,
    # which is also the one-variable ridge regression of movie 1 on movie 0: x0.x1 / (x0.x0 + 1).
    x = sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(ease_weights(x, 1.0), [[0, 1 / 3], [1 / 3, 0]], rtol=1e-12)


def test_ease_weights_are_the_constrained_ridge_solution():
    x = interaction_dense(small())
    for reg, dropout in ((5.0, 0.0), (2.0, 0.4)):
        weights = ease_weights(sp.csr_matrix(x), reg, dropout)
        gram = x.T @ x
        penalty = reg + dropout / (1 - dropout) * np.diag(gram)
        inverse = np.linalg.inv(gram + np.diag(penalty))
        expected = -inverse / np.diag(inverse)[None, :]
        np.fill_diagonal(expected, 0)
        np.testing.assert_allclose(weights, expected, rtol=1e-9, atol=1e-12)
        assert np.all(np.diag(weights) == 0)
        # column i: ridge regression of movie i on the other movies, with their penalties
        for i in range(x.shape[1]):
            rest = np.delete(np.arange(x.shape[1]), i)
            a = x[:, rest]
            solve = np.linalg.solve(a.T @ a + np.diag(penalty[rest]), a.T @ x[:, i])
            np.testing.assert_allclose(weights[rest, i], solve, rtol=1e-8, atol=1e-10)


def test_ease_weights_on_a_catalog_wider_than_one_mirror_band():
    # 600 movies: the Cholesky inverse is mirrored in several bands of rows
    rng = np.random.default_rng(5)
    x = sp.random(300, 600, density=0.05, random_state=rng, format="csr")
    x.data[:] = 1.0
    gram = (x.T @ x).toarray() + 7.0 * np.eye(600)
    inverse = np.linalg.inv(gram)
    expected = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(ease_weights(x, 7.0), expected, rtol=1e-8, atol=1e-12)


def test_sessions_by_hand():
    # user 1 rates movies 1, 2 within 10 s, then movie 3 90 s later; user 2 rates 1 and 3 15 s apart
    data = Ratings.from_arrays([1, 1, 1, 2, 2], [1, 2, 3, 3, 1], [4.0, 2.0, 5.0, 3.0, 1.0],
                               [0, 10, 100, 20, 5], scale=(0.5, 5.0))
    sessions = session_matrix(data, gap=30.0).toarray()
    np.testing.assert_array_equal(sessions, [[1, 1, 0], [0, 0, 1], [1, 0, 1]])
    # a wide gap: one session per user; min_rating drops low ratings from their session
    np.testing.assert_array_equal(session_matrix(data, gap=1000.0, min_rating=3.0).toarray(),
                                  [[1, 0, 1], [0, 0, 1]])
    # G = X^T X + w S^T S, then the EDLAE penalty on its diagonal
    model = EASE(reg=2.0, dropout=0.25, session_gap=30.0, session_weight=3.0).fit(data)
    x = interaction_dense(data)
    gram = x.T @ x + 3.0 * sessions.T @ sessions
    inverse = np.linalg.inv(gram + np.diag(2.0 + np.diag(gram) / 3))
    expected = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-10)
    # no timestamps: no sessions
    plain = EASE(reg=2.0, session_weight=0.0).fit(tiny()).weights_
    np.testing.assert_array_equal(EASE(reg=2.0, session_weight=3.0).fit(tiny()).weights_, plain)


def interaction_dense(ratings: Ratings) -> np.ndarray:
    return (ratings.csr.toarray() > 0).astype(float)


def test_ease_scores_predictions_and_fold_in_agree():
    data = small()
    for params in ({"reg": 3.0}, {"reg": 3.0, "dropout": 0.3, "min_rating": 3.0, "weighting": "centered"}):
        model = EASE(**params).fit(data)
        scores = model._score_users(np.arange(data.n_users))
        # the score of (u, i) is x_u B_{:, i}
        x = sp.csr_matrix(model.seen_)
        users = np.repeat(np.arange(data.n_users), data.n_items)
        items = np.tile(np.arange(data.n_items), data.n_users)
        np.testing.assert_allclose(model._predict(users, items), scores.ravel(), rtol=1e-10, atol=1e-12)
        for user in (0, 7, 29):
            row = x[user]
            fold = model._fold_in(row.indices, row.data)
            np.testing.assert_allclose(fold, scores[user], rtol=1e-10, atol=1e-12)
            target = np.array([1, 4, 11])
            parts = model._contributions(row.indices, row.data, target)
            assert parts.shape == (3, len(row.indices))
            np.testing.assert_allclose(parts.sum(axis=1), fold[target], rtol=1e-10, atol=1e-12)
        similarity = model._item_similarity(np.array([2, 5]))
        np.testing.assert_allclose(similarity, (model.weights_[[2, 5]] + model.weights_[:, [2, 5]].T) / 2)


def test_ease_guards_and_unknown_pairs():
    with pytest.raises(ConfigError, match="max_items must be an int >= 1, got 0"):
        EASE(max_items=0).fit(tiny())
    for bad in ({"reg": 0.0}, {"dropout": 1.0}, {"dropout": -0.1}, {"weighting": "log"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            EASE(**bad).fit(tiny())
    model = EASE(reg=1.0).fit(tiny())
    np.testing.assert_array_equal(model.predict([99, 1], [1, 99]), [0, 0])


# -- item-knn --------------------------------------------------------------------------------------
def test_cosine_similarity_by_hand():
    # binary: movie 1 by users {1, 2}, movie 2 by {1, 2, 3}, movie 3 by {1, 3, 4}
    # cos(1, 2) = 2 / sqrt(2 * 3), cos(1, 3) = 1 / sqrt(2 * 3), cos(2, 3) = 2 / sqrt(3 * 3)
    model = ItemKNN(similarity="cosine", neighbors=5, shrink=0.0, weighting="binary").fit(tiny())
    c12, c13, c23 = 2 / np.sqrt(6), 1 / np.sqrt(6), 2 / 3
    expected = np.array([[0, c12, c13], [c12, 0, c23], [c13, c23, 0]])
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-6)
    # shrink 1: times n_ij / (n_ij + 1) with n_12 = 2, n_13 = 1, n_23 = 2
    shrunk = ItemKNN(similarity="cosine", neighbors=5, shrink=1.0, weighting="binary").fit(tiny())
    factor = np.array([[0, 2 / 3, 1 / 2], [2 / 3, 0, 2 / 3], [1 / 2, 2 / 3, 0]])
    np.testing.assert_allclose(shrunk.similarity_.toarray(), expected * factor, rtol=1e-6)
    # one neighbour per movie: each row keeps its largest entry
    top1 = ItemKNN(similarity="cosine", neighbors=1, shrink=0.0, weighting="binary").fit(tiny())
    top1 = top1.similarity_.toarray()
    np.testing.assert_allclose(top1, [[0, c12, 0], [c12, 0, 0], [0, c23, 0]], rtol=1e-6)


def test_bm25_weights_by_hand():
    # 6 movies x 4 users, binary: movie lengths 2, 3, 2, 1, 1, 1 (mean 10/6); users rated 3, 3, 2, 2
    item_users = sp.csr_matrix(np.array([[1.0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [0, 1, 0, 0],
                                         [1, 0, 0, 0], [0, 0, 0, 1]]))
    k1, b = 1.2, 0.75
    weighted = bm25_rows(item_users, k1, b).toarray()
    idf = np.log(6) - np.log1p(np.array([3, 3, 2, 2]))
    norm = (1 - b) + b * np.array([2, 3, 2, 1, 1, 1]) / (10 / 6)
    expected = item_users.toarray() * (k1 + 1) / (k1 * norm[:, None] + 1) * idf[None, :]
    np.testing.assert_allclose(weighted, expected, rtol=1e-12)
    similarity = knn_similarity(item_users.T.tocsr(), "bm25", neighbors=5, k1=k1, b=b).toarray()
    dots = expected @ expected.T
    np.fill_diagonal(dots, 0)
    np.testing.assert_allclose(similarity, dots, rtol=1e-6)


def test_item_knn_scores_predictions_and_fold_in_agree():
    data = small()
    for params in ({"similarity": "cosine", "neighbors": 4},
                   {"similarity": "bm25", "neighbors": 6, "shrink": 2.0, "min_rating": 3.0,
                    "weighting": "centered"}):
        model = ItemKNN(**params).fit(data)
        s = model.similarity_.toarray()
        assert np.all(np.diag(s) == 0) and np.all((s > 0).sum(axis=1) <= params["neighbors"])
        scores = model._score_users(np.arange(data.n_users))
        users = np.repeat(np.arange(data.n_users), data.n_items)
        items = np.tile(np.arange(data.n_items), data.n_users)
        np.testing.assert_allclose(model._predict(users, items), scores.ravel(), rtol=1e-5, atol=1e-6)
        x = model.seen_
        for user in (0, 13):
            row = x[user]
            fold = model._fold_in(row.indices, row.data)
            np.testing.assert_allclose(fold, scores[user], rtol=1e-5, atol=1e-6)
            target = np.arange(data.n_items)
            parts = model._contributions(row.indices, row.data, target)
            np.testing.assert_allclose(parts.sum(axis=1), fold, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model._item_similarity(np.array([3])), s[[3]], rtol=1e-6)


def _dense_knn_reference(x: np.ndarray, similarity: str, neighbors: int, shrink: float, k1: float,
                         b: float) -> np.ndarray:
    """The whole items x items similarity in numpy, then each row's top ``neighbors`` positives."""
    if similarity == "bm25":
        weighted = bm25_rows(sp.csr_matrix(x.T), k1, b).toarray()
        full = weighted @ weighted.T
    else:
        norms = np.linalg.norm(x, axis=0)
        outer = np.outer(norms, norms)
        full = np.divide(x.T @ x, outer, out=np.zeros_like(outer), where=outer > 0)
    support = (x != 0).T.astype(float) @ (x != 0).astype(float)
    if shrink > 0:
        full = full * support / (support + shrink)
    np.fill_diagonal(full, 0.0)
    kept = np.zeros_like(full)
    for j, row in enumerate(full):
        best = np.argsort(-row)[:neighbors]
        best = best[row[best] > 0]
        kept[j, best] = row[best]
    return kept


@pytest.mark.parametrize("params", [
    {"similarity": "cosine", "neighbors": 5, "shrink": 0.0},
    {"similarity": "cosine", "neighbors": 3, "shrink": 2.0},
    {"similarity": "bm25", "neighbors": 7, "shrink": 1.0},
    {"similarity": "bm25", "neighbors": 40, "shrink": 0.0},  # more than the catalog: every positive
])
def test_knn_similarity_in_blocks_equals_the_dense_reference(params, monkeypatch):
    rng = np.random.default_rng(8)
    x = rng.random((50, 23)) * (rng.random((50, 23)) < 0.35)  # continuous values: no ties at the cut
    x[:, 5] = 0.0  # a movie nobody rated has no neighbours and is nobody's
    reference = _dense_knn_reference(x, params["similarity"], params["neighbors"], params["shrink"],
                                     0.9, 0.6)
    one_block = knn_similarity(sp.csr_matrix(x), **params, k1=0.9, b=0.6)
    # 23 x 2 values per block: 12 blocks of two rows, the last of one
    monkeypatch.setattr("movierec.models.ranking.item_knn._KNN_ELEMENTS", 2 * 23)
    blocks = []
    blocked = knn_similarity(sp.csr_matrix(x), **params, k1=0.9, b=0.6,
                             callback=lambda _, info: blocks.append(info["block"]))
    assert blocks == list(range(1, 13))
    for result in (one_block, blocked):
        assert result.dtype == np.float32 and result.has_sorted_indices
        np.testing.assert_allclose(result.toarray(), reference, rtol=1e-6, atol=1e-7)
        assert result.nnz == (reference > 0).sum()


def test_item_knn_bad_parameters():
    for bad in ({"similarity": "jaccard"}, {"neighbors": 0}, {"shrink": -1.0}, {"bm25_k1": 0.0},
                {"bm25_b": 1.5}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ItemKNN(**bad).fit(tiny())


# -- quality on real data --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def strat75(ml100k):
    return make_split(ml100k, "user-ratio:0.75:42")


@pytest.mark.slow
@pytest.mark.parametrize(("model", "low", "high"), [
    (Popularity(), 0.25, 0.26),  # anchor (most popular): 0.254
    (ItemKNN(), 0.41, 0.43),  # measured 0.421; LensKit ItemKNN 0.365
    (EASE(), 0.48, 0.50),  # measured 0.489; the anchor's EASE (lambda 500) 0.484
])
def test_ndcg_on_ml100k_strat75(strat75, model, low, high):
    report = evaluate(model.fit(strat75.train), strat75, k=10)
    assert low <= report.metrics["ndcg@10"] <= high, report.metrics


@pytest.mark.parametrize("chunk", [1 << 20, 7, 1])  # time gaps and row starts found block-wise
@pytest.mark.parametrize("weighting", ["binary", "centered"])
def test_sessions_are_the_coo_built_matrix(weighting, chunk, monkeypatch):
    """The session matrix is built straight as CSR; it equals the COO construction of its definition
    (rows: a user's ratings in time order cut at gaps; duplicates impossible), entry for entry,
    whatever the block size of its block-wise steps."""
    from movierec.data.synth import synthesize
    from movierec.models.core import interactions

    monkeypatch.setattr(interactions, "_CHUNK", chunk)
    from movierec.models.core.interactions import _user_time_item_order, interaction_weights

    data = synthesize(200, 150, 6000, seed=2).ratings
    got = session_matrix(data, 3600.0, 3.0, weighting)
    users, items = data.user_index, data.item_index
    ratings = data.rating.astype(np.float64)
    counts = np.maximum(np.bincount(users, minlength=data.n_users), 1)
    means = np.bincount(users, ratings, data.n_users) / counts
    values = interaction_weights(ratings, weighting, means[users]).astype(np.float64)
    order = _user_time_item_order(users, data.timestamp, items, data.n_users, data.n_items)
    u, t = users[order], data.timestamp[order]
    starts = np.r_[True, (u[1:] != u[:-1]) | (np.diff(t) > 3600.0)]
    session = np.cumsum(starts) - 1
    keep = ratings[order] >= 3.0
    want = sp.csr_matrix((values[order][keep], (session[keep], items[order][keep])),
                         shape=(int(session[-1]) + 1, data.n_items))
    assert got.shape == want.shape and got.has_sorted_indices
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)


def test_session_rows_keeps_sessions_of_two_or_more():
    # as in test_sessions_by_hand: sessions {1, 2}, {3} (user 1) and {1, 3} (user 2)
    data = Ratings.from_arrays([1, 1, 1, 2, 2], [1, 2, 3, 3, 1], [4.0, 2.0, 5.0, 3.0, 1.0],
                               [0, 10, 100, 20, 5], scale=(0.5, 5.0))
    np.testing.assert_array_equal(session_rows(data, gap=30.0).toarray(), [[1, 1, 0], [1, 0, 1]])
    # min_rating 3 leaves one movie in every session: none is kept
    assert session_rows(data, gap=30.0, min_rating=3.0).shape == (0, 3)


def test_session_cut_compares_ratings_at_full_precision():
    """min_rating is compared with the ratings in float64, as `interaction_weights` reads them: a
    threshold a hair above 3.5 drops a 3.5 (in float32 the threshold would round down to 3.5)."""
    data = Ratings.from_arrays([1, 1, 1], [1, 2, 3], [3.5, 4.0, 4.5], [0, 10, 20], scale=(0.5, 5.0))
    assert session_matrix(data, 30.0, min_rating=3.5).nnz == 3
    assert session_matrix(data, 30.0, min_rating=3.5000001).nnz == 2
