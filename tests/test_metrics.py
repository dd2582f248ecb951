"""Metrics against hand-computed values (BENCHMARKS.md definitions) and their defining properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from movierec.metrics import (
    coverage,
    hit_rate_at_k,
    hits_matrix,
    intra_list_diversity,
    mae,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
)

D = [1.0 / math.log2(i + 1) for i in range(1, 12)]  # D[i - 1] = discount at rank i


def one_user(*ranks_hit: int, k: int) -> np.ndarray:
    hits = np.zeros((1, k), dtype=bool)
    hits[0, [r - 1 for r in ranks_hit]] = True
    return hits


def all_metrics(hits: np.ndarray, n_rel: list[int]) -> dict[str, np.ndarray]:
    n = np.array(n_rel)
    return {
        "precision": precision_at_k(hits),
        "recall": recall_at_k(hits, n),
        "ndcg": ndcg_at_k(hits, n),
        "map": map_at_k(hits, n),
        "mrr": mrr_at_k(hits),
        "hit_rate": hit_rate_at_k(hits),
    }


# --- rating prediction ---------------------------------------------------------------------------


def test_rmse_and_mae_by_hand():
    # errors 0, 0, 2: RMSE = sqrt(4/3), MAE = 2/3
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    # errors -1, +1: RMSE = 1, MAE = 1 (signs must not cancel)
    assert rmse(np.array([3.0, 4.0]), np.array([2.0, 5.0])) == pytest.approx(1.0)
    assert mae(np.array([3.0, 4.0]), np.array([2.0, 5.0])) == pytest.approx(1.0)
    assert rmse([4.5], [4.5]) == 0.0


@pytest.mark.parametrize("fn", [rmse, mae])
@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [
        ([1.0, 2.0], [1.0], "same length"),
        ([], [], "empty"),
        ([1.0, 2.0], [1.0, np.nan], "finite"),
    ],
)
def test_rating_errors_reject_bad_input(fn, y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        fn(y_true, y_pred)


# --- per-user top-N metrics, by hand --------------------------------------------------------------


def test_brief_example_k5_hits_at_1_and_3_of_4_relevant():
    # K=5, hits at ranks 1 and 3, |rel| = 4, m = min(5, 4) = 4
    # P = 2/5; R = 2/4; NDCG = (1 + 1/log2 4) / (1 + 1/log2 3 + 1/log2 4 + 1/log2 5)
    # MAP = (P@1 + P@3) / 4 = (1 + 2/3) / 4; MRR = 1/1; HitRate = 1
    got = all_metrics(one_user(1, 3, k=5), [4])
    assert got["precision"][0] == pytest.approx(0.4)
    assert got["recall"][0] == pytest.approx(0.5)
    assert got["ndcg"][0] == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3) + 1 / 2 + 1 / math.log2(5)))
    assert got["map"][0] == pytest.approx((1 + 2 / 3) / 4)
    assert got["mrr"][0] == 1.0
    assert got["hit_rate"][0] == 1.0


def test_single_late_hit():
    # K=3, one hit at rank 2, |rel| = 1, m = 1
    # P = 1/3; R = 1; NDCG = (1/log2 3) / 1; MAP = P@2 / 1 = 1/2; MRR = 1/2
    got = all_metrics(one_user(2, k=3), [1])
    assert got["precision"][0] == pytest.approx(1 / 3)
    assert got["recall"][0] == 1.0
    assert got["ndcg"][0] == pytest.approx(1 / math.log2(3))
    assert got["map"][0] == pytest.approx(0.5)
    assert got["mrr"][0] == pytest.approx(0.5)
    assert got["hit_rate"][0] == 1.0


def test_fewer_relevant_than_k_ideal_list_scores_one():
    # K=5, |rel| = 2 both at ranks 1, 2: IDCG over m = 2 ranks, so NDCG = MAP = 1, P = 2/5, R = 1
    got = all_metrics(one_user(1, 2, k=5), [2])
    assert got["ndcg"][0] == 1.0
    assert got["map"][0] == 1.0
    assert got["precision"][0] == pytest.approx(0.4)
    assert got["recall"][0] == 1.0


def test_fewer_relevant_than_k_hits_at_the_end():
    # K=5, |rel| = 2 at ranks 4, 5: NDCG = (1/log2 5 + 1/log2 6) / (1 + 1/log2 3)
    # MAP = (P@4 + P@5) / 2 = (1/4 + 2/5) / 2; MRR = 1/4
    got = all_metrics(one_user(4, 5, k=5), [2])
    assert got["ndcg"][0] == pytest.approx((D[3] + D[4]) / (D[0] + D[1]))
    assert got["map"][0] == pytest.approx((1 / 4 + 2 / 5) / 2)
    assert got["mrr"][0] == pytest.approx(0.25)


def test_more_relevant_than_k_all_hits():
    # K=3, |rel| = 10, all 3 slots hit: P = 1, R = 3/10, NDCG = 1 (m = 3), MAP = 3/3 = 1
    got = all_metrics(one_user(1, 2, 3, k=3), [10])
    assert got["precision"][0] == 1.0
    assert got["recall"][0] == pytest.approx(0.3)
    assert got["ndcg"][0] == 1.0
    assert got["map"][0] == 1.0
    assert got["mrr"][0] == 1.0


def test_no_hits_scores_zero_everywhere():
    got = all_metrics(one_user(k=4), [3])
    for name, values in got.items():
        assert values[0] == 0.0, name


def test_user_without_relevant_items_scores_zero():
    # the second user has no relevant item: 0 on every metric, not NaN; the first is unaffected
    hits = np.array([[True, False], [False, False]])
    got = all_metrics(hits, [1, 0])
    for name, values in got.items():
        assert values[1] == 0.0, name
    assert got["ndcg"][0] == 1.0
    assert got["recall"][0] == 1.0


def test_several_users_are_independent():
    # row 0: hit at 2 of |rel| 1; row 1: hits at 1..3 of |rel| 3; row 2: nothing
    hits = np.array([[False, True, False], [True, True, True], [False, False, False]])
    got = all_metrics(hits, [1, 3, 2])
    np.testing.assert_allclose(got["precision"], [1 / 3, 1, 0])
    np.testing.assert_allclose(got["recall"], [1, 1, 0])
    np.testing.assert_allclose(got["ndcg"], [D[1], 1, 0])
    np.testing.assert_allclose(got["map"], [1 / 2, 1, 0])
    np.testing.assert_allclose(got["mrr"], [1 / 2, 1, 0])
    np.testing.assert_allclose(got["hit_rate"], [1, 1, 0])


@pytest.mark.parametrize(
    ("hits", "n_rel", "match"),
    [
        (np.zeros((2, 3), dtype=int), [1, 1], "bool"),
        (np.zeros((2, 0), dtype=bool), [1, 1], "at least one column"),
        (np.ones((2, 3), dtype=bool), [1, 3], ">= the number of hits"),
        (np.zeros((2, 3), dtype=bool), [1], "shape"),
        (np.zeros((2, 3), dtype=bool), [1, -1], ">= 0"),
    ],
)
def test_per_user_functions_reject_bad_input(hits, n_rel, match):
    with pytest.raises(ValueError, match=match):
        ndcg_at_k(hits, np.array(n_rel))


# --- hits from topk + relevant --------------------------------------------------------------------


def relevant_of(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


def test_hits_matrix_with_empty_slots_and_unserved_user():
    topk = np.array([[3, 0, 5, -1], [-1, -1, -1, -1], [2, 1, 4, 0]])
    relevant = relevant_of([[0, 1, 5], [2], [7]], n_items=8)
    expected = np.array([[False, True, True, False], [False] * 4, [False] * 4])
    np.testing.assert_array_equal(hits_matrix(topk, relevant), expected)


def test_empty_slot_does_not_alias_previous_users_last_item():
    # user 0 has item 3 (the last column) relevant; user 1's -1 slot must not match it
    topk = np.array([[0, -1], [-1, -1]])
    relevant = relevant_of([[3], [2]], n_items=4)
    np.testing.assert_array_equal(hits_matrix(topk, relevant), np.zeros((2, 2), dtype=bool))


def test_relevant_values_are_ignored_but_structure_counts():
    # an explicit zero rating is still a relevant item; duplicates count once
    relevant = sp.csr_matrix((np.array([0.0, 4.0, 1.0]), np.array([1, 2, 2]), np.array([0, 3])), shape=(1, 4))
    got = ranking_metrics(np.array([[1, 2, 0]]), relevant)
    # hits at ranks 1, 2 of |rel| = 2: recall 1, NDCG 1
    assert got["recall"][0] == 1.0
    assert got["ndcg"][0] == 1.0
    assert got["precision"][0] == pytest.approx(2 / 3)


def test_unsorted_csr_indices_with_duplicates():
    # row 0 stores items 4, 1, 4 (unsorted, 4 twice): |rel| = 2; row 1 stores 3, 0: |rel| = 2
    relevant = sp.csr_matrix((np.ones(5), np.array([4, 1, 4, 3, 0]), np.array([0, 3, 5])), shape=(2, 5))
    assert not relevant.has_sorted_indices
    topk = np.array([[1, 2, 4], [0, 1, 2]])
    np.testing.assert_array_equal(hits_matrix(topk, relevant), [[True, False, True], [True, False, False]])
    # row 0: hits at 1, 3 of |rel| 2 -> recall 1, MAP (1 + 2/3) / 2; row 1: hit at 1 -> recall 1/2
    got = ranking_metrics(topk, relevant)
    np.testing.assert_allclose(got["recall"], [1, 1 / 2])
    np.testing.assert_allclose(got["map"], [(1 + 2 / 3) / 2, 1 / 2])


def test_ranking_metrics_end_to_end():
    # user 0: K=5, list [7, 2, 9, 4, 1], relevant {7, 9, 3, 8}: hits at ranks 1, 3 (the brief's case)
    # user 1: list [5, 6, -1, -1, -1] (short), relevant {6}: hit at rank 2 of |rel| 1
    topk = np.array([[7, 2, 9, 4, 1], [5, 6, -1, -1, -1]])
    relevant = relevant_of([[7, 9, 3, 8], [6]], n_items=10)
    got = ranking_metrics(topk, relevant)
    assert set(got) == {"precision", "recall", "ndcg", "map", "mrr", "hit_rate"}
    np.testing.assert_allclose(got["precision"], [2 / 5, 1 / 5])
    np.testing.assert_allclose(got["recall"], [1 / 2, 1])
    np.testing.assert_allclose(got["ndcg"], [(1 + 1 / 2) / sum(D[:4]), D[1]])
    np.testing.assert_allclose(got["map"], [(1 + 2 / 3) / 4, 1 / 2])
    np.testing.assert_allclose(got["mrr"], [1, 1 / 2])
    np.testing.assert_allclose(got["hit_rate"], [1, 1])


@pytest.mark.parametrize(
    ("topk", "match"),
    [
        (np.array([[0, 1]]), "rows"),  # 1 row against 2 users
        (np.array([[0, 0], [1, 2]]), "repeat"),
        (np.array([[0, -2], [1, 2]]), "-1"),
        (np.array([[0, 4], [1, 2]]), "beyond"),
        (np.array([[0.0, 1.0], [1.0, 2.0]]), "int"),
    ],
)
def test_hits_matrix_rejects_bad_topk(topk, match):
    with pytest.raises(ValueError, match=match):
        hits_matrix(topk, relevant_of([[0], [1]], n_items=4))


# --- beyond accuracy ------------------------------------------------------------------------------


def test_coverage_counts_distinct_items_ignoring_empty_slots():
    # items {0, 1, 2} of a 10-item catalog
    assert coverage(np.array([[0, 1, -1], [1, 2, -1]]), 10) == pytest.approx(0.3)
    assert coverage(np.full((2, 3), -1), 5) == 0.0
    with pytest.raises(ValueError, match="n_catalog"):
        coverage(np.array([[0, 1]]), 0)
    with pytest.raises(ValueError, match="more than"):
        coverage(np.array([[0, 1, 2]]), 2)


def test_novelty_by_hand():
    # p = [0.5, 0.25, 0, 1]; slots 0, 1, 2, 3 -> 1 bit, 2 bits, skipped (p = 0), 0 bits: mean 1
    pop = np.array([0.5, 0.25, 0.0, 1.0])
    assert novelty(np.array([[0, 1], [2, 3], [-1, -1]]), pop) == pytest.approx(1.0)
    # only p = 0 items and empty slots: nothing to average
    assert math.isnan(novelty(np.array([[2, -1]]), pop))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        novelty(np.array([[0]]), np.array([1.5]))
    with pytest.raises(ValueError, match="beyond"):
        novelty(np.array([[4]]), pop)


def test_intra_list_diversity_by_hand():
    # features: item 0 = (1, 0), item 1 = (0, 1), item 2 = (1, 1), item 3 = (0, 0)
    # [0, 1, 2]: cos(0,1) = 0, cos(0,2) = cos(1,2) = 1/sqrt 2 -> mean of (1, 1 - 1/sqrt 2 twice)
    # [0, 3]: item 3 has no features, cosine 0 -> 1; [2, _, 0]: 1 - 1/sqrt 2
    # [1] and the empty list: fewer than 2 items -> NaN
    features = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float))
    topk = np.array([[0, 1, 2], [0, 3, -1], [2, -1, 0], [1, -1, -1], [-1, -1, -1]])
    got = intra_list_diversity(topk, features)
    c = 1 / math.sqrt(2)
    np.testing.assert_allclose(got[:3], [(1 + 2 * (1 - c)) / 3, 1.0, 1 - c])
    assert np.isnan(got[3:]).all()


def test_intra_list_diversity_identical_and_scaled_features_have_zero_diversity():
    # cosine ignores length: items (1, 1) and (3, 3) are the same direction
    features = np.array([[1.0, 1.0], [3.0, 3.0], [0.0, 2.0]])
    got = intra_list_diversity(np.array([[0, 1], [0, 2]]), sp.csr_matrix(features))
    np.testing.assert_allclose(got, [0.0, 1 - 1 / math.sqrt(2)], atol=1e-12)


# --- properties -----------------------------------------------------------------------------------


@st.composite
def hits_and_counts(draw):
    n_users = draw(st.integers(1, 8))
    k = draw(st.integers(1, 12))
    hits = draw(arrays(np.bool_, (n_users, k)))
    extra = draw(arrays(np.int64, (n_users,), elements=st.integers(0, 15)))
    n_rel = hits.sum(axis=1) + extra
    return hits, n_rel


@given(hits_and_counts())
def test_all_metrics_lie_in_unit_interval(case):
    hits, n_rel = case
    for name, values in all_metrics(hits, list(n_rel)).items():
        assert values.shape == (hits.shape[0],), name
        assert ((values >= 0) & (values <= 1)).all(), (name, values)


@given(hits_and_counts())
def test_ndcg_and_map_are_one_iff_the_first_m_slots_hit(case):
    hits, n_rel = case
    k = hits.shape[1]
    m = np.minimum(n_rel, k)
    ideal = np.array([hits[u, : m[u]].all() and m[u] > 0 for u in range(len(m))])
    np.testing.assert_array_equal(ndcg_at_k(hits, n_rel) == 1.0, ideal)
    np.testing.assert_array_equal(map_at_k(hits, n_rel) == 1.0, ideal)


@given(hits_and_counts())
def test_precision_times_k_equals_recall_times_relevant(case):
    hits, n_rel = case
    n_hits = hits.sum(axis=1)
    np.testing.assert_allclose(precision_at_k(hits) * hits.shape[1], n_hits)
    has_rel = n_rel > 0
    np.testing.assert_allclose((recall_at_k(hits, n_rel) * n_rel)[has_rel], n_hits[has_rel])


@given(hits_and_counts())
def test_mrr_and_hit_rate_follow_the_first_hit(case):
    hits, _ = case
    first = [next((i + 1 for i, h in enumerate(row) if h), None) for row in hits]
    np.testing.assert_allclose(mrr_at_k(hits), [1 / r if r else 0.0 for r in first])
    np.testing.assert_array_equal(hit_rate_at_k(hits), [1.0 if r else 0.0 for r in first])


@st.composite
def lists_and_relevant(draw):
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 9))
    k = draw(st.integers(1, 6))
    topk = np.full((n_users, k), -1, dtype=np.int64)
    for u in range(n_users):
        items = draw(st.lists(st.integers(0, n_items - 1), unique=True, max_size=min(k, n_items)))
        topk[u, : len(items)] = items
    rel = [draw(st.sets(st.integers(0, n_items - 1))) for _ in range(n_users)]
    return topk, rel, n_items


@given(lists_and_relevant())
def test_hits_matrix_agrees_with_set_membership(case):
    topk, rel, n_items = case
    expected = np.array([[i >= 0 and i in rel[u] for i in row] for u, row in enumerate(topk)])
    relevant = relevant_of([sorted(r) for r in rel], n_items)
    np.testing.assert_array_equal(hits_matrix(topk, relevant), expected.reshape(topk.shape))
    got = ranking_metrics(topk, relevant)
    np.testing.assert_allclose(got["recall"] * [len(r) for r in rel], expected.sum(axis=1))


@st.composite
def lists_and_features(draw):
    topk, _, n_items = draw(lists_and_relevant())
    features = draw(arrays(np.float64, (n_items, draw(st.integers(1, 4))), elements=st.integers(0, 3)))
    return topk, features


@given(lists_and_features())
def test_intra_list_diversity_agrees_with_pairwise_loop(case):
    topk, features = case

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))

    expected = []
    for row in topk:
        items = [i for i in row if i >= 0]
        pairs = [(a, b) for n, a in enumerate(items) for b in items[n + 1 :]]
        dists = [1 - cos(features[a], features[b]) for a, b in pairs]
        expected.append(np.mean(dists) if pairs else np.nan)
    got = intra_list_diversity(topk, sp.csr_matrix(features))
    np.testing.assert_allclose(got, expected, atol=1e-12)
