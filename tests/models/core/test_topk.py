"""`top_k` against hand-computed cases and, tie for tie, against the per-row `top_k_reference`."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import movierec.models.core.topk as topk_module
from movierec.models.core.topk import top_k, top_k_reference

INF = np.inf


def assert_same(got, expected):
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[0].dtype == np.int64
    assert got[1].dtype == expected[1].dtype


@pytest.mark.parametrize("fn", [top_k, top_k_reference])
class TestByHand:
    def test_best_first_ties_by_ascending_index(self, fn):
        # row 0: 3 at items 0 and 2 (tie -> 0 first), then 2 at item 3
        # row 1: all equal -> lowest indices
        scores = np.array([[3.0, 1.0, 3.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
        idx, val = fn(scores, 3)
        np.testing.assert_array_equal(idx, [[0, 2, 3], [0, 1, 2]])
        np.testing.assert_array_equal(val, [[3, 3, 2], [1, 1, 1]])

    def test_exclusions_candidates_and_nan_are_never_returned(self, fn):
        scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, np.nan, 3.0, 4.0, 5.0]])
        # user 0 rated item 0 (explicit zero value still counts), user 1 rated item 4
        exclude = sp.csr_matrix((np.array([0.0, 2.0]), ([0, 1], [0, 4])), shape=(2, 5))
        candidates = np.array([True, True, False, True, True])  # item 2 not in train
        idx, val = fn(scores, 2, exclude=exclude, candidates=candidates)
        # user 0: 0 excluded, 2 not a candidate -> 1 (4.0), 3 (2.0)
        # user 1: 4 excluded, 2 not a candidate, 1 NaN -> 3 (4.0), 0 (1.0)
        np.testing.assert_array_equal(idx, [[1, 3], [3, 0]])
        np.testing.assert_array_equal(val, [[4, 2], [4, 1]])

    def test_rows_with_too_few_allowed_items_are_padded(self, fn):
        scores = np.array([[1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]], dtype=np.float32)
        exclude = sp.csr_matrix(np.array([[0, 1, 1], [0, 0, 0]]))
        idx, val = fn(scores, 3, exclude=exclude)
        np.testing.assert_array_equal(idx, [[0, -1, -1], [-1, -1, -1]])
        np.testing.assert_array_equal(val, [[1, -INF, -INF], [-INF, -INF, -INF]])
        assert val.dtype == np.float32

    def test_minus_infinity_is_a_score_not_an_exclusion(self, fn):
        idx, val = fn(np.array([[-INF, np.nan, 0.0, INF]]), 4)
        np.testing.assert_array_equal(idx, [[3, 2, 0, -1]])
        np.testing.assert_array_equal(val, [[INF, 0, -INF, -INF]])

    def test_k_larger_than_catalog_and_k_zero(self, fn):
        scores = np.array([[0.5, 0.7]])
        idx, val = fn(scores, 10)
        np.testing.assert_array_equal(idx, [[1, 0]])
        np.testing.assert_array_equal(val, [[0.7, 0.5]])
        idx, val = fn(scores, 0)
        assert idx.shape == (1, 0)
        assert val.shape == (1, 0)

    def test_per_user_candidates(self, fn):
        scores = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
        candidates = np.array([[False, True, True], [True, False, True]])
        idx, _ = fn(scores, 2, candidates=candidates)
        np.testing.assert_array_equal(idx, [[1, 2], [0, 2]])

    def test_integer_scores_rank_as_float64(self, fn):
        idx, val = fn(np.array([[1, 5, 3]]), 2)
        np.testing.assert_array_equal(idx, [[1, 2]])
        np.testing.assert_array_equal(val, [[5.0, 3.0]])
        assert val.dtype == np.float64

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"k": -1}, "k must be an int >= 0"),
            ({"k": 2.5}, "k must be an int >= 0"),
            ({"k": 2, "exclude": sp.csr_matrix((2, 4))}, "exclude must have the shape"),
            ({"k": 2, "candidates": np.ones(4, dtype=int)}, "bool"),
            ({"k": 2, "candidates": np.ones(4, dtype=bool)}, "candidates must have shape"),
        ],
    )
    def test_bad_arguments_raise(self, fn, kwargs, match):
        with pytest.raises(ValueError, match=match):
            fn(np.zeros((3, 5)), **kwargs)

    def test_scores_must_be_a_real_matrix(self, fn):
        with pytest.raises(ValueError, match="2-D"):
            fn(np.zeros(5), 2)
        with pytest.raises(ValueError, match="real"):
            fn(np.zeros((2, 2), dtype=complex), 1)


def test_fortran_ordered_scores_with_exclusions():
    # the exclusion scatter must land in the working copy whatever the input's memory layout
    scores = np.asfortranarray(np.arange(24, dtype=np.float64).reshape(3, 8))
    exclude = sp.csr_matrix(np.eye(3, 8)[:, ::-1])  # row r excludes column 7 - r
    idx, _ = top_k(scores, 2, exclude=exclude)
    np.testing.assert_array_equal(idx, [[6, 5], [7, 5], [7, 6]])


def test_scores_are_not_modified():
    rng = np.random.default_rng(3)
    scores = rng.random((40, 300))
    scores[0, 5] = np.nan
    before = scores.copy()
    exclude = sp.random(40, 300, density=0.2, format="csr", random_state=3)
    top_k(scores, 7, exclude=exclude, candidates=rng.random(300) < 0.8)
    np.testing.assert_array_equal(scores, before)


@pytest.mark.parametrize("block_elements", [1, 700, 1 << 22])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("n_items", "k"), [(1000, 10), (333, 3), (90, 1), (50, 20)])
def test_agrees_with_reference_across_blocks_and_paths(monkeypatch, block_elements, seed, n_items, k):
    # Wide rows take the grouped prefilter, narrow ones the exact path; few distinct values make
    # ties at the k-th place common; tiny blocks put block boundaries everywhere.
    monkeypatch.setattr(topk_module, "_BLOCK_ELEMENTS", block_elements)
    rng = np.random.default_rng(seed)
    n_users = 23
    n_values = [3, 50, 10**6, 2][seed]
    scores = rng.integers(0, n_values, size=(n_users, n_items)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.02] = np.nan
    scores[5] = 0.0  # an all-tie row
    exclude = sp.random(n_users, n_items, density=0.1, format="csr", random_state=seed)
    candidates = rng.random(n_items) < 0.9
    assert_same(top_k(scores, k), top_k_reference(scores, k))
    assert_same(
        top_k(scores, k, exclude=exclude, candidates=candidates),
        top_k_reference(scores, k, exclude=exclude, candidates=candidates),
    )


def test_rows_with_few_allowed_items_take_the_exact_path_correctly():
    # a wide catalog where most of some rows is excluded: fewer allowed items than k
    rng = np.random.default_rng(0)
    scores = rng.random((6, 2000))
    allowed = np.zeros((6, 2000), dtype=bool)
    allowed[0, [5, 1999]] = True
    allowed[1] = True
    allowed[2, :30] = True
    idx, val = top_k(scores, 10, candidates=allowed)
    assert_same((idx, val), top_k_reference(scores, 10, candidates=allowed))
    assert sorted(idx[0, :2]) == [5, 1999]
    assert (idx[0, 2:] == -1).all()
    assert (idx[3:] == -1).all()


def test_ties_far_from_the_start_of_a_wide_row():
    # Row 0: the best value 1.0 only in the last 50 of 2000 columns, so many groups tie at the
    # threshold and the lowest-indexed tied columns must be searched for deep into the row.
    # Row 1: one 2.0 above a tie of 1.0 at the end. Row 2: all equal (a cold user).
    scores = np.zeros((3, 2000))
    scores[0, 1950:] = 1.0
    scores[1, 1950:] = 1.0
    scores[1, 7] = 2.0
    idx, val = top_k(scores, 10)
    np.testing.assert_array_equal(idx[0], np.arange(1950, 1960))
    np.testing.assert_array_equal(idx[1], [7, *range(1950, 1959)])
    np.testing.assert_array_equal(val[1], [2.0] + [1.0] * 9)
    np.testing.assert_array_equal(idx[2], np.arange(10))
    assert_same((idx, val), top_k_reference(scores, 10))


@st.composite
def problems(draw):
    n_users = draw(st.integers(0, 6))
    n_items = draw(st.integers(0, 70))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    element = st.one_of(st.integers(-2, 2).map(float), st.sampled_from([np.nan, -np.inf, np.inf, -0.0]))
    scores = draw(arrays(dtype, (n_users, n_items), elements=element))
    k = draw(st.integers(0, n_items + 3))
    excluded = draw(arrays(np.bool_, (n_users, n_items)))
    exclude = draw(st.sampled_from([None, sp.csr_matrix(excluded)]))
    candidates = draw(
        st.one_of(
            st.none(),
            arrays(np.bool_, (n_items,)),
            arrays(np.bool_, (n_users, n_items)),
        )
    )
    return scores, k, exclude, candidates


@settings(max_examples=300, deadline=None)
@given(problems())
def test_agrees_with_reference_on_small_tied_matrices(problem):
    scores, k, exclude, candidates = problem
    got = top_k(scores, k, exclude=exclude, candidates=candidates)
    assert_same(got, top_k_reference(scores, k, exclude=exclude, candidates=candidates))


@settings(max_examples=200, deadline=None)
@given(problems())
def test_output_is_allowed_sorted_and_padded_at_the_end(problem):
    scores, k, exclude, candidates = problem
    idx, val = top_k(scores, k, exclude=exclude, candidates=candidates)
    n_users, n_items = scores.shape
    assert idx.shape == val.shape == (n_users, min(k, n_items))
    allowed = ~np.isnan(scores)
    if exclude is not None:
        allowed &= exclude.toarray() == 0
    if candidates is not None:
        allowed &= candidates
    for u in range(n_users):
        filled = idx[u] >= 0
        n_filled = int(filled.sum())
        # padding only at the end, and only when the row ran out of allowed items
        assert filled[:n_filled].all()
        assert n_filled == min(k, n_items, int(allowed[u].sum()))
        assert (val[u, n_filled:] == -np.inf).all()
        items = idx[u, :n_filled]
        assert allowed[u, items].all()
        assert len(set(items.tolist())) == n_filled
        np.testing.assert_array_equal(val[u, :n_filled], scores[u, items])
        # best first; equal scores by ascending index
        for a in range(n_filled - 1):
            assert val[u, a] > val[u, a + 1] or (val[u, a] == val[u, a + 1] and items[a] < items[a + 1])
        # nothing allowed and left out beats the last returned item
        if n_filled:
            left_out = allowed[u].copy()
            left_out[items] = False
            assert not (scores[u, left_out] > val[u, n_filled - 1]).any()
