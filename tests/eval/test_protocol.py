"""`evaluate` on splits small enough to work out by hand (BENCHMARKS.md definitions).

The main split (scale 1..5):

    train   user 1: 50 (4), 40 (3)
            user 2: 10 (5), 30 (2), 40 (4)
            user 3: 20 (1), 50 (3)
    test    user 1: 30 (5), 60 (4)      60 never occurs in train
            user 2: 50 (3), 20 (1)
            user 3: 10 (2)
            user 4: 10 (4)              user 4 never occurs in train

`FixedScores` gives every user the same item scores 50: 6, 40: 5, 30: 4, 20: 2, 10: 0.5, so the
ranking over all train items is 50 > 40 > 30 > 20 > 10, and each user's list is that order minus
the user's own train items:

    user 1: candidates {10, 20, 30} -> 30, 20, 10
    user 2: candidates {20, 50}     -> 50, 20          (then empty slots)
    user 3: candidates {10, 30, 40} -> 40, 30, 10
    user 4: not in training          -> nothing, scores 0
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from movierec.data.dataset import Catalog, Ratings
from movierec.data.split import Split
from movierec.errors import ConfigError, NotFittedError
from movierec.eval.protocol import Report, evaluate
from movierec.models.core.recommender import Callback, Recommender
from movierec.models.rating.bias import BiasRecommender

LOG2_3 = math.log2(3)


class FixedScores(Recommender):
    """Test-only model: fixed, user-independent item scores (a dict raw movie id -> score)."""

    name = "fixed-scores"
    predicts_ratings = False

    def __init__(self, scores: dict[Any, float] | None = None, fallback: float = 3.0) -> None:
        self.scores = scores
        self.fallback = fallback

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        table = self.scores or {}
        self.item_scores_ = np.array([table[i] for i in train.items.ids.tolist()], dtype=np.float64)

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        known = item_index >= 0
        return np.where(known, self.item_scores_[np.maximum(item_index, 0)], self.fallback)

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        return np.tile(self.item_scores_, (len(user_index), 1))

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        return self.item_scores_.copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_scores_ = arrays["item_scores"]


class FixedRatings(FixedScores):
    """The same scores read as predicted ratings (so `evaluate` computes RMSE/MAE, with clipping)."""

    name = "fixed-ratings"
    predicts_ratings = True


SCORES = {50: 6.0, 40: 5.0, 30: 4.0, 20: 2.0, 10: 0.5}


def hand_split() -> Split:
    train = Ratings.from_arrays(
        [1, 1, 2, 2, 2, 3, 3], [50, 40, 10, 30, 40, 20, 50], [4, 3, 5, 2, 4, 1, 3], scale=(1, 5)
    )
    test = Ratings.from_arrays(
        [1, 1, 2, 2, 3, 4], [30, 60, 50, 20, 10, 10], [5, 4, 3, 1, 2, 4], scale=(1, 5)
    )
    return Split(train=train, test=test, recipe="by-hand")


def fixed(cls: type[FixedScores] = FixedScores) -> FixedScores:
    split = hand_split()
    return cls(scores=SCORES).fit(split.train)


def per_user(report: Report) -> pd.DataFrame:
    return report.per_user.set_index("user")


# NDCG of user 1 at any K >= 1: one hit at rank 1, |rel| = 2 (30 and the unseen 60):
# DCG = 1/log2(2) = 1; IDCG = 1/log2(2) + 1/log2(3) = 1 + 1/log2(3)
NDCG_U1 = 1 / (1 + 1 / LOG2_3)  # 0.61315...


class TestRankingByHand:
    def test_per_user_values_at_3(self) -> None:
        report = evaluate(fixed(), hand_split(), k=3)
        rows = per_user(report)
        assert rows.index.tolist() == [1, 2, 3, 4]
        assert rows["n_test"].tolist() == [2, 2, 1, 1]
        expected = {
            # user 1: list 30, 20, 10; hits [1, 0, 0]; |rel| = 2
            #   P = 1/3; R = 1/2; NDCG as above; MAP = (1 * P@1) / min(3, 2) = 1/2; MRR = 1
            1: {"precision": 1 / 3, "recall": 1 / 2, "ndcg": NDCG_U1, "map": 1 / 2, "mrr": 1.0,
                "hit_rate": 1.0},
            # user 2: list 50, 20, -; hits [1, 1, 0]; |rel| = 2
            #   P = 2/3; R = 1; NDCG = (1 + 1/log2 3) / (1 + 1/log2 3) = 1; MAP = (1 + 1)/2 = 1
            2: {"precision": 2 / 3, "recall": 1.0, "ndcg": 1.0, "map": 1.0, "mrr": 1.0,
                "hit_rate": 1.0},
            # user 3: list 40, 30, 10; hits [0, 0, 1]; |rel| = 1
            #   P = 1/3; R = 1; NDCG = (1/log2 4) / (1/log2 2) = 1/2; MAP = (1 * 1/3)/1; MRR = 1/3
            3: {"precision": 1 / 3, "recall": 1.0, "ndcg": 0.5, "map": 1 / 3, "mrr": 1 / 3,
                "hit_rate": 1.0},
            # user 4: unknown to training: 0 everywhere
            4: {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0, "mrr": 0.0,
                "hit_rate": 0.0},
        }
        for user, values in expected.items():
            for key, value in values.items():
                assert rows.loc[user, key] == pytest.approx(value), (user, key)

    def test_summary_at_3(self) -> None:
        report = evaluate(fixed(), hand_split(), k=3)
        m = report.metrics
        # means over the 4 evaluated users (the unserved user 4 counts as 0)
        assert m["precision@3"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 3 + 0) / 4)  # 1/3
        assert m["recall@3"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)  # 0.625
        assert m["ndcg@3"] == pytest.approx((NDCG_U1 + 1 + 0.5 + 0) / 4)  # 0.52829
        assert m["map@3"] == pytest.approx((0.5 + 1 + 1 / 3 + 0) / 4)  # 11/24
        assert m["mrr@3"] == pytest.approx((1 + 1 + 1 / 3 + 0) / 4)  # 7/12
        assert m["hit_rate@3"] == pytest.approx(3 / 4)
        # coverage: {30,20,10} | {50,20} | {40,30,10} = all 5 train items (empty slots not counted)
        assert m["coverage@3"] == pytest.approx(1.0)
        # novelty over the 8 filled slots (user 2's third slot is empty), p_i as in the K = 2 test:
        # 30, 20, 10, 20, 30, 10 at -log2(1/3) = log2(3); 50, 40 at -log2(2/3) = log2(3) - 1
        assert m["novelty@3"] == pytest.approx((6 * LOG2_3 + 2 * (LOG2_3 - 1)) / 8)
        # a ranking-only model: no rating metrics
        assert "rmse" not in m and "mae" not in m

    def test_candidates_exclude_the_users_train_items(self) -> None:
        rows = per_user(evaluate(fixed(), hand_split(), k=3))
        # Were user 1's train items 50 and 40 not removed, the list would be 50, 40, 30 and the
        # hit on 30 would sit at rank 3 (MRR 1/3), not rank 1.
        assert rows.loc[1, "mrr"] == pytest.approx(1.0)
        # User 2 (train 10, 30, 40) hits 50 at rank 1 and 20 at rank 2 only once 40 and 30 are gone.
        assert rows.loc[2, "ndcg"] == pytest.approx(1.0)
        # Cross-check the lists themselves through the model.
        model = fixed()
        assert model.recommend(1, k=3)["item"].tolist() == [30, 20, 10]
        assert model.recommend(2, k=3)["item"].tolist() == [50, 20]
        assert model.recommend(3, k=3)["item"].tolist() == [40, 30, 10]

    def test_unseen_relevant_item_counts_in_rel_but_cannot_be_hit(self) -> None:
        split = hand_split()
        report = evaluate(fixed(), split, k=3)
        rows = per_user(report)
        assert report.info["test_items_unseen_in_train"] == 1  # movie 60
        # user 1 hits 30 but not 60: recall 1/2 (not 1), NDCG 0.613 (not 1)
        assert rows.loc[1, "recall"] == pytest.approx(0.5)
        assert rows.loc[1, "ndcg"] == pytest.approx(NDCG_U1)
        assert rows.loc[1, "ndcg"] < 1.0
        # Same split without the row for 60: user 1 becomes perfect.
        keep = ~((split.test.user_ids == 1) & (split.test.item_ids == 60))
        without = Split(split.train, split.test.take(keep), "by-hand-without-60")
        rows_without = per_user(evaluate(fixed(), without, k=3))
        assert rows_without.loc[1, "recall"] == pytest.approx(1.0)
        assert rows_without.loc[1, "ndcg"] == pytest.approx(1.0)
        # hits: user 1: 1 (30), user 2: 2 (50, 20), user 3: 1 (10)
        assert report.info["hits"] == 4

    def test_unknown_test_user_scores_zero_and_is_counted(self) -> None:
        report = evaluate(fixed(), hand_split(), k=3)
        assert report.info["users_evaluated"] == 4
        assert report.info["users_unserved"] == 1
        row = per_user(report).loc[4]
        assert row["n_test"] == 1
        for key in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate"):
            assert row[key] == 0.0

    def test_k_larger_than_catalog(self) -> None:
        # 5 train items, K = 10: lists are as at K = 3 followed by empty slots
        report = evaluate(fixed(), hand_split(), k=10)
        rows = per_user(report)
        m = report.metrics
        # precision divides by K = 10: user 1: 1/10, user 2: 2/10, user 3: 1/10, user 4: 0
        assert rows["precision"].tolist() == pytest.approx([0.1, 0.2, 0.1, 0.0])
        assert m["precision@10"] == pytest.approx(0.4 / 4)
        # recall and NDCG do not depend on K here (min(K, |rel|) = |rel| for everyone)
        assert m["recall@10"] == pytest.approx(0.625)
        assert m["ndcg@10"] == pytest.approx((NDCG_U1 + 1 + 0.5) / 4)
        # MAP: user 1 (1 * 1)/min(10, 2) = 1/2; user 2 (1 + 1)/2 = 1; user 3 (1/3)/1
        assert m["map@10"] == pytest.approx((0.5 + 1 + 1 / 3) / 4)
        assert m["coverage@10"] == pytest.approx(1.0)
        assert report.info["k"] == 10

    def test_coverage_and_novelty_at_2(self) -> None:
        report = evaluate(fixed(), hand_split(), k=2)
        m = report.metrics
        # lists: user 1: 30, 20; user 2: 50, 20; user 3: 40, 30 (user 4 unserved, not counted)
        # distinct {20, 30, 40, 50} / 5 train items
        assert m["coverage@2"] == pytest.approx(4 / 5)
        # p_i = share of the 3 train users who rated i: 10: 1/3, 20: 1/3, 30: 1/3, 40: 2/3, 50: 2/3
        # slots 30, 20, 50, 20, 40, 30 -> -log2 p: 4 x log2(3) and 2 x log2(3/2)
        expected = (4 * LOG2_3 + 2 * (LOG2_3 - 1)) / 6  # = log2(3) - 1/3 = 1.2516
        assert m["novelty@2"] == pytest.approx(expected)
        # at K = 2: user 1 hit 30 at 1; user 2 hits 50, 20; user 3 (40, 30) misses 10
        assert per_user(report)["hit_rate"].tolist() == [1.0, 1.0, 0.0, 0.0]

    def test_diversity_needs_a_catalog_and_is_one_minus_cosine(self) -> None:
        catalog = Catalog(pd.DataFrame({
            "item": [10, 20, 30, 40, 50],
            "title": ["a", "b", "c", "d", "e"],
            "year": [2000] * 5,
            "genres": [["Drama"], ["Comedy", "Drama"], ["Drama"], ["Horror"], ["Comedy"]],
        }))
        assert "diversity@2" not in evaluate(fixed(), hand_split(), k=2).metrics
        report = evaluate(fixed(), hand_split(), k=2, catalog=catalog)
        # user 1: 30 {Drama} vs 20 {Comedy, Drama}: cosine 1/sqrt(2)
        # user 2: 50 {Comedy} vs 20 {Comedy, Drama}: cosine 1/sqrt(2)
        # user 3: 40 {Horror} vs 30 {Drama}: cosine 0
        expected = (2 * (1 - 1 / math.sqrt(2)) + 1.0) / 3
        assert report.metrics["diversity@2"] == pytest.approx(expected)

    def test_ties_go_to_the_lower_item_id(self) -> None:
        tied = FixedScores(scores={50: 1.0, 40: 1.0, 30: 1.0, 20: 1.0, 10: 1.0}).fit(hand_split().train)
        report = evaluate(tied, hand_split(), k=1)
        rows = per_user(report)
        # every list is the lowest-id candidate: user 1 -> 10 (miss), user 2 -> 20 (hit),
        # user 3 -> 10 (hit)
        assert rows["hit_rate"].tolist() == [0.0, 1.0, 1.0, 0.0]
        assert report.metrics["coverage@1"] == pytest.approx(2 / 5)

    def test_only_users_with_test_rows_are_evaluated(self) -> None:
        split = hand_split()
        # the same test rows minus user 3's only one, keeping the test vocabulary (users 1..4)
        keep = split.test.user_ids != 3
        test = split.test.take(keep, reindex=False)
        assert test.users.ids.tolist() == [1, 2, 3, 4] and len(test) == 5
        report = evaluate(fixed(), Split(split.train, test, "no-user-3"), k=3)
        # evaluated: users 1, 2, 4 -> precision (1/3 + 2/3 + 0) / 3 = 1/3
        assert report.per_user["user"].tolist() == [1, 2, 4]
        assert report.info["users_evaluated"] == 3
        assert report.metrics["precision@3"] == pytest.approx(1 / 3)

    def test_summary_means_equal_per_user_columns(self) -> None:
        for k in (1, 2, 3, 10):
            report = evaluate(fixed(), hand_split(), k=k)
            assert len(report.per_user) == 4
            for key in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate"):
                assert report.metrics[f"{key}@{k}"] == pytest.approx(report.per_user[key].mean())


class TestRatingMetricsByHand:
    def test_rmse_mae_with_clipping_and_fallbacks(self) -> None:
        report = evaluate(fixed(FixedRatings), hand_split(), k=3)
        # test rows: (user, movie, truth) -> prediction (clipped to 1..5) -> error
        #   1, 30, 5 -> 4                      -> -1
        #   1, 60, 4 -> 3 (fallback: movie 60)  -> -1
        #   2, 50, 3 -> 6 clipped to 5          -> +2
        #   2, 20, 1 -> 2                      -> +1
        #   3, 10, 2 -> 0.5 clipped to 1        -> -1
        #   4, 10, 4 -> 0.5 clipped to 1        -> -3   (fallback: user 4 unknown)
        # squared 1 + 1 + 4 + 1 + 1 + 9 = 17; absolute 1 + 1 + 2 + 1 + 1 + 3 = 9
        assert report.metrics["rmse"] == pytest.approx(math.sqrt(17 / 6))
        assert report.metrics["mae"] == pytest.approx(9 / 6)
        assert report.info["fallbacks"] == 2
        # the ranking part is the same as for the ranking-only model
        assert report.metrics["ndcg@3"] == pytest.approx((NDCG_U1 + 1 + 0.5) / 4)

    def test_bias_model_by_hand(self) -> None:
        # reg 0, one sweep: plain means.
        #   train a,x 4; a,y 2; b,x 5        mu = 11/3
        #   residuals a,x 1/3; a,y -5/3; b,x 4/3
        #   b_x = (1/3 + 4/3)/2 = 5/6; b_y = -5/3
        #   b_a = ((1/3 - 5/6) + (-5/3 + 5/3))/2 = -1/4; b_b = 4/3 - 5/6 = 1/2
        train = Ratings.from_arrays(["a", "a", "b"], ["x", "y", "x"], [4, 2, 5], scale=(1, 5))
        test = Ratings.from_arrays(
            ["a", "b", "c", "c"], ["z", "y", "x", "w"], [3, 2, 5, 1], scale=(1, 5)
        )
        split = Split(train, test, "tiny")
        model = BiasRecommender(reg_user=0.0, reg_item=0.0, epochs=1).fit(train)
        # predictions (fallback: an unknown user or movie contributes no bias)
        #   a, z (movie unknown):  11/3 - 1/4       = 41/12   truth 3  error  5/12
        #   b, y:                  11/3 + 1/2 - 5/3  = 5/2     truth 2  error  1/2
        #   c, x (user unknown):   11/3 + 5/6       = 9/2     truth 5  error -1/2
        #   c, w (both unknown):   11/3                       truth 1  error  8/3
        errors = np.array([5 / 12, 1 / 2, -1 / 2, 8 / 3])
        report = evaluate(model, split, k=2)
        assert report.metrics["rmse"] == pytest.approx(math.sqrt(np.mean(errors**2)))
        assert report.metrics["mae"] == pytest.approx(np.mean(np.abs(errors)))
        assert report.info["fallbacks"] == 3
        # ranking: user a rated every train movie (empty list, |rel| 1: zeros);
        # user b: candidates {y} -> y, a hit at rank 1 -> P@2 = 1/2, R = 1, NDCG = 1;
        # user c: unknown -> zeros
        rows = per_user(report)
        assert rows.index.tolist() == ["a", "b", "c"]
        assert rows["precision"].tolist() == pytest.approx([0.0, 0.5, 0.0])
        assert rows["ndcg"].tolist() == pytest.approx([0.0, 1.0, 0.0])
        assert report.info["users_unserved"] == 1
        assert report.metrics["precision@2"] == pytest.approx(1 / 6)
        assert report.metrics["recall@2"] == pytest.approx(1 / 3)
        # coverage: {y} of 2 train movies
        assert report.metrics["coverage@2"] == pytest.approx(1 / 2)

    def test_ranking_can_be_switched_off(self) -> None:
        report = evaluate(fixed(FixedRatings), hand_split(), ranking=False)
        assert set(report.metrics) == {"rmse", "mae"}
        assert report.metrics["rmse"] == pytest.approx(math.sqrt(17 / 6))
        assert report.per_user["user"].tolist() == [1, 2, 3, 4]


class TestReport:
    def test_to_json_parses_back(self) -> None:
        report = evaluate(fixed(FixedRatings), hand_split(), k=3)
        parsed = json.loads(report.to_json())
        assert set(parsed) == {"metrics", "timings", "info"}
        assert parsed["metrics"] == pytest.approx(report.metrics)
        assert parsed["metrics"]["rmse"] == pytest.approx(math.sqrt(17 / 6))
        assert parsed["info"]["users_unserved"] == 1
        assert parsed["info"]["fallbacks"] == 2
        assert parsed["info"]["split"] == "by-hand"
        assert parsed["info"]["model"] == "fixed-ratings"
        assert parsed["info"]["train_ratings"] == 7
        assert parsed["info"]["test_ratings"] == 6
        assert set(parsed["timings"]) == {"predict_s", "rank_s"}
        assert all(v >= 0 for v in parsed["timings"].values())
        assert json.loads(report.to_json(indent=None)) == parsed

    def test_errors(self) -> None:
        with pytest.raises(NotFittedError):
            evaluate(FixedScores(scores=SCORES), hand_split())
        with pytest.raises(ConfigError, match="k must be an int >= 1"):
            evaluate(fixed(), hand_split(), k=0)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_ranked_in_blocks_on_threads_equals_one_block(workers: int, monkeypatch) -> None:
    # 300 users over 40 movies: 7 users per block gives 43 blocks (the last one short), ranked on
    # 1-3 threads; every per-user figure must equal the one-block evaluation exactly
    from movierec.data.split import make_split
    from movierec.data.synth import synthesize
    from movierec.models.core import recommender
    from movierec.models.ranking.ials import ImplicitALS

    split = make_split(synthesize(300, 40, 4000, seed=3), "user-ratio:0.8:1")
    model = ImplicitALS(factors=8, epochs=3, device="cpu").fit(split.train)
    whole = evaluate(model, split, k=5, workers=1)
    monkeypatch.setattr(recommender, "_BLOCK_SCORES", 7 * 40)
    assert recommender.block_users(40) == 7
    blocked = evaluate(model, split, k=5, workers=workers)
    pd.testing.assert_frame_equal(blocked.per_user, whole.per_user)
    assert blocked.metrics == whole.metrics
    assert whole.metrics["ndcg@5"] > 0.05  # a real ranking, not empty lists
