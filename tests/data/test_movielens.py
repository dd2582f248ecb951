"""Parsers on the real archives (through the mirror) and on users' own ratings files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.data.dataset import Dataset
from movierec.data.movielens import read_movies_file, read_ratings_file
from movierec.errors import DataError


class TestMl100k:
    def test_counts_and_distribution(self, ml100k: Dataset) -> None:
        r = ml100k.ratings
        assert (len(r), r.n_users, r.n_items) == (100_000, 943, 1_682)
        assert r.scale == (1.0, 5.0)
        assert r.describe()["rating_counts"] == {"1": 6110, "2": 11370, "3": 27145, "4": 34174,
                                                 "5": 21201}
        assert r.users.ids[[0, -1]].tolist() == [1, 943]
        assert r.user_counts.min() >= 20
        assert r.describe()["first_rating"].startswith("1997-09-20")
        assert r.describe()["last_rating"].startswith("1998-04-22")

    def test_first_row_in_file_order(self, ml100k: Dataset) -> None:
        # u.data line 1: "196\t242\t3\t881250949"
        r = ml100k.ratings
        assert (r.user_ids[0], r.item_ids[0], r.rating[0], r.timestamp[0]) == (196, 242, 3.0,
                                                                                881250949)

    def test_catalog(self, ml100k: Dataset) -> None:
        c = ml100k.catalog
        assert len(c) == 1_682
        assert c.get(1)["title"] == "Toy Story" and c.get(1)["year"] == 1995
        assert c.get(1)["genres"] == ["Animation", "Children's", "Comedy"]
        assert len(c.genres) == 18  # 19 flags minus "unknown"
        # u.item is latin-1: accents survive
        assert any("é" in t for t in c.frame["title"])
        # movie 267 is "unknown" with no date: no year, no genres but "unknown" (dropped)
        assert c.get(267)["title"] == "unknown" and c.get(267)["year"] is None

    def test_users(self, ml100k: Dataset) -> None:
        assert ml100k.users is not None and len(ml100k.users) == 943
        assert ml100k.users.get(2) == {"user": 2, "age": 53, "gender": "F", "occupation": "other",
                                       "zip": "94043"}


class TestMlLatestSmall:
    def test_counts(self, mlsmall: Dataset) -> None:
        r = mlsmall.ratings
        assert (len(r), r.n_users, r.n_items) == (100_836, 610, 9_724)
        assert r.scale == (0.5, 5.0)
        assert set(np.unique(r.rating).tolist()) == {x / 2 for x in range(1, 11)}

    def test_catalog_with_quotes_tags_links(self, mlsmall: Dataset) -> None:
        c = mlsmall.catalog
        assert len(c) == 9_742
        assert c.get(1)["imdb_id"] == "tt0114709" and c.get(1)["tmdb_id"] == 862
        assert c.get(1)["tags"] == ["pixar", "fun"]
        # A quoted title with a comma: 11,"American President, The (1995)",Comedy|Drama|Romance
        assert c.get(11)["title"] == "American President, The"
        assert c.get(11)["genres"] == ["Comedy", "Drama", "Romance"]
        tagged = c.frame["tags"].map(len)
        assert (tagged > 0).sum() > 1_500
        # "(no genres listed)" becomes an empty list and is not a genre
        assert "(no genres listed)" not in c.genres
        assert (c.frame["genres"].map(len) == 0).sum() > 0


# -- users' own files ---------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_with_header_aliases_and_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path / "mine.csv",
                 "userId,movieId,rating,timestamp\n1,10,4,100\n1,20,3,200\n2,10,5,300\n"
                 "1,10,2,400\n1,10,3,50\n")
    dataset, report = read_ratings_file(path)
    assert (report.rows, report.duplicates, report.pairs_averaged) == (5, 2, 1)
    frame = dataset.ratings.to_frame().sort_values(["user", "item"]).reset_index(drop=True)
    # (1,10) averaged: (4 + 2 + 3) / 3 = 3, latest timestamp 400
    assert frame.to_dict("list") == {"user": [1, 1, 2], "item": [10, 20, 10],
                                     "rating": [3.0, 3.0, 5.0], "timestamp": [400, 200, 300]}
    assert dataset.catalog.get(10)["title"] == "Movie 10"


def test_tsv_without_header(tmp_path: Path) -> None:
    path = write(tmp_path / "u.tsv", "7\t1\t4.5\n7\t2\t0.5\n8\t1\t3\n")
    dataset, _ = read_ratings_file(path)
    assert dataset.ratings.scale == (0.5, 5.0)
    assert dataset.ratings.timestamp is None
    assert dataset.ratings.user_ids.tolist() == [7, 7, 8]


def test_string_ids_and_dates(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv",
                 "user,item,rating,date\nalice,tt01,5,2020-01-02\nbob,tt02,1,2021-06-01T10:00:00\n")
    dataset, _ = read_ratings_file(path)
    assert dataset.ratings.users.ids.tolist() == ["alice", "bob"]
    assert dataset.ratings.timestamp.tolist() == [1577923200, 1622541600]


def test_numeric_ids_sort_numerically(tmp_path: Path) -> None:
    path = write(tmp_path / "n.csv", "user,item,rating\n10,1,3\n9,1,4\n")
    dataset, _ = read_ratings_file(path)
    assert dataset.ratings.users.ids.tolist() == [9, 10]


def test_parquet_and_movies_file(tmp_path: Path) -> None:
    pd.DataFrame({"user_id": [1, 2], "movie_id": [5, 6], "score": [4.0, 2.0]}).to_parquet(
        tmp_path / "r.parquet")
    write(tmp_path / "movies.csv",
          'movieId,title,genres\n5,"Heat, The (1995)",Action|Crime\n6,Nobody (2021),'
          "(no genres listed)\n")
    dataset, _ = read_ratings_file(tmp_path / "r.parquet", movies=tmp_path / "movies.csv")
    assert dataset.catalog.get(5) == {"item": 5, "title": "Heat, The", "year": 1995,
                                      "genres": ["Action", "Crime"]}
    assert dataset.catalog.get(6)["genres"] == []
    assert dataset.ratings.scale == (1.0, 5.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user,item,rating\n1,2,4\n1,3,abc\n",
         r"bad\.csv:3: rating is not a number \('abc'\); expected 3 fields: user,item,rating, "
         r"got '1,3,abc'"),
        ("user,item,rating\n1,2,4\n,3,4\n", r"bad\.csv:3: empty user"),
        ("user,item,rating\n1,2,4\n1,3,4,5,6\n", r"bad\.csv:3: 5 fields; expected 3 fields"),
        ("user,item,rating,timestamp\n1,2,4,yesterday\n", r"bad\.csv:2: timestamp"),
        ("person,film,stars\n1,2,4\n", r"bad\.csv: no user column"),
        ("", r"bad\.csv: the file is empty"),
        ("user,item,rating\n", r"bad\.csv: no ratings"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=message) as caught:
        read_ratings_file(path)
    assert "\n" not in str(caught.value)


def test_missing_file_and_bad_parquet(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_ratings_file(tmp_path / "nope.csv")
    write(tmp_path / "x.parquet", "not parquet")
    with pytest.raises(DataError, match="not a readable Parquet"):
        read_ratings_file(tmp_path / "x.parquet")


def test_movies_file_needs_id_and_title(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="id column"):
        read_movies_file(write(tmp_path / "m.csv", "name,genres\nx,Drama\n"))


# -- generated archives: what the synthetic writer puts in, the parser gets out ------------------


@pytest.fixture(scope="module")
def synthetic() -> Dataset:
    from movierec.data.synth import synthesize

    return synthesize(60, 40, 900, scale="1-5", seed=3)


@pytest.mark.parametrize("variant", ["ml-1m", "ml-10m", "ml-latest-small", "ml-25m"])
def test_generated_archives_keep_genres(synthetic: Dataset, tmp_path: Path, variant: str) -> None:
    from movierec.data.archives import write_archive
    from movierec.data.movielens import parse_archive
    from movierec.data.registry import VARIANTS

    back = parse_archive(write_archive(synthetic, tmp_path, variant), VARIANTS[variant])
    expected = synthetic.catalog.frame.set_index("item")["genres"]
    got = back.catalog.frame.set_index("item")["genres"]
    if variant == "ml-1m":  # ml-1m writes the genre the way ml-1m names it
        expected = expected.map(lambda gs: [g.replace("Children", "Children's") for g in gs])
    assert got.to_dict() == expected.to_dict()
    if VARIANTS[variant].layout == "csv":
        links = back.catalog.frame.set_index("item")
        original = synthetic.catalog.frame.set_index("item")
        assert links["imdb_id"].tolist() == original["imdb_id"].tolist()
        assert links["tmdb_id"].astype("Float64").fillna(-1).tolist() == (
            original["tmdb_id"].astype("Float64").fillna(-1).tolist())
        assert (back.catalog.frame["tags"].map(len) > 0).any()
    if variant == "ml-1m":
        assert back.users is not None and len(back.users) == synthetic.ratings.n_users
        first = synthetic.users.frame.iloc[0]
        parsed = back.users.get(int(first["user"]))
        assert (parsed["gender"], parsed["zip"]) == (first["gender"], first["zip"])
