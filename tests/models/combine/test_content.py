"""ContentRecommender: features by hand on a 3-movie catalog, profiles, new movies, persistence."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.artifacts import load_model, save_model
from movierec.data.dataset import Catalog, Ratings
from movierec.data.split import make_split
from movierec.errors import ConfigError
from movierec.eval.protocol import evaluate
from movierec.models.combine.content import ContentRecommender, item_features


def idf(df: int, n: int) -> float:
    return math.log((1 + n) / (1 + df)) + 1


def three_movies() -> Catalog:
    return Catalog(pd.DataFrame({
        "item": [1, 2, 3],
        "title": ["One", "Two", "Three"],
        "year": [1995, 1991, 1972],
        "genres": [["A", "B"], ["A"], ["C"]],
        "tags": [["x", "y"], ["x"], []],
    }))


def test_genre_tfidf_cosine_by_hand() -> None:
    catalog = three_movies()
    features = item_features(catalog, catalog.items, tag_weight=0.0, year_weight=0.0).toarray()
    a, b = idf(2, 3), idf(1, 3)  # A is on two movies, B and C on one
    np.testing.assert_allclose(features[0, :3], np.array([a, b, 0.0]) / math.hypot(a, b))
    np.testing.assert_allclose(features[1, :3], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(features[2, :3], [0.0, 0.0, 1.0])
    cosine = features @ features.T
    np.testing.assert_allclose(cosine[0, 1], a / math.hypot(a, b))
    assert cosine[0, 2] == 0 and cosine[1, 2] == 0


def test_blocks_weights_and_decade_smoothing_by_hand() -> None:
    catalog = three_movies()
    features = item_features(catalog, catalog.items, genre_weight=1.0, tag_weight=0.0,
                             year_weight=1.0, year_smoothing=0.5).toarray()
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0)
    cosine = features @ features.T
    a, b = idf(2, 3), idf(1, 3)
    # each block unit norm, both weight 1: the cosine is the mean of the blocks' cosines.
    # 1995 and 1991 share the 1990s (year cosine 1); 1972 meets 1995 only in the smoothed 1980s:
    # (0.5 * 0.5) / (1 + 2 * 0.25) = 1/6.
    np.testing.assert_allclose(cosine[0, 1], (a / math.hypot(a, b) + 1.0) / 2)
    np.testing.assert_allclose(cosine[0, 2], (0.0 + 1 / 6) / 2)
    # a year weight of 3 makes the year block three times as long as the genre block
    heavy = item_features(catalog, catalog.items, tag_weight=0.0, year_weight=3.0,
                          year_smoothing=0.5).toarray()
    np.testing.assert_allclose((heavy @ heavy.T)[0, 2], (0.0 + 9 * (1 / 6)) / 10)


def test_tags_need_min_tag_movies() -> None:
    catalog = three_movies()
    all_tags = item_features(catalog, catalog.items, genre_weight=0.0, year_weight=0.0,
                             min_tag_movies=1).toarray()
    x, y = idf(2, 3), idf(1, 3)
    # columns: genres A, B, C, then tags x, y, then decades
    np.testing.assert_allclose(all_tags[0, 3:5], np.array([x, y]) / math.hypot(x, y))
    np.testing.assert_allclose(all_tags[1, 3:5], [1.0, 0.0])
    assert not all_tags[2].any()  # no tags: nothing to say with tags alone
    shared = item_features(catalog, catalog.items, genre_weight=0.0, year_weight=0.0,
                           min_tag_movies=2).toarray()
    np.testing.assert_allclose(shared[:, 3:4], [[1.0], [1.0], [0.0]])  # y (one movie) dropped


def catalog_with_new_movies() -> Catalog:
    """Six movies: 1-3 westerns of the 1950s, 4-5 sci-fi of the 1990s; 6 (a 1950s western) and 7
    (a 1990s sci-fi movie) are in the catalog but nobody rated them (nor 3)."""
    ids = [1, 2, 3, 4, 5, 6, 7]
    return Catalog(pd.DataFrame({
        "item": ids,
        "title": [f"M{i}" for i in ids],
        "year": [1952, 1955, 1958, 1994, 1997, 1956, 1995],
        "genres": [["Western"]] * 3 + [["Sci-Fi"]] * 2 + [["Western"], ["Sci-Fi"]],
    }))


def small_ratings() -> Ratings:
    # user 1 loves westerns; user 2 loves sci-fi; user 3 rated one of each
    return Ratings.from_arrays([1, 1, 1, 2, 2, 3, 3], [1, 2, 4, 4, 5, 1, 5],
                               [5.0, 4.0, 1.0, 5.0, 4.0, 3.0, 3.0], scale=(0.5, 5.0))


def fitted(**params: object) -> ContentRecommender:
    return ContentRecommender(**params).fit(small_ratings(), catalog=catalog_with_new_movies())


def test_vocabulary_covers_catalog_only_movies() -> None:
    model = fitted()
    assert model.items_.ids.tolist() == [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(np.bincount(model.seen_.indices, minlength=7), [2, 1, 0, 2, 2, 0, 0])
    assert model.seen_[0, 1] == 4.0 and model.seen_[2, 4] == 3.0  # ratings moved with their movies


def test_scores_are_cosines_of_the_weighted_profile() -> None:
    model = fitted(weighting="deviation", year_weight=0.0)
    # user 1: mean 10/3, deviations +5/3, +2/3 (westerns), -7/3 (sci-fi); all westerns share one
    # feature row w and all sci-fi one row s, orthogonal: profile (7/3) w - (7/3) s, norm 7/3 sqrt 2
    scores = model._score_users(np.array([0]))[0]
    expected = np.array([1, 1, 1, -1, -1, 1, -1]) / math.sqrt(2)
    np.testing.assert_allclose(scores, expected, atol=1e-12)
    pairs = model.predict([1, 1, 9], [6, 7, 6])
    np.testing.assert_allclose(pairs, [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0], atol=1e-12)


def test_new_movie_similar_to_liked_ones_ranks_first() -> None:
    model = fitted()
    top = model.recommend(1, k=3)
    assert top["item"].iloc[0] in (3, 6)  # the unrated western and the never-rated one tie exactly
    assert set(top["item"].iloc[:2]) == {3, 6}
    similar = model._item_similarity(np.array([model.items_.index(7)]))[0]
    assert similar[model.items_.index(4)] == pytest.approx(1.0)  # same genre and decade
    newcomer = model.recommend_for_ratings([(7, 5.0)], k=2)  # rated only a catalog-only movie
    assert set(newcomer["item"]) == {4, 5}


def test_fold_in_equals_a_known_users_scores() -> None:
    model = fitted(weighting="centered")
    known = model._score_users(np.array([0]))[0]
    folded = model._fold_in(model.items_.indices([1, 2, 4]), np.array([5.0, 4.0, 1.0]))
    np.testing.assert_allclose(folded, known, atol=1e-12)


def test_contributions_sum_to_the_score() -> None:
    model = fitted(weighting="rating", year_smoothing=0.5)
    rated = model.items_.indices([1, 4, 5])
    ratings = np.array([5.0, 2.0, 3.5])
    target = np.arange(7)
    parts = model._contributions(rated, ratings, target)
    assert parts.shape == (7, 3)
    np.testing.assert_allclose(parts.sum(axis=1), model._fold_in(rated, ratings), atol=1e-12)


def test_min_rating_drops_ratings_from_the_profile() -> None:
    model = fitted(min_rating=3.5)
    # user 1's sci-fi rating (1.0) no longer counts: westerns only, so sci-fi scores 0
    scores = model._score_users(np.array([0]))[0]
    assert scores[model.items_.index(7)] == pytest.approx(0.0)
    assert scores[model.items_.index(6)] == pytest.approx(1.0)


def test_item_vectors_are_small_and_keep_similarity() -> None:
    model = fitted()
    vectors = model._item_vectors()
    assert vectors.shape[0] == 7 and vectors.shape[1] <= 32 and vectors.dtype == np.float32
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(unit @ unit.T, model._item_similarity(np.arange(7)), atol=1e-6)


def test_needs_a_catalog_and_checks_params() -> None:
    with pytest.raises(ConfigError, match="catalog"):
        ContentRecommender().fit(small_ratings())
    for params, message in (({"weighting": "odd"}, "weighting"), ({"year_smoothing": 2.0}, "year_smoothing"),
                            ({"genre_weight": 0.0, "tag_weight": 0.0, "year_weight": 0.0}, "not all be 0"),
                            ({"min_tag_movies": 0}, "min_tag_movies")):
        with pytest.raises(ConfigError, match=message):
            ContentRecommender(**params).fit(small_ratings(), catalog=catalog_with_new_movies())


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = fitted(weighting="deviation")
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m").model
    assert loaded.items_ == model.items_
    np.testing.assert_array_equal(loaded.features_.toarray(), model.features_.toarray())
    np.testing.assert_array_equal(loaded._score_users(np.arange(3)), model._score_users(np.arange(3)))
    assert loaded.recommend(3, k=5)["item"].tolist() == model.recommend(3, k=5)["item"].tolist()


@pytest.mark.slow
def test_quality_on_ml100k_strat75(ml100k) -> None:  # type: ignore[no-untyped-def]
    split = make_split(ml100k, "user-ratio:0.75:42")
    model = ContentRecommender().fit(split.train, catalog=ml100k.catalog)
    metrics = evaluate(model, split, k=10, catalog=ml100k.catalog).metrics
    # genres and decades alone (0.051 measured): far below collaborative ranking models, far above
    # chance (~0.01)
    assert 0.04 <= metrics["ndcg@10"] <= 0.07, metrics
    assert metrics["coverage@10"] >= 0.2, metrics
