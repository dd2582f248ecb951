"""Filters, diversity re-ranking, similar movies, explanations and cold start: the shared plumbing in
`Recommender`, checked on small models whose answers can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from movierec.artifacts import load_model, save_model
from movierec.data.dataset import Catalog, Ratings
from movierec.errors import ConfigError, UnknownIdError
from movierec.models.core.rerank import mmr
from movierec.models.registry import create_model

# Six movies: 1-3 comedies of the 1990s, 4-6 dramas of the 2000s; movie 6 also a comedy.
CATALOG = Catalog(pd.DataFrame({
    "item": [1, 2, 3, 4, 5, 6],
    "title": ["A", "B", "C", "D", "E", "F"],
    "year": [1991, 1995, 1999, 2001, 2005, 2009],
    "genres": [["Comedy"], ["Comedy"], ["Comedy"], ["Drama"], ["Drama"], ["Drama", "Comedy"]],
}))


def ratings() -> Ratings:
    # Users 1-4 like comedies, 5-8 dramas; everyone has seen movie 1 except user 9 (seen only 4).
    users, items, values = [], [], []
    for user in range(1, 9):
        liked = (1, 2, 3) if user <= 4 else (4, 5, 6)
        for item in liked:
            if not (user == 1 and item == 3):
                users.append(user)
                items.append(item)
                values.append(5.0)
        if user > 4:
            users.append(user)
            items.append(1)
            values.append(1.0)
    users.append(9)
    items.append(4)
    values.append(4.0)
    return Ratings.from_arrays(users, items, values, scale=(1.0, 5.0))


@pytest.fixture(scope="module")
def knn():
    return create_model("item-knn-baseline", baseline_epochs=2, min_k=1).fit(ratings(), catalog=CATALOG)


@pytest.fixture(scope="module")
def als():
    return create_model("biased-mf-als", factors=4, epochs=5).fit(ratings(), catalog=CATALOG)


def test_genre_filter_keeps_only_matching_movies(knn):
    recs = knn.recommend(9, k=10, genres=["comedy"])  # any case
    assert set(recs["item"]) == {1, 2, 3, 6}
    recs = knn.recommend(9, k=10, exclude_genres=["Comedy"])
    assert set(recs["item"]) == {5}


def test_year_filter_is_inclusive_and_open_ended(knn):
    assert set(knn.recommend(9, k=10, years=(1995, 2001))["item"]) == {2, 3}  # 4 is seen
    assert set(knn.recommend(9, k=10, years=(2005, None))["item"]) == {5, 6}
    assert set(knn.recommend(9, k=10, years=(None, 1991))["item"]) == {1}


def test_min_ratings_filter(knn):
    # training counts: movie 1: 8, 2: 4, 3: 3, 4: 5, 5: 4, 6: 4
    assert set(knn.recommend(9, k=10, min_ratings=5)["item"]) == {1}


def test_bad_filters_are_config_errors(knn):
    with pytest.raises(ConfigError, match="unknown genre 'Western'"):
        knn.recommend(9, genres=["Western"])
    with pytest.raises(ConfigError, match="earlier to later"):
        knn.recommend(9, years=(2000, 1990))
    with pytest.raises(ConfigError, match="diversity"):
        knn.recommend(9, diversity=1.5)


def test_filters_need_a_catalog():
    model = create_model("bias").fit(ratings())
    with pytest.raises(ConfigError, match="catalog"):
        model.recommend(9, genres=["Comedy"])
    assert len(model.recommend(9, min_ratings=4)) == 4  # counts need no catalog


def test_filters_apply_to_new_users_and_similar_movies(knn):
    recs = knn.recommend_for_ratings([(4, 5.0)], k=10, genres=["Drama"])
    assert set(recs["item"]) == {5, 6}
    similar = knn.similar_items(2, k=10, years=(2000, None))
    assert set(similar["item"]) <= {4, 5, 6}


def test_similar_items_never_returns_the_movie_itself(knn, als):
    for model in (knn, als):
        similar = model.similar_items(2, k=10)
        assert 2 not in set(similar["item"]) and len(similar) == 5
        assert similar["score"].is_monotonic_decreasing
    # comedies are rated together: movie 2's nearest neighbour is another comedy
    assert knn.similar_items(2, k=1)["item"].iloc[0] in (1, 3)
    with pytest.raises(UnknownIdError):
        knn.similar_items(99)


def test_co_rating_similarity_by_hand():
    model = create_model("bias").fit(ratings())
    # movie 2 is rated by users 1-4, movie 3 by users 2-4: cosine = 3 / sqrt(4 * 3)
    similarity = model._item_similarity(np.array([1]))[0]
    assert similarity[2] == pytest.approx(3 / np.sqrt(12))
    assert similarity[1] == pytest.approx(1.0)


def test_explain_names_the_users_own_movies(knn, als):
    for model in (knn, als):
        why = model.explain(1, 3, n=2)
        assert set(why["item"]) <= {1, 2} and len(why) >= 1
        assert (why["contribution"] > 0).all() and why["contribution"].is_monotonic_decreasing
        assert (why["rating"] == 5.0).all()
    why = als.explain_for_ratings([(2, 5.0), (5, 1.0)], 3, n=3)
    assert why["item"].iloc[0] == 2


def test_recommend_explains_each_pick(knn):
    recs = knn.recommend(1, k=3, explain=2)
    assert recs["because"].map(len).max() <= 2
    assert all(set(b) <= {1, 2} for b in recs["because"])
    recs = knn.recommend_for_ratings([(4, 5.0), (5, 5.0)], k=2, explain=1)
    assert all(set(b) <= {4, 5} for b in recs["because"])


def test_picks_are_what_recommend_shows(knn, als):
    for model in (knn, als):
        for explain in (0, 2):
            picks = model.picks(1, k=4, explain=explain)
            frame = model.recommend(1, k=4, explain=explain)
            assert picks.items.tolist() == frame["item"].tolist()
            np.testing.assert_array_equal(picks.scores, frame["score"].to_numpy())
            assert (picks.because is None) == (explain == 0)
            if explain:
                assert picks.because == frame["because"].tolist()
        pairs = [(4, 5.0), (2, 1.0)]
        picks = model.picks_for_ratings(pairs, k=3, genres=["Drama"], explain=1)
        frame = model.recommend_for_ratings(pairs, k=3, genres=["Drama"], explain=1)
        assert picks.items.tolist() == frame["item"].tolist() and picks.because == frame["because"].tolist()
        assert set(picks.items) <= {5, 6}  # dramas, the rated drama excluded


def test_picks_for_ratings_excludes_rated_movies_only_when_asked(als):
    pairs = [(1, 5.0), (4, 5.0), (6, 2.0)]
    assert not set(als.picks_for_ratings(pairs, k=6).items) & {1, 4, 6}
    assert set(als.picks_for_ratings(pairs, k=6, exclude_rated=False).items) == {1, 2, 3, 4, 5, 6}
    with pytest.raises(ConfigError, match="explain"):
        als.picks_for_ratings(pairs, k=2, explain=-1)


@pytest.mark.parametrize("n_rated", [5, 300])  # below and above the sort-whole-rows cut-off
def test_because_keeps_the_strongest_positive_contributions_in_order(n_rated):
    """Both branches of `_because` (sorting short rows, partitioning long ones) name, per target,
    the rated movies with the largest positive contributions, strongest first, ties to the lower
    position."""
    from movierec.models.core import explain
    from movierec.models.core.recommender import Recommender

    assert (n_rated > explain._SORT_ROWS_UP_TO) == (n_rated == 300)
    rng = np.random.default_rng(n_rated)
    contributions = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0], size=(4, n_rated))

    class Fixed(Recommender):
        name = "fixed"

    model = Fixed.__new__(Fixed)
    model.items_ = ratings().items  # raw ids 1..6
    model._contribution_matrix = lambda rated, values, targets: contributions
    rated = np.arange(n_rated) % 6
    why = model._because(rated, np.ones(n_rated), np.arange(4), 3)
    for row, names in zip(contributions, why, strict=True):
        order = [j for j in np.argsort(-row, kind="stable")[:3] if row[j] > 0]
        assert names == [int(model.items_.ids[rated[j]]) for j in order]


def test_cold_start_with_only_genres_gives_popular_matching_movies():
    model = create_model("item-knn-baseline", baseline_epochs=2).fit(ratings(), catalog=CATALOG)
    # a rating model's prior decides; with no ratings at all nothing is excluded
    recs = model.recommend_for_ratings([], k=3, genres=["Drama"])
    assert set(recs["item"]) <= {4, 5, 6} and len(recs) == 3


def test_diversity_zero_is_plain_ranking_and_one_spreads_genres(als):
    plain = als.recommend(9, k=4)
    assert als.recommend(9, k=4, diversity=0.0)["item"].tolist() == plain["item"].tolist()
    diverse = als.recommend(9, k=2, diversity=1.0)
    genres = [tuple(CATALOG.get(m)["genres"]) for m in diverse["item"]]
    assert len(set(genres)) == 2


def test_mmr_by_hand():
    relevance = np.array([1.0, 0.9, 0.1])
    similarity = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert mmr(relevance, similarity, 3, 0.0).tolist() == [0, 1, 2]
    # scaled relevance [1, 8/9, 0]; after item 0, item 1 scores 0.5*8/9 - 0.5 < item 2's 0
    assert mmr(relevance, similarity, 3, 0.5).tolist() == [0, 2, 1]
    assert mmr(relevance, similarity, 0, 0.5).tolist() == []


@given(st.lists(st.floats(-10, 10), min_size=1, max_size=30), st.integers(1, 40),
       st.floats(0, 1))
def test_mmr_picks_distinct_items_and_starts_with_the_best(scores, k, diversity):
    relevance = np.array(scores)
    rng = np.random.default_rng(len(scores))
    similarity = rng.random((len(scores), len(scores)))
    order = mmr(relevance, similarity, k, diversity)
    assert len(order) == min(k, len(scores)) and len(set(order.tolist())) == len(order)
    if diversity < 1:
        assert relevance[order[0]] == relevance.max()


def test_catalog_travels_with_the_artifact(knn, tmp_path):
    save_model(knn, tmp_path / "m")
    loaded = load_model(tmp_path / "m").model
    assert loaded.catalog_ is not None
    assert loaded.recommend(9, k=10, genres=["Drama"])["item"].tolist() == \
        knn.recommend(9, k=10, genres=["Drama"])["item"].tolist()


def test_models_that_need_a_catalog_say_so():
    from movierec.models.core.recommender import Recommender

    class NeedsCatalog(Recommender):
        name = "needs-catalog"
        uses_catalog = True

    with pytest.raises(ConfigError, match="pass catalog= to fit"):
        NeedsCatalog().fit(ratings())


@given(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0]), min_size=0, max_size=40),
       st.integers(0, 45))
def test_largest_agrees_with_a_stable_sort(values, n):
    from movierec.models.core.explain import _largest

    row = np.array(values, dtype=np.float64)
    expected = np.argsort(-row, kind="stable")[:n]
    assert _largest(row, n).tolist() == expected.tolist()


@pytest.mark.parametrize(("text", "span"), [("1990-1999", (1990, 1999)), (" 1995 ", (1995, 1995)),
                                            ("2000-", (2000, None)), ("-1980", (None, 1980)),
                                            ("1990 - 1999", (1990, 1999))])
def test_parse_years(text, span):
    from movierec.models.core.filters import parse_years

    assert parse_years(text) == span


@pytest.mark.parametrize("text", ["", "-", "abc", "1990-abc", "1990-1999-2000", "19x0"])
def test_parse_years_rejects_other_forms(text):
    from movierec.models.core.filters import parse_years

    with pytest.raises(ConfigError, match="years must look like"):
        parse_years(text)
