"""The two-pass CPU ranker for inner-product models (`dot_topk`): a float32 pass proven in float64
gives float64's lists exactly (same items, same order, ties by item index, -1 / -inf padding), its
rounding bound holds, and the rows it cannot prove go through full float64 rows."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from movierec.data.synth import synthesize
from movierec.models.core import dot_topk
from movierec.models.core.dot_topk import DotTopK32
from movierec.models.core.topk import top_k
from movierec.models.registry import create_model


def _exact(users: np.ndarray, items: np.ndarray, offsets: np.ndarray):
    """float64 score rows for user indices (the model's `_score_users` for these parts), and a count
    of the rows asked for."""
    asked = []

    def scores(user_index: np.ndarray) -> np.ndarray:
        asked.append(len(user_index))
        return users[user_index].astype(np.float64) @ items.astype(np.float64).T + offsets[None, :]

    return scores, asked


def _want(users, items, offsets, chosen, k, seen, candidates):
    scores = users[chosen].astype(np.float64) @ items.astype(np.float64).T + offsets[None, :]
    return top_k(scores, k, exclude=None if seen is None else seen[chosen], candidates=candidates)


@pytest.fixture(params=[(1024, False), (8, False), (8, True)], ids=["one-stage", "stages", "pieces"])
def first_stage(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The float32 pass in one stage (the small catalogs here) or in stages of 8, 16, 32, ... movies;
    "pieces": each stage, the float64 re-scoring and the rows ranked again from float64 rows, a few
    rows at a time."""
    first, pieces = request.param
    monkeypatch.setattr(dot_topk, "FIRST_STAGE", first)
    if pieces:
        monkeypatch.setattr(dot_topk, "_STAGE_ELEMENTS", 100)
        monkeypatch.setattr(dot_topk, "_REDO_ELEMENTS", 400)
        monkeypatch.setattr(dot_topk, "_RESCORE_ELEMENTS", 500)
    return first


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 10, 57, 300])
def test_equals_float64_top_k(seed: int, k: int, first_stage: int) -> None:
    rng = np.random.default_rng(seed)
    users = rng.normal(scale=0.4, size=(60, 16)).astype(np.float32)
    items = rng.normal(scale=0.4, size=(250, 16)).astype(np.float32)
    offsets = rng.normal(size=250).astype(np.float32) if seed % 2 else np.zeros(250, np.float32)
    seen = sp.random(60, 250, density=0.2, format="csr", random_state=seed)
    candidates = rng.random(250) < 0.7 if seed >= 2 else None
    chosen = np.array([0, 59, 7, 7, 31])
    full, _ = _exact(users, items, offsets)
    got = DotTopK32(users, items, offsets, full).top_k(chosen, k, seen[chosen], candidates)
    want = _want(users, items, offsets, chosen, k, seen, candidates)
    np.testing.assert_array_equal(got[0], want[0])
    # float64 sums in another order (pair by pair): the last bit may differ
    np.testing.assert_allclose(got[1], want[1], rtol=1e-13, atol=1e-15)


def test_ties_and_equal_vectors_are_proven_through_float64_rows(first_stage: int) -> None:
    """Small integers make exact ties everywhere, including at the list's edge: the float32 pass cannot
    prove those rows, which are ranked again from full float64 rows, ties by item index."""
    rng = np.random.default_rng(5)
    users = rng.integers(-2, 3, size=(30, 3)).astype(np.float32)
    items = rng.integers(-2, 3, size=(200, 3)).astype(np.float32)
    offsets = rng.integers(0, 2, size=200).astype(np.float32)
    seen = sp.random(30, 200, density=0.3, format="csr", random_state=1)
    full, asked = _exact(users, items, offsets)
    chosen = np.arange(30)
    got = DotTopK32(users, items, offsets, full).top_k(chosen, 5, seen)
    want = _want(users, items, offsets, chosen, 5, seen, None)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert sum(asked) > 0  # some rows went the float64 way


def test_well_separated_scores_never_need_float64_rows() -> None:
    rng = np.random.default_rng(2)
    users = rng.normal(size=(40, 32)).astype(np.float32)
    items = rng.normal(size=(3000, 32)).astype(np.float32)
    full, asked = _exact(users, items, np.zeros(3000, np.float32))
    DotTopK32(users, items, np.zeros(3000, np.float32), full).top_k(np.arange(40), 10)
    assert asked == []


def test_padding_where_too_few_movies_are_allowed(first_stage: int) -> None:
    users = np.ones((2, 2), np.float32)
    items = np.arange(8, dtype=np.float32).reshape(4, 2)
    seen = sp.csr_matrix(np.array([[1, 1, 1, 1], [1, 0, 1, 0]]))
    full, _ = _exact(users, items, np.zeros(4))
    got_items, got_scores = DotTopK32(users, items, np.zeros(4), full).top_k(
        np.array([0, 1]), 3, seen, np.array([True, True, True, False]))
    assert got_items.tolist() == [[-1, -1, -1], [1, -1, -1]]
    assert got_scores[1, 0] == 5.0 and np.all(np.isneginf(got_scores[0]))
    assert np.all(np.isneginf(got_scores[1, 1:]))


