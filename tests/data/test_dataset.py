"""Vocabulary, Ratings, Catalog: identities, immutability, errors, title parsing, search."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from movierec.data.dataset import Catalog, Ratings, Vocabulary, infer_scale, split_title_year
from movierec.errors import DataError, UnknownIdError


def small() -> Ratings:
    # users 10, 20, 30; movies 7, 3, 5; file order kept
    return Ratings.from_arrays(
        [20, 10, 10, 30, 20], [7, 3, 7, 5, 5], [4.0, 5.0, 3.0, 2.0, 1.0], [5, 4, 3, 2, 1],
        scale=(1, 5),
    )


class TestVocabulary:
    def test_from_values_sorts_and_maps_both_ways(self) -> None:
        vocab = Vocabulary.from_values([30, 10, 20, 10], "user")
        assert vocab.ids.tolist() == [10, 20, 30]
        assert vocab.index(20) == 1
        assert vocab.id_of(2) == 30
        assert vocab.indices([30, 10]).tolist() == [2, 0]

    def test_unknown_ids_raise_or_mask(self) -> None:
        vocab = Vocabulary.from_values([1, 2, 3], "movie")
        with pytest.raises(UnknownIdError, match="unknown movie id 9"):
            vocab.index(9)
        with pytest.raises(UnknownIdError):
            vocab.indices([1, 9])
        assert vocab.indices([1, 9, 3], missing="mask").tolist() == [0, -1, 2]
        assert 9 not in vocab and 2 in vocab

    def test_string_input_finds_integer_ids_and_back(self) -> None:
        ints = Vocabulary.from_values([5, 42])
        assert ints.index("42") == 1
        assert ints.indices(np.array(["5", "42"])).tolist() == [0, 1]
        strings = Vocabulary(["a", "42"])
        assert strings.index(42) == 1
        assert "zz" not in strings and "a" in strings

    def test_duplicates_rejected(self) -> None:
        with pytest.raises(DataError, match="unique"):
            Vocabulary([1, 2, 1])

    def test_ids_are_read_only(self) -> None:
        vocab = Vocabulary.from_values([1, 2])
        with pytest.raises(ValueError):
            vocab.ids[0] = 5

    def test_equality(self) -> None:
        assert Vocabulary([1, 2]) == Vocabulary(np.array([1, 2]))
        assert Vocabulary([1, 2]) != Vocabulary([2, 1])


class TestRatings:
    def test_indices_follow_sorted_vocabularies_and_file_order(self) -> None:
        r = small()
        assert r.users.ids.tolist() == [10, 20, 30]
        assert r.items.ids.tolist() == [3, 5, 7]
        assert r.user_index.tolist() == [1, 0, 0, 2, 1]
        assert r.item_index.tolist() == [2, 0, 2, 1, 1]
        assert r.user_ids.tolist() == [20, 10, 10, 30, 20]
        assert r.user_counts.tolist() == [2, 2, 1]
        assert r.item_counts.tolist() == [1, 2, 2]

    def test_csr_holds_the_ratings(self) -> None:
        dense = small().csr.toarray()
        expected = np.array([[5, 0, 3], [0, 1, 4], [0, 2, 0]], dtype=np.float32)
        np.testing.assert_array_equal(dense, expected)

    def test_arrays_are_immutable(self) -> None:
        r = small()
        for array in (r.user_index, r.item_index, r.rating, r.timestamp):
            with pytest.raises(ValueError):
                array[0] = 0

    def test_duplicate_pairs_detected(self) -> None:
        r = Ratings.from_arrays([1, 1], [2, 2], [3.0, 4.0])
        with pytest.raises(DataError, match="more than once"):
            _ = r.csr

    def test_ratings_outside_scale_and_nan_rejected(self) -> None:
        with pytest.raises(DataError, match="scale"):
            Ratings.from_arrays([1], [1], [6.0], scale=(1, 5))
        with pytest.raises(DataError, match="NaN"):
            Ratings.from_arrays([1], [1], [np.nan])

    def test_ragged_arrays_rejected(self) -> None:
        vocab = Vocabulary([1])
        with pytest.raises(DataError, match="rows"):
            Ratings(vocab, vocab, np.array([0, 0]), np.array([0]), np.array([1.0, 2.0]))

    def test_take_reindexes_or_keeps(self) -> None:
        r = small()
        part = r.take(np.array([3, 0]))
        assert part.users.ids.tolist() == [20, 30]
        assert part.user_ids.tolist() == [30, 20]
        assert part.rating.tolist() == [2.0, 4.0]
        kept = r.take(np.array([False, True, False, False, False]), reindex=False)
        assert kept.users == r.users and kept.user_index.tolist() == [0]

    def test_fingerprint_depends_on_rows_not_vocab(self) -> None:
        r = small()
        same = Ratings.from_frame(r.to_frame(), scale=(1, 5))
        assert same.fingerprint() == r.fingerprint()
        assert r.take(np.arange(5)[::-1]).fingerprint() != r.fingerprint()
        assert len(r.fingerprint()) == 64

    def test_describe(self) -> None:
        info = small().describe()
        assert info["ratings"] == 5 and info["users"] == 3 and info["movies"] == 3
        assert info["density"] == pytest.approx(5 / 9)
        assert info["rating_counts"] == {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1}
        assert info["first_rating"] == "1970-01-01T00:00:01"


@pytest.mark.parametrize(
    ("values", "scale"),
    [([1, 2, 5], (1, 5)), ([0.5, 4], (0.5, 5)), ([3.5, 4], (0.5, 5)), ([-10, 10], (-10, 10))],
)
def test_infer_scale(values: list[float], scale: tuple[float, float]) -> None:
    assert infer_scale(np.asarray(values, dtype=np.float32)) == scale


@pytest.mark.parametrize(
    ("raw", "title", "year"),
    [
        ("Toy Story (1995)", "Toy Story", 1995),
        ("Shawshank Redemption, The (1994)", "Shawshank Redemption, The", 1994),
        ("City of Lost Children, The (Cité des enfants perdus, La) (1995)",
         "City of Lost Children, The (Cité des enfants perdus, La)", 1995),
        ("Babylon 5", "Babylon 5", None),
        ("Fawlty Towers (1975-1979)", "Fawlty Towers", 1975),
        ("  Heat (1995)  ", "Heat", 1995),
        ("", "", None),
    ],
)
def test_split_title_year(raw: str, title: str, year: int | None) -> None:
    assert split_title_year(raw) == (title, year)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
       st.integers(1900, 2030))
def test_title_year_round_trip(title: str, year: int) -> None:
    clean = title.strip()
    assert split_title_year(f"{clean} ({year})") == (clean, year)


def catalog() -> Catalog:
    return Catalog(pd.DataFrame({
        "item": [1, 2, 3, 4],
        "title": ["Toy Story", "Toy Story 2", "Story of Us, The", "Heat"],
        "year": [1995, 1999, 1999, 1995],
        "genres": [["Animation", "Comedy"], ["Animation"], ["Drama"], []],
    }))


class TestCatalog:
    def test_get_returns_plain_values(self) -> None:
        assert catalog().get(2) == {"item": 2, "title": "Toy Story 2", "year": 1999,
                                    "genres": ["Animation"]}
        with pytest.raises(UnknownIdError):
            catalog().get(99)

    def test_search_ranks_exact_then_prefix(self) -> None:
        found = catalog().search("toy story")
        assert found["item"].tolist() == [1, 2]
        # the year word filters to 1999; "Story of Us, The" starts with "story", so it leads.
        assert catalog().search("story 1999")["item"].tolist() == [3, 2]
        assert catalog().search("nothing like this").empty
        assert catalog().search("   ").empty

    def test_search_orders_by_rank_then_length(self) -> None:
        # "story": "Story of Us, The" starts with it (rank 1); the others contain it (rank 2),
        # shorter title first.
        assert catalog().search("story")["item"].tolist() == [3, 1, 2]

    def test_genres_and_matrix(self) -> None:
        c = catalog()
        assert c.genres == ["Animation", "Comedy", "Drama"]
        matrix = c.genre_matrix([3, 1, 99]).toarray()
        np.testing.assert_array_equal(matrix, [[0, 0, 1], [1, 1, 0], [0, 0, 0]])

    def test_rows_marks_unknown_movies(self) -> None:
        rows = catalog().rows([4, 77])
        assert rows["title"].tolist() == ["Heat", "(unknown movie)"]
        assert rows["item"].tolist() == [4, 77]

    def test_duplicate_ids_rejected(self) -> None:
        frame = pd.DataFrame({"item": [1, 1], "title": ["a", "b"], "year": [None, None],
                              "genres": [[], []]})
        with pytest.raises(DataError):
            Catalog(frame)


@given(st.one_of(
    st.lists(st.integers(-5, 50), max_size=60),
    st.lists(st.integers(-(2**62), 2**62), max_size=30),  # sparse range: the sorting path
    st.lists(st.text(max_size=3), max_size=40),
))
def test_vocabulary_from_values_agrees_with_numpy_unique(values: list) -> None:
    array = np.asarray(values) if values else np.asarray([], dtype=np.int64)
    vocab = Vocabulary.from_values(array)
    assert vocab.ids.tolist() == np.unique(array).tolist()
    if len(array):
        r = Ratings.from_arrays(array, np.zeros(len(array), dtype=np.int64), np.ones(len(array)))
        assert r.user_ids.tolist() == array.tolist()


_LETTERS = st.text(alphabet="abcxyz019", max_size=3)


@given(st.one_of(
    st.tuples(st.lists(st.integers(-5, 50), min_size=1, max_size=40, unique=True),
              st.lists(st.one_of(st.integers(-8, 55), st.floats(-8, 55)), min_size=1, max_size=20)),
    st.tuples(st.lists(_LETTERS, min_size=1, max_size=40, unique=True),
              st.lists(st.one_of(_LETTERS, st.integers(0, 9)), min_size=1, max_size=20)),
))
def test_few_ids_are_looked_up_like_many(case: tuple[list, list]) -> None:
    """A few ids go through a dict, many through the pandas index: the same answers, -1 for
    unknowns (as arrays: numbers equal to an integer id find it, other values find string ids)."""
    ids, wanted = case
    vocab = Vocabulary(ids)
    values = np.asarray(wanted) if isinstance(ids[0], int) else np.asarray([str(w) for w in wanted])
    few = vocab.indices(values, missing="mask")
    many = vocab.indices(np.tile(values, 300), missing="mask")
    assert many.tolist() == few.tolist() * 300
    assert few.tolist() == [ids.index(v) if v in ids else -1 for v in values.tolist()]


def test_text_that_cannot_name_an_integer_id_is_unknown() -> None:
    vocab = Vocabulary.from_values([1, 2, 3], "movie")
    assert vocab.indices(np.array(["abc", "2", " 3 "]), missing="mask").tolist() == [-1, 1, 2]
    assert vocab.indices(np.array(["1", "x"], dtype=object), missing="mask").tolist() == [0, -1]
    with pytest.raises(UnknownIdError, match="unknown movie id 'abc'"):
        vocab.indices(np.array(["abc"]))


def test_encoding_compact_ids_gives_int32_positions_in_sorted_order() -> None:
    from movierec.data.dataset import _encode

    vocabulary, index = _encode(np.array([40, 7, 40, 12, 7], dtype=np.int64), "user")
    assert vocabulary.ids.tolist() == [7, 12, 40]
    assert index.dtype == np.int32 and index.tolist() == [2, 0, 2, 1, 0]
    vocabulary, index = _encode(np.array([5, 10**12]), "movie")  # not compact: sorted, int64
    assert vocabulary.ids.tolist() == [5, 10**12] and index.tolist() == [0, 1]


def test_a_pickled_vocabulary_leaves_its_lookup_behind_and_builds_it_again():
    vocab = Vocabulary(np.array([30, 10, 20]), "movie")
    assert vocab.index(20) == 2  # builds the lookup
    assert "_positions" in vocab.__dict__
    copy = pickle.loads(pickle.dumps(vocab))
    assert "_positions" not in copy.__dict__ and "_positions" in vocab.__dict__
    assert copy == vocab and copy.kind == "movie"
    assert copy.index(10) == 1 and copy.indices([30, 99], missing="mask").tolist() == [0, -1]


def test_an_unpickled_vocabulary_answers_several_threads_at_once():
    """recommend-all's workers look their chunks' ids up at once: on an unpickled vocabulary whose
    pandas index had never been used, such a start raised InvalidIndexError (most of the time)."""
    import threading

    vocab = Vocabulary(np.arange(1, 100_001) * 3, "user")
    blob = pickle.dumps(vocab)
    for _ in range(20):
        copy = pickle.loads(blob)
        got: dict[int, object] = {}
        start_line = threading.Barrier(4)

        def look_up(start: int, copy: Vocabulary = copy, got: dict = got,
                    start_line: threading.Barrier = start_line) -> None:
            start_line.wait()
            try:
                got[start] = copy.indices(vocab.ids[start : start + 4096])
            except Exception as exc:  # the test reports what a thread met
                got[start] = exc

        threads = [threading.Thread(target=look_up, args=(start,)) for start in range(0, 16384, 4096)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for start, value in got.items():
            assert isinstance(value, np.ndarray), value
            np.testing.assert_array_equal(value, np.arange(start, start + 4096))
