"""The implicit-feedback matrix shared by the ranking models."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.errors import ConfigError
from movierec.models.core.interactions import (
    WEIGHTINGS,
    interaction_matrix,
    interaction_weights,
    user_interactions,
)

SEEN = sp.csr_matrix(np.array([[5.0, 0, 2.0, 3.0], [0, 0, 0, 0], [1.0, 4.0, 0, 0]]))


def test_binary_keeps_every_rating_as_one():
    matrix = interaction_matrix(SEEN)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix.toarray(), (SEEN.toarray() > 0).astype(float))


def test_min_rating_drops_low_ratings_and_rating_weighting_keeps_values():
    matrix = interaction_matrix(SEEN, min_rating=3.0, weighting="rating")
    np.testing.assert_array_equal(matrix.toarray(), [[5, 0, 0, 3], [0, 0, 0, 0], [0, 4, 0, 0]])
    assert matrix.nnz == 3  # dropped ratings are not stored as zeros


def test_centered_weighting_by_hand():
    # user 0 mean 10/3: 5 -> 1 + 5/3, 2 -> 1, 3 -> 1; user 2 mean 2.5: 1 -> 1, 4 -> 2.5
    matrix = interaction_matrix(SEEN, weighting="centered").toarray()
    np.testing.assert_allclose(matrix[0], [1 + 5 / 3, 0, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(matrix[2], [1, 2.5, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(interaction_weights(np.array([1.0, 4.0]), "centered"), [1, 2.5])


@pytest.mark.parametrize(("min_rating", "weighting"), [(-1, "binary"), (float("nan"), "binary"),
                                                       (0, "log"), (True, "binary")])
def test_bad_parameters_name_the_value(min_rating, weighting):
    with pytest.raises(ConfigError, match=r"min_rating|weighting"):
        interaction_matrix(SEEN, min_rating=min_rating, weighting=weighting)


@pytest.mark.parametrize("weighting", ["binary", "rating", "centered"])
def test_a_new_users_values_match_a_training_row(weighting):
    # user 0 of SEEN rated movies 0, 2, 3 with 5, 2, 3; min_rating 3 drops the 2 (its value is 0)
    values = user_interactions(np.array([5.0, 2.0, 3.0]), min_rating=3.0, weighting=weighting)
    row = interaction_matrix(SEEN, min_rating=3.0, weighting=weighting).toarray()[0]
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, row[[0, 2, 3]])
    assert user_interactions(np.empty(0), 0.0, weighting).shape == (0,)


@pytest.mark.parametrize("time_span", [100, 1 << 54, 1 << 62])  # one sort, two, lexsort
def test_session_order_is_the_lexsort_whatever_key_packing(time_span: int) -> None:
    """The packed-key orders (one sort, two stable sorts) equal np.lexsort, ties in time included."""
    from movierec.models.core.interactions import _user_time_item_order

    rng = np.random.default_rng(time_span % 97)
    n = 3000
    users = rng.integers(0, 50, n).astype(np.int32)
    items = rng.integers(0, 40, n).astype(np.int32)
    times = rng.integers(-5, 5, n).astype(np.int64) * (time_span // 10)  # many equal times
    np.testing.assert_array_equal(_user_time_item_order(users, times, items, 50, 40),
                                  np.lexsort((items, times, users)))


def _coo_reference(seen: sp.csr_matrix, min_rating: float, weighting: str) -> sp.csr_matrix:
    """The matrix by its definition: every stored rating >= min_rating at its (row, column), valued
    by `interaction_weights` with the row's mean over all its ratings, assembled through COO."""
    seen = seen.tocoo()
    counts = np.maximum(np.bincount(seen.row, minlength=seen.shape[0]), 1)
    means = np.bincount(seen.row, seen.data.astype(np.float64), seen.shape[0]) / counts
    keep = seen.data >= min_rating
    values = interaction_weights(seen.data[keep], weighting, means[seen.row][keep])
    matrix = sp.csr_matrix((values, (seen.row[keep], seen.col[keep])), shape=seen.shape,
                           dtype=np.float32)
    matrix.sort_indices()
    return matrix


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 9), st.integers(1, 9), st.sampled_from(WEIGHTINGS),
       st.sampled_from([0.0, 2.5, 4.0, 6.0]), st.booleans(), st.booleans())
def test_csr_built_matrix_equals_the_coo_definition(seed, n_rows, n_cols, weighting, min_rating,
                                                   shuffled, repeated):
    """Built row by row straight from the ratings' CSR (empty rows, all-dropped rows, unsorted
    columns, a pair stored twice), the matrix is the COO construction of its definition, entry for
    entry."""
    rng = np.random.default_rng(seed)
    dense = rng.choice([0.0, 0.5, 1.0, 3.0, 4.5, 5.0], size=(n_rows, n_cols),
                       p=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1]).astype(np.float32)
    seen = sp.csr_matrix(dense)
    if repeated:  # each row's first movie stored once more, with another rating, at the row's end
        indices, data, indptr = [], [], [0]
        for row in range(n_rows):
            lo, hi = seen.indptr[row], seen.indptr[row + 1]
            indices += list(seen.indices[lo:hi]) + list(seen.indices[lo:min(lo + 1, hi)])
            data += list(seen.data[lo:hi]) + [float(rng.choice([1.0, 3.0, 4.5]))] * int(hi > lo)
            indptr.append(len(indices))
        seen = sp.csr_matrix((np.array(data, np.float32), np.array(indices, np.int32), indptr),
                             shape=seen.shape)
    if shuffled:  # the same matrix with each row's columns stored out of order
        for row in range(n_rows):
            lo, hi = seen.indptr[row], seen.indptr[row + 1]
            order = rng.permutation(hi - lo)
            seen.indices[lo:hi], seen.data[lo:hi] = seen.indices[lo:hi][order], seen.data[lo:hi][order]
        seen.has_sorted_indices = False
    before = seen.copy()
    got = interaction_matrix(seen, min_rating, weighting)
    want = _coo_reference(seen, min_rating, weighting)
    assert got.dtype == np.float32 and got.shape == want.shape and got.has_sorted_indices
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.data, want.data, rtol=1e-6)  # a repeated pair: sums in any order
    assert not np.shares_memory(got.indices, seen.indices)  # callers may scale or reorder their own
    for part in ("indptr", "indices", "data"):  # the caller's matrix is left as it was
        np.testing.assert_array_equal(getattr(seen, part), getattr(before, part))