def test_k_zero_and_no_users() -> None:
    items = np.ones((5, 2), np.float32)
    ranker = DotTopK32(np.ones((3, 2), np.float32), items, np.zeros(5), _exact(items, items, items[:, 0])[0])
    assert ranker.top_k(np.array([0, 1]), 0)[0].shape == (2, 0)
    assert ranker.top_k(np.array([], dtype=np.int64), 4)[0].shape == (0, 4)


finite = st.floats(-1e3, 1e3, width=32, allow_subnormal=False)


@settings(max_examples=60, deadline=None)
@given(users=hnp.arrays(np.float32, (3, 7), elements=finite),
       items=hnp.arrays(np.float32, (11, 7), elements=finite),
       offsets=hnp.arrays(np.float64, (11,), elements=st.floats(-1e3, 1e3)))
def test_the_bound_bounds_the_float32_error(users, items, offsets) -> None:
    ranker = DotTopK32(users, items, offsets, lambda u: None)
    exact = users.astype(np.float64) @ items.astype(np.float64).T + offsets[None, :]
    fast = (users @ ranker.items32.T + ranker.offsets32).astype(np.float64)
    assert np.all(np.abs(fast - exact) <= ranker.bound(users.astype(np.float64))[:, None])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 40), scale=st.sampled_from([1e-3, 1.0, 1e3]),
       first=st.sampled_from([1, 3, 1024]), tail=st.booleans())
def test_property_equal_to_float64_lists(seed: int, k: int, scale: float, first: int, tail: bool) -> None:
    """Any stage size; ``tail``: movie norms falling off steeply, so rows stop after a few stages."""
    rng = np.random.default_rng(seed)
    users = (rng.normal(size=(8, 5)) * scale).astype(np.float32)
    items = rng.normal(size=(60, 5)) * scale
    if tail:
        items *= (0.8 ** np.arange(60))[rng.permutation(60), None]
    items = items.astype(np.float32)
    items[rng.integers(0, 60, 10)] = items[0]  # equal vectors: exact ties
    offsets = rng.normal(size=60) * scale
    seen = sp.random(8, 60, density=0.25, format="csr", random_state=seed)
    full, _ = _exact(users, items, offsets)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dot_topk, "FIRST_STAGE", first)
        ranker = DotTopK32(users, items, offsets, full)
    got = ranker.top_k(np.arange(8), k, seen)
    want = _want(users, items, offsets, np.arange(8), k, seen, None)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-12 * scale)


def test_ials_ranks_the_same_with_and_without_the_float32_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through `Recommender.recommend_indices` (blocks, threads): the lists of a fitted iALS do not
    depend on which path ranked them."""
    train = synthesize(300, 500, 15_000, seed=4).ratings
    model = create_model("ials", factors=16, epochs=4, random_state=0).fit(train)
    users = np.arange(len(model.users_))
    monkeypatch.setattr(dot_topk, "MIN_ITEMS", 10**9)
    assert model._cpu_dot_top_k() is None
    want = model.recommend_indices(users, 10)
    monkeypatch.setattr(dot_topk, "MIN_ITEMS", 0)
    assert model._cpu_dot_top_k() is not None
    for workers in (1, 2):
        got = model.recommend_indices(users, 10, workers=workers)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-15)
    # in stages of 16, 32, ... movies, blocks of 64 users on two threads: the same lists and scores
    monkeypatch.setattr(dot_topk, "FIRST_STAGE", 16)
    monkeypatch.setattr(DotTopK32, "batch_users", 64)
    model.__dict__.pop("_cpu_dot_top_k_cache")
    assert model._cpu_dot_top_k()._stage_ends[0] == 16 and model.batch_users() == 64
    staged = model.recommend_indices(users, 10, workers=2)
    np.testing.assert_array_equal(staged[0], got[0])
    np.testing.assert_array_equal(staged[1], got[1])
    # one user alone gets the list and the scores it gets in a batch, to the bit
    alone = model.recommend_indices(users[7:8], 10)
    np.testing.assert_array_equal(alone[1], got[1][7:8])
    # and the scores shown are the model's predictions
    np.testing.assert_array_equal(got[1][7], model._predict(np.full(10, 7), got[0][7]))


def _long_tail(seed: int, n_users: int = 50, n_items: int = 3000, d: int = 12):
    """Factors like a fitted iALS's: movie norms falling off with popularity (a few large, most
    small), users alike, the movies in no particular order."""
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, d)).astype(np.float32)
    norms = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = (rng.normal(size=(n_items, d)) * norms[rng.permutation(n_items), None]).astype(np.float32)
    return users, items


def _count_scored(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Movie scores the float32 pass selects from, call by call (the stages' widths, less the kept
    movies carried along)."""
    counted: list[int] = []
    real = dot_topk.top_k

    def counting(scores, k, *args, **kwargs):
        counted.append(scores.shape[0] * (scores.shape[1] - k))
        return real(scores, k, *args, **kwargs)

    monkeypatch.setattr(dot_topk, "top_k", counting)
    return counted


