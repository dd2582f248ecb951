"""The learned blend (`ltr`): its item and time features, the listwise fit, scoring and fold-in."""

from __future__ import annotations

import numpy as np
import pytest

from movierec.artifacts import load_model, save_model
from movierec.data.dataset import Ratings
from movierec.data.split import make_split, user_ratio_split
from movierec.errors import ConfigError
from movierec.eval.protocol import evaluate
from movierec.models.combine.blend import Blend
from movierec.models.combine.ltr import LearnedBlend, TimeItemFeatures, fit_listwise

DAY = 86400


def timed() -> Ratings:
    """Two users, three movies, on days 0, 0, 2 (user 1) and 2, 2 (user 2); raw ids from 1.

    user 1: movie 1 (5.0, day 0), movie 2 (3.0, day 0), movie 3 (4.0, day 2)
    user 2: movie 1 (1.0, day 2), movie 3 (2.0, day 2)
    """
    return Ratings.from_arrays([1, 1, 1, 2, 2], [1, 2, 3, 1, 3], [5.0, 3.0, 4.0, 1.0, 2.0],
                               [0, 60, 2 * DAY, 2 * DAY + 5, 2 * DAY + 9], scale=(0.5, 5.0))


def test_item_and_time_features_by_hand():
    features = TimeItemFeatures.from_ratings(timed(), time_width=0.01)  # no smoothing across days
    np.testing.assert_allclose(features.popularity, np.log1p([2, 1, 2]))
    # shrunk means: (sum + 5 * 3.0) / (n + 5), global mean 15 / 5 = 3
    np.testing.assert_allclose(features.mean_rating, [(6 + 15) / 7, (3 + 15) / 6, (6 + 15) / 7])
    np.testing.assert_allclose(features.log_share, np.log(1e-4 + np.array([2, 1, 2]) / 5))
    # days 0, 1, 2 are the bins; day 0: movies 1, 2 half each; day 1: nothing; day 2: 1/3, 0, 2/3
    np.testing.assert_allclose(features.share, [[0.5, 0.5, 0], [0, 0, 0], [1 / 3, 0, 2 / 3]], atol=1e-12)
    popularity, mean_rating, time_share, trend, late = features.dense(np.array([0, 1]))
    np.testing.assert_allclose(popularity, np.log1p([[2, 1, 2], [2, 1, 2]]))
    np.testing.assert_allclose(mean_rating[1], features.mean_rating)
    # user 1 rated two thirds on day 0, one third on day 2; user 2 only on day 2
    expected = np.array([[2 / 3 * 0.5 + 1 / 3 * 1 / 3, 2 / 3 * 0.5, 1 / 3 * 2 / 3], [1 / 3, 0, 2 / 3]])
    np.testing.assert_allclose(time_share, np.log(1e-4 + expected))
    np.testing.assert_allclose(trend, time_share - features.log_share[None, :])
    # late: first rating of the movie (days 0, 60 s, 2) minus the user's last rating, in days
    first, last = np.array([0, 60 / DAY, 2]), np.array([2, 2 + 9 / DAY])
    np.testing.assert_allclose(late, first[None, :] - last[:, None])
    # a new user rates "now": the last day, and nothing appeared after it
    *_, new_share, _, new_late = features.dense(None)
    np.testing.assert_allclose(new_share, np.log(1e-4 + np.array([[1 / 3, 0, 2 / 3]])))
    assert (new_late <= 0).all()


def test_late_is_clipped_and_untimed_data_has_zero_time_features():
    far = Ratings.from_arrays([1, 2], [1, 2], [4.0, 4.0], [0, 100 * DAY], scale=(0.5, 5.0))
    late = TimeItemFeatures.from_ratings(far, 14.0).dense(np.array([0, 1]))[4]
    np.testing.assert_allclose(late, [[0, 30], [-30, 0]])
    untimed = Ratings.from_arrays([1, 1, 2], [1, 2, 2], [4.0, 2.0, 5.0], scale=(0.5, 5.0))
    features = TimeItemFeatures.from_ratings(untimed, 14.0)
    assert features.timed[0] == 0
    for user in (np.array([0, 1]), None):
        np.testing.assert_array_equal(np.stack(features.dense(user)[2:]), 0.0)


