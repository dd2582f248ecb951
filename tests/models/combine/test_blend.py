"""GF-CF (graph filter) and the z-score blend of ranking models."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from devices import CUDA, CUDA_RTOL
from movierec.data.dataset import Ratings
from movierec.data.split import make_split
from movierec.errors import ConfigError
from movierec.eval.protocol import evaluate
from movierec.models.combine.blend import Blend
from movierec.models.combine.rows import predict_by_rows, zscore_rows
from movierec.models.ranking.ease import EASE
from movierec.models.ranking.gfcf import GFCF, gfcf_filter
from movierec.models.registry import create_model

RTOL = CUDA_RTOL if CUDA else 1e-12


def small() -> Ratings:
    """A random 30 x 12 case (each user rates about half the movies)."""
    rng = np.random.default_rng(3)
    mask = rng.random((30, 12)) < 0.5
    mask[:, 0] = True  # every user rates something
    users, items = np.nonzero(mask)
    values = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], size=len(users))
    return Ratings.from_arrays(users + 1, items + 1, values, scale=(0.5, 5.0))


# -- GF-CF ---------------------------------------------------------------------------------------
def test_gfcf_linear_filter_by_hand():
    # X = [[1, 1], [1, 0]]: user degrees 2, 1; movie degrees 2, 1.
    # R~ = [[1/2, 1/sqrt2], [1/sqrt2, 0]], R~^T R~ = [[3/4, 1/(2 sqrt2)], [1/(2 sqrt2), 1/2]]
    x = sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0]]))
    expected = np.array([[0.75, 0.5 / np.sqrt(2)], [0.5 / np.sqrt(2), 0.5]])
    np.testing.assert_allclose(gfcf_filter(x, 1, 0.0), expected)
    # all singular vectors: V V^T = I, so the ideal term D^-1/2 I D^1/2 is the identity
    np.testing.assert_allclose(gfcf_filter(x, 2, 0.5), expected + 0.5 * np.eye(2))
    np.testing.assert_allclose(gfcf_filter(x, 10, 0.5), expected + 0.5 * np.eye(2))  # capped at 2


def test_gfcf_ideal_term_is_the_top_singular_subspace():
    rng = np.random.default_rng(0)
    x = (rng.random((20, 8)) < 0.4).astype(float)
    x[0] = 1.0
    x[:, 0] = 1.0
    du, di = x.sum(1), x.sum(0)
    normalised = x / np.sqrt(du)[:, None] / np.sqrt(di)[None, :]
    _, _, vt = np.linalg.svd(normalised)
    v = vt[:3].T
    ideal = np.diag(di ** -0.5) @ v @ v.T @ np.diag(di ** 0.5)
    np.testing.assert_allclose(gfcf_filter(sp.csr_matrix(x), 3, 2.0),
                               normalised.T @ normalised + 2.0 * ideal, atol=1e-10)


def test_gfcf_fold_in_and_contributions_match_training_users():
    data = small()
    model = GFCF(factors=4).fit(data)
    user = 5
    items = model.seen_[user].indices
    ratings = model.seen_[user].data
    np.testing.assert_allclose(model._fold_in(items, ratings), model._score_users(np.array([user]))[0])
    target = np.arange(len(model.items_))
    np.testing.assert_allclose(model._contributions(items, ratings, target).sum(axis=1),
                               model._fold_in(items, ratings))
    pairs = model._predict(np.full(3, user), np.array([0, 4, -1]))
    np.testing.assert_allclose(pairs, [*model._score_users(np.array([user]))[0, [0, 4]], 0.0])


def test_gfcf_sessions_join_the_graph_as_user_nodes():
    # user 1 rates movies 1, 2 within 10 s, then 3 90 s later; user 2 rates 1 and 3 15 s apart:
    # sessions of two or more: {1, 2} and {1, 3}; with weight 2 the graph's rows are
    # [1, 1, 1], [1, 0, 1] (users), [2, 2, 0], [2, 0, 2] (sessions): degrees 3, 2, 4, 4 and 6, 3, 4
    data = Ratings.from_arrays([1, 1, 1, 2, 2], [1, 2, 3, 3, 1], [4.0, 2.0, 5.0, 3.0, 1.0],
                               [0, 10, 100, 20, 5], scale=(0.5, 5.0))
    rows = np.array([[1, 1, 1], [1, 0, 1], [2, 2, 0], [2, 0, 2]], dtype=float)
    normalised = rows / np.sqrt([3, 2, 4, 4])[:, None] / np.sqrt([6, 3, 4])[None, :]
    model = GFCF(factors=1, ideal_weight=0.0, session_gap=30.0, session_weight=2.0).fit(data)
    np.testing.assert_allclose(model.weights_, normalised.T @ normalised)
    # users are still scored with their own rows
    np.testing.assert_allclose(model._score_users(np.array([1])), [rows[1] @ model.weights_])
    # weight 0, or no timestamps: the plain filter
    plain = gfcf_filter(sp.csr_matrix(rows[:2]), 1, 0.0)
    np.testing.assert_allclose(GFCF(factors=1, ideal_weight=0.0, session_weight=0.0).fit(data).weights_,
                               plain)
    untimed = Ratings.from_arrays([1, 1, 1, 2, 2], [1, 2, 3, 3, 1], [4.0, 2.0, 5.0, 3.0, 1.0],
                                  scale=(0.5, 5.0))
    np.testing.assert_allclose(GFCF(factors=1, ideal_weight=0.0, session_weight=2.0).fit(untimed).weights_,
                               plain)


@pytest.mark.parametrize("params", [{"factors": 0}, {"ideal_weight": -1.0}, {"weighting": "x"},
                                    {"session_weight": -1.0}, {"session_gap": "x"}])
def test_gfcf_rejects_bad_params(params):
    with pytest.raises(ConfigError):
        GFCF(**params).fit(small())


# -- blend ---------------------------------------------------------------------------------------
def test_blend_is_the_weighted_sum_of_member_zscores():
    data = small()
    users = np.arange(data.n_users)
    ease = EASE(reg=5.0, session_weight=0.0).fit(data)
    gfcf = GFCF(factors=3).fit(data)
    blend = Blend(members="ease:reg=5.0:session_weight=0.0,gf-cf:factors=3", weights="3,1").fit(data)
    expected = 3 * zscore_rows(ease._score_users(users)) + zscore_rows(gfcf._score_users(users))
    np.testing.assert_allclose(blend._score_users(users), expected)
    # a zero weight drops a member; one member alone is its own z-score
    only = Blend(members="ease:reg=5.0:session_weight=0.0,gf-cf", weights="1,0").fit(data)
    np.testing.assert_allclose(only._score_users(users), zscore_rows(ease._score_users(users)))


def test_blend_fold_in_predict_and_contributions_agree_with_scores():
    data = small()
    blend = Blend(members="ease:reg=5.0,gf-cf:factors=3", weights="0.5,0.5").fit(data)
    user = 7
    items, ratings = blend.seen_[user].indices, blend.seen_[user].data
    row = blend._score_users(np.array([user]))[0]
    np.testing.assert_allclose(blend._fold_in(items, ratings), row, atol=1e-10)
    np.testing.assert_allclose(blend._predict(np.array([user, user, -1]), np.array([2, 9, 1])),
                               [row[2], row[9], 0.0])
    contributions = blend._contributions(items, ratings, np.arange(4))
    assert contributions.shape == (4, len(items))
    np.testing.assert_allclose(np.abs(contributions).sum(axis=1), 1.0)  # mean of unit-L1 rows
    similarity = blend._item_similarity(np.array([0, 3]))
    assert similarity.shape == (2, len(blend.items_))


@pytest.mark.parametrize("params", [
    {"members": ""}, {"members": "nope"}, {"members": "hybrid"}, {"members": "blend"},
    {"members": "ease:reg"}, {"members": "ease:shrink=3"},
    {"weights": "1,2"}, {"weights": "0,0,0"}, {"weights": "1,-1,1"}, {"weights": "a,b,c"},
    {"random_state": 1.5},
])
def test_blend_rejects_bad_params(params):
    with pytest.raises(ConfigError):
        Blend(**params).fit(small())


# -- quality on real data --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def strat75(ml100k):
    return make_split(ml100k, "user-ratio:0.75:42")


@pytest.mark.slow
def test_blend_ndcg_on_ml100k_strat75(strat75):
    # measured 0.4952 (EASE alone 0.489, GF-CF alone 0.465); defaults chosen on validation carve-outs
    report = evaluate(Blend().fit(strat75.train), strat75, k=10)
    assert 0.49 <= report.metrics["ndcg@10"] <= 0.50, report.metrics


def test_predict_by_rows_reads_whole_rows_a_block_at_a_time():
    """Pair predictions of row-scored models (blend, hybrid, ltr) read each distinct user's whole row,
    ``block`` users at a time; unknown users or movies (-1) get 0."""
    model = create_model("biased-mf-als", factors=4, epochs=5).fit(small())
    users = np.array([3, 0, -1, 3, 8, 2, 0, 5])
    items = np.array([1, 4, 2, -1, 0, 5, 1, 3])
    rows = model._score_users(np.arange(len(model.users_)))
    expected = np.where((users >= 0) & (items >= 0), rows[np.maximum(users, 0), np.maximum(items, 0)], 0.0)
    # these scores are float32: BLAS (OpenBLAS here, cuBLAS on CUDA) may round one differently in
    # its last bit for another block shape (a one-user block is a matrix-vector product)
    assert rows.dtype == np.float32
    for block in (1, 2, 3, 1024):  # users split across blocks, repeated users in several
        np.testing.assert_allclose(predict_by_rows(model, users, items, block), expected,
                                   rtol=max(RTOL, 4 * float(np.finfo(np.float32).eps)))