@pytest.mark.parametrize("with_offsets", [False, True])
def test_rows_stop_once_no_later_movie_can_reach_their_list(monkeypatch: pytest.MonkeyPatch,
                                                             with_offsets: bool) -> None:
    """On long-tailed factors most rows stop after the first stages, and the lists are float64's,
    with seen movies and a candidate filter applied across the stages."""
    users, items = _long_tail(3)
    rng = np.random.default_rng(3)
    offsets = (rng.random(3000) * 0.05 if with_offsets else np.zeros(3000)).astype(np.float32)
    seen = sp.random(50, 3000, density=0.05, format="csr", random_state=3)
    strongest = np.full(50, np.argmax(np.abs(items).sum(1)))  # seen by everyone
    seen = (seen + sp.csr_matrix((np.ones(50), (np.arange(50), strongest)), shape=(50, 3000))).tocsr()
    candidates = rng.random(3000) < 0.9
    monkeypatch.setattr(dot_topk, "FIRST_STAGE", 64)
    monkeypatch.setattr(dot_topk, "_STAGE_ELEMENTS", 1000)  # 10 rows at a time in the first stage
    full, asked = _exact(users, items, offsets)
    ranker = DotTopK32(users, items, offsets, full)
    assert ranker._stage_ends == [93, 186, 372, 744, 1488, 2976, 3000]
    scored = _count_scored(monkeypatch)
    got = ranker.top_k(np.arange(50), 10, seen, candidates)
    want = _want(users, items, offsets, np.arange(50), 10, seen, candidates)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-13, atol=1e-15)
    assert asked == []
    assert sum(scored) < 0.25 * 50 * 3000
    share = ranker.scored_share(np.arange(50), 10, seen)
    assert 93 / 3000 <= share < 0.25


def test_a_movie_without_a_finite_bound_keeps_every_row_scoring_up_to_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN factor makes every bound before the movie NaN: no row stops before it, and the movie
    itself (NaN scores) is never listed."""
    users, items = _long_tail(4, n_items=600)
    items[599] = np.nan
    monkeypatch.setattr(dot_topk, "FIRST_STAGE", 16)
    monkeypatch.setattr(dot_topk, "_REDO_ELEMENTS", 7 * 600)  # the float64 rows 7 at a time
    full, asked = _exact(users, items, np.zeros(600))
    ranker = DotTopK32(users, items, np.zeros(600), full)
    scored = _count_scored(monkeypatch)
    got = ranker.top_k(np.arange(50), 5)
    want = _want(users, items, np.zeros(600), np.arange(50), 5, None, None)
    np.testing.assert_array_equal(got[0], want[0])
    assert not np.isin(599, got[0])
    # every row scored all 600 movies in the stages; the rounding bound is NaN too, so every row
    # was then ranked again from its float64 row (600 less the 5 + 8 kept), 7 rows at a time
    assert sum(asked) == 50 and max(asked) == 7
    assert sum(scored) == 50 * 600 + 50 * (600 - 13)
    assert ranker.scored_share(np.arange(50), 5) == 1.0


def test_float32_underflow_is_within_the_bound() -> None:
    """Products below float32's normal range round to subnormals or zero: nine movies whose float32
    scores all flush to 0 must not be taken as proven against the one whose exact score is 10x
    theirs (the review's case)."""
    users = np.array([[1e-25, 0.0]])
    items = np.array([[1e-25, 1e-23]] * 9 + [[5e-24, 0.0]])
    full, _ = _exact(users, items, np.zeros(10))
    got = DotTopK32(users, items, np.zeros(10), full).top_k(np.array([0]), 1)
    assert got[0].tolist() == [[9]] and got[1][0, 0] == pytest.approx(5e-49)


def test_float32_overflow_sends_the_row_to_float64() -> None:
    """A user beyond float32's range scores NaN there for every movie: the float32 pass keeps
    nothing, which must not read as "every allowed movie kept"."""
    users = np.array([[1e39, 1e39]])
    items = np.array([[1.0, -1.0]] * 3)
    full, asked = _exact(users, items, np.zeros(3))
    got = DotTopK32(users, items, np.zeros(3), full).top_k(np.array([0]), 2)
    assert got[0].tolist() == [[0, 1]] and got[1].tolist() == [[0.0, 0.0]] and asked == [1]


def test_bad_masks_are_refused_whatever_the_scores() -> None:
    users, items = _long_tail(0, n_users=3, n_items=40)
    ranker = DotTopK32(users, items, np.zeros(40), _exact(users, items, np.zeros(40))[0])
    with pytest.raises(ValueError, match="candidates must be a bool array of shape \\(40,\\)"):
        ranker.top_k(np.arange(3), 2, candidates=np.ones(40, dtype=np.int64))
    with pytest.raises(ValueError, match="candidates must be a bool array of shape"):
        ranker.top_k(np.arange(3), 2, candidates=np.ones((3, 40), dtype=bool))
    with pytest.raises(ValueError, match="exclude must have the shape"):
        ranker.top_k(np.arange(3), 2, exclude=sp.csr_matrix((3, 39)))