def test_fit_listwise_learns_the_direction_that_ranks_positives_first():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 10, 2))
    labels = np.zeros((200, 10))
    labels[np.arange(200), np.argmax(features[:, :, 0], axis=1)] = 1.0  # feature 0 decides, 1 is noise
    theta = fit_listwise(features, labels, np.zeros((200, 10)), reg=1e-3)
    assert theta[0] > 1.0 and abs(theta[1]) < 0.3 * theta[0]
    # a strong penalty keeps theta near 0; lists without a positive teach nothing
    assert np.abs(fit_listwise(features, labels, np.zeros((200, 10)), reg=1e8)).max() < 1e-5
    np.testing.assert_array_equal(fit_listwise(features, 0 * labels, np.zeros((200, 10)), 1e-3), [0, 0])


def small() -> Ratings:
    """60 users x 20 movies, about half rated each, timestamps spread over 40 days."""
    rng = np.random.default_rng(5)
    mask = rng.random((60, 20)) < 0.5
    mask[:, :2] = True
    users, items = np.nonzero(mask)
    values = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], size=len(users))
    times = (users * 40 * DAY) // 60 + rng.integers(0, 3 * DAY, size=len(users))
    return Ratings.from_arrays(users + 1, items + 1, values, times, scale=(0.5, 5.0))


MEMBERS = {"members": "ease:reg=5.0,gf-cf:factors=3", "weights": "0.5,0.5"}


def test_a_huge_penalty_gives_the_blend_and_fold_in_matches_the_blend_part():
    data = small()
    users = np.arange(data.n_users)
    blend = Blend(**MEMBERS).fit(data)
    model = LearnedBlend(**MEMBERS, candidates=5, reg=1e9).fit(data)
    np.testing.assert_allclose(model._score_users(users), blend._score_users(users), atol=1e-6)
    learned = LearnedBlend(**MEMBERS, candidates=5).fit(data)
    assert np.abs(learned.theta_).max() > 1e-3
    # predict agrees with the score rows; unknown pairs fall back to 0
    row = learned._score_users(np.array([4]))[0]
    np.testing.assert_allclose(learned._predict(np.array([4, 4, -1]), np.array([1, 7, 2])),
                               [row[1], row[7], 0.0])
    # a new user's scores: the same members' fold-ins, time features taken at the end of training
    items, ratings = learned.seen_[4].indices, learned.seen_[4].data
    z = [m._fold_in(items, ratings)[None, :] for m in learned.blend_.members_]
    liked = [[m._fold_in(items, ratings)[None, :] for m in blend.members_] for blend in learned.liked_]
    has = [np.array([(ratings >= level).any()]) for level in learned.levels_]
    np.testing.assert_allclose(learned._fold_in(items, ratings), learned._combine(z, liked, has, None)[0])


def test_liked_levels_are_the_members_on_high_ratings_only():
    data = small()
    model = LearnedBlend(**MEMBERS, candidates=5).fit(data)
    # levels 4 and 5 (the defaults): two more blends, each member's z-scores once more per level
    np.testing.assert_array_equal(model.levels_, [4.0, 5.0])
    assert [b.min_rating for b in model.liked_] == [4.0, 5.0]
    assert len(model.theta_) == 2 * 3 + 5
    # a level at or below min_rating would repeat the members, one no rating reaches has no data
    assert LearnedBlend(liked_ratings="6,3,5", min_rating=3.0)._levels(data).tolist() == [5.0]
    plain = LearnedBlend(**MEMBERS, candidates=5, liked_ratings="").fit(data)
    assert len(plain.theta_) == 2 + 5 and plain.liked_ == []
    # rows of users without a rating at a level are 0 in that level's features
    seen = model.seen_[np.array([0, 1, 2])]
    assert (LearnedBlend._has_liked(seen, 5.0)
            == [(seen[i].data >= 5.0).any() for i in range(3)]).all()
    scores = [np.arange(6.0).reshape(2, 3), np.ones((2, 3))]
    z = LearnedBlend._liked_z(scores, np.array([True, False]))
    np.testing.assert_allclose(z[0], [[-1.224744871, 0, 1.224744871], [0, 0, 0]], atol=1e-8)
    np.testing.assert_array_equal(z[1], 0.0)
    # a new user with no rating at a level gets 0 there, as a known user does: the blend's fold-in
    # with the liked members left out entirely
    items, ratings = np.array([0, 3, 5]), np.array([1.0, 2.0, 3.0])
    z = [m._fold_in(items, ratings)[None, :] for m in model.blend_.members_]
    zeros = [[np.zeros((1, data.n_items))] * 2] * 2
    np.testing.assert_allclose(model._fold_in(items, ratings),
                               model._combine(z, zeros, [np.array([False])] * 2, None)[0])


def test_lists_and_scores_in_small_blocks_of_users_equal_one_block(monkeypatch):
    data = small()  # 60 users x 20 movies: one block by default
    whole = LearnedBlend(**MEMBERS, candidates=5).fit(data)
    users = np.arange(data.n_users)
    scores = whole._score_users(users)
    monkeypatch.setattr("movierec.models.combine.ltr._BLOCK_VALUES", 7 * data.n_items)  # 7 users a block
    blocked = LearnedBlend(**MEMBERS, candidates=5).fit(data)
    np.testing.assert_allclose(blocked.theta_, whole.theta_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(blocked.mu_, whole.mu_, rtol=1e-12)
    np.testing.assert_allclose(blocked._score_users(users), scores, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(whole._score_users(users), scores, rtol=1e-12)  # scoring in blocks too


def test_max_items_caps_the_dense_members_unless_they_set_their_own(tmp_path):
    data = small()  # 20 movies
    model = LearnedBlend(members="ease:reg=5.0,gf-cf:factors=3:max_items=15,ials:factors=4",
                         weights="0.4,0.4,0.2", candidates=5, carve_outs=1, max_items=12).fit(data)
    ease, gfcf, ials = model.blend_.members_
    assert (ease.max_items, gfcf.max_items) == (12, 15)
    assert len(ease.kept_) == 12 and len(gfcf.kept_) == 15
    assert all(len(blend.members_[0].kept_) == 12 for blend in model.liked_)
    assert not hasattr(ials, "kept_")
    scores = model._score_users(np.arange(data.n_users))
    assert np.isfinite(scores).all()
    save_model(model, tmp_path / "m")  # the capped members' kept movies travel in the artifact
    np.testing.assert_array_equal(load_model(tmp_path / "m").model._score_users(np.arange(data.n_users)),
                                  scores)
    # within the cap the members are the uncapped ones: the same model as a cap above the catalog
    within = LearnedBlend(**MEMBERS, candidates=5, carve_outs=1, max_items=20).fit(data)
    above = LearnedBlend(**MEMBERS, candidates=5, carve_outs=1, max_items=10**6).fit(data)
    assert within.blend_.members_[0].kept_ is None
    np.testing.assert_array_equal(within.theta_, above.theta_)


def test_untimed_ratings_fit_with_item_features_only():
    data = small()
    untimed = Ratings.from_arrays(data.user_ids, data.item_ids, data.rating, scale=(0.5, 5.0))
    model = LearnedBlend(**MEMBERS, candidates=5).fit(untimed)
    assert np.isinf(model.sd_[-3:]).all()  # the three time features are constant: no weight
    assert np.isfinite(model._score_users(np.arange(3))).all()


@pytest.mark.parametrize("params", [
    {"candidates": 0}, {"carve_outs": 0}, {"carve_outs": 1.5}, {"holdout": 0.0}, {"holdout": 1.0},
    {"reg": -1.0}, {"time_width": 0.0}, {"weights": "1,2"}, {"members": "blend"}, {"random_state": 1.5},
    {"liked_ratings": "4,x"}, {"liked_ratings": "4,4"}, {"liked_ratings": "-1"}, {"liked_ratings": 4.0},
    {"max_items": 0},
])
def test_ltr_rejects_bad_params(params):
    with pytest.raises(ConfigError):
        LearnedBlend(**params).fit(small())


@pytest.mark.slow
def test_ltr_ndcg_on_a_validation_carve_out_of_ml100k(ml100k):
    # the first selection carve-out (seed 0): the default model scored 0.2486 there, the blend 0.2473;
    # one carve-out instead of three keeps this test short (0.2487 with it, about 10 s on one thread)
    part = user_ratio_split(make_split(ml100k, "user-ratio:0.75:42").train, 0.8, 0)
    report = evaluate(LearnedBlend(carve_outs=1).fit(part.train), part, k=10)
    assert 0.245 <= report.metrics["ndcg@10"] <= 0.255, report.metrics
