"""Archives in every official layout, from synthetic data: members, formats, encodings, ml-100k's
canonical folds, round trips through the parser, refusals, atomic and reproducible writes."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.data.archives import GENRES_100K, canonical_folds, write_archive
from movierec.data.dataset import Catalog, Dataset, Ratings
from movierec.data.movielens import parse_archive
from movierec.data.registry import VARIANTS
from movierec.data.synth import synthesize
from movierec.errors import ConfigError

# -- canonical folds ---------------------------------------------------------------------------


def test_canonical_folds_partition_rows(stars: Dataset) -> None:
    ratings = stars.ratings
    folds = canonical_folds(ratings)
    assert set(folds) == {"u1", "u2", "u3", "u4", "u5", "ua", "ub"}
    fifths = np.stack([folds[f"u{k}"] for k in range(1, 6)])
    assert (fifths.sum(axis=0) == 1).all()  # every row in exactly one test fold
    assert np.abs(fifths.sum(axis=1) - len(ratings) / 5).max() <= 1
    per_user_a = np.bincount(ratings.user_index[folds["ua"]], minlength=ratings.n_users)
    per_user_b = np.bincount(ratings.user_index[folds["ub"]], minlength=ratings.n_users)
    assert (per_user_a == 10).all() and (per_user_b == 10).all()
    assert not (folds["ua"] & folds["ub"]).any()
    # ua takes each user's first ten rows in file order
    first_rows = [np.flatnonzero(ratings.user_index == u)[:10] for u in range(ratings.n_users)]
    assert np.array_equal(np.sort(np.concatenate(first_rows)), np.flatnonzero(folds["ua"]))


def test_canonical_folds_reproduce_the_real_ml100k_files(ml100k: Dataset) -> None:
    assert ml100k.folds, "the ml-100k parse should carry its folds"
    computed = canonical_folds(ml100k.ratings)
    for name, mask in ml100k.folds.items():
        assert np.array_equal(computed[name], mask), name


# -- archives ----------------------------------------------------------------------------------


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


def lines(data: bytes, encoding: str = "ascii", eol: str = "\n") -> list[str]:
    text = data.decode(encoding)
    assert text.endswith(eol)
    return text[: -len(eol)].split(eol)


def test_ml100k_layout(stars: Dataset, tmp_path: Path) -> None:
    path = write_archive(stars, tmp_path / "ml-100k.zip", "ml-100k")
    files = members(path)
    folds = [f"{f}.{part}" for f in ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
             for part in ("base", "test")]
    expected = {"u.data", "u.item", "u.user", "u.genre", "u.info", "u.occupation", "README", *folds}
    assert set(files) == {f"ml-100k/{name}" for name in expected}
    assert set(VARIANTS["ml-100k"].members.values()) <= expected
    ratings = stars.ratings

    data = [line.split("\t") for line in lines(files["ml-100k/u.data"])]
    assert len(data) == len(ratings) and {len(row) for row in data} == {4}
    assert all(re.fullmatch(r"\d+", field) for row in data[:500] for field in row)
    # u.data keeps the dataset's row order
    assert [int(row[0]) for row in data] == ratings.user_ids.tolist()
    assert [int(row[2]) for row in data] == ratings.rating.astype(int).tolist()

    items = lines(files["ml-100k/u.item"], "latin-1")
    assert len(items) == len(stars.catalog)
    fields = [row.split("|") for row in items]
    assert {len(row) for row in fields} == {24}
    assert all(re.fullmatch(r"\d\d-[A-Z][a-z]{2}-\d{4}", row[2]) and row[3] == "" for row in fields)
    assert all(set(row[5:]) <= {"0", "1"} and "1" in row[5:] for row in fields)
    children = GENRES_100K.index("Children's")
    assert sum(row[children + 5] == "1" for row in fields) == sum(
        "Children" in g for g in stars.catalog.frame["genres"]
    )
    with pytest.raises(UnicodeDecodeError):  # latin-1, not utf-8: accents are single bytes
        files["ml-100k/u.item"].decode("utf-8")

    users = [row.split("|") for row in lines(files["ml-100k/u.user"], "latin-1")]
    assert len(users) == ratings.n_users and {len(row) for row in users} == {5}
    genre_lines = files["ml-100k/u.genre"].decode("latin-1").split("\n")
    assert genre_lines[:2] == ["unknown|0", "Action|1"] and genre_lines[-3:] == ["Western|18", "", ""]
    assert files["ml-100k/u.info"].decode() == (
        f"{ratings.n_users} users\n{ratings.n_items} items\n{len(ratings)} ratings\n"
    )

    everything = sorted(lines(files["ml-100k/u.data"]))
    tests = []
    for fold in ("u1", "u2", "u3", "u4", "u5", "ua", "ub"):
        base = lines(files[f"ml-100k/{fold}.base"])
        test = lines(files[f"ml-100k/{fold}.test"])
        assert sorted(base + test) == everything  # complete, and together disjoint
        assert not set(base) & set(test)
        for part in (base, test):
            keys = [(int(r.split("\t")[0]), int(r.split("\t")[1])) for r in part]
            assert keys == sorted(keys)  # sorted by user, then movie
        if fold.startswith("u") and fold[1].isdigit():
            tests += test
        else:
            per_user = pd.Series([r.split("\t")[0] for r in test]).value_counts()
            assert (per_user == 10).all() and len(per_user) == ratings.n_users
    assert sorted(tests) == everything  # u1..u5 tests partition u.data
    assert not set(lines(files["ml-100k/ua.test"])) & set(lines(files["ml-100k/ub.test"]))


def test_ml1m_layout(stars: Dataset, tmp_path: Path) -> None:
    files = members(write_archive(stars, tmp_path / "ml-1m.zip", "ml-1m"))
    assert set(files) == {"ml-1m/ratings.dat", "ml-1m/movies.dat", "ml-1m/users.dat", "ml-1m/README"}
    rows = [line.split("::") for line in lines(files["ml-1m/ratings.dat"])]
    assert len(rows) == len(stars.ratings) and {len(r) for r in rows} == {4}
    assert all(re.fullmatch(r"[1-5]", r[2]) for r in rows)
    keys = [(int(r[0]), int(r[1])) for r in rows]
    assert keys == sorted(keys)
    movies = [line.split("::") for line in lines(files["ml-1m/movies.dat"], "latin-1")]
    assert {len(m) for m in movies} == {3}
    assert all(re.search(r" \(\d{4}\)$", m[1]) for m in movies)
    named = {g for m in movies for g in m[2].split("|")}
    assert "Children" not in named and named <= set(GENRES_100K[1:])
    users = [line.split("::") for line in lines(files["ml-1m/users.dat"], "latin-1")]
    assert {len(u) for u in users} == {5}
    assert {u[1] for u in users} <= {"M", "F"}
    assert {int(u[2]) for u in users} <= {1, 18, 25, 35, 45, 50, 56}
    assert {int(u[3]) for u in users} <= set(range(21))


def test_ml10m_layout(halves: Dataset, tmp_path: Path) -> None:
    files = members(write_archive(halves, tmp_path / "ml-10m.zip", "ml-10m"))
    top = "ml-10M100K"
    assert set(files) == {f"{top}/{n}" for n in ("ratings.dat", "movies.dat", "tags.dat",
                                                   "README.html")}
    rows = [line.split("::") for line in lines(files[f"{top}/ratings.dat"])]
    assert len(rows) == len(halves.ratings)
    values = {r[2] for r in rows}
    assert "3.5" in values and "4" in values and "4.0" not in values  # written like ml-10m
    movies = lines(files[f"{top}/movies.dat"], "utf-8")
    assert any(any(ord(c) > 127 for c in m) for m in movies)
    assert {len(m.split("::")) for m in movies} == {3}
    tags = [line.split("::") for line in lines(files[f"{top}/tags.dat"], "utf-8")]
    assert tags and {len(t) for t in tags} == {4}


@pytest.mark.parametrize("variant", ["ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest"])
def test_csv_layouts(halves: Dataset, tmp_path: Path, variant: str) -> None:
    spec = VARIANTS[variant]
    files = members(write_archive(halves, tmp_path / f"{variant}.zip", variant))
    names = {f"{spec.folder}/{n}" for n in (*spec.members.values(), "README.txt")}
    assert set(files) == names
    eol = "\r\n" if variant == "ml-latest-small" else "\n"

    def table(member: str) -> list[list[str]]:
        text = files[f"{spec.folder}/{member}"].decode("utf-8")
        assert text.endswith(eol) and (eol == "\r\n" or "\r" not in text)
        return list(csv.reader(io.StringIO(text, newline="")))

    ratings = table("ratings.csv")
    assert ratings[0] == ["userId", "movieId", "rating", "timestamp"]
    assert len(ratings) == len(halves.ratings) + 1
    assert all(re.fullmatch(r"[0-5]\.[05]", r[2]) for r in ratings[1:])
    keys = [(int(r[0]), int(r[1])) for r in ratings[1:]]
    assert keys == sorted(keys)

    movies = table("movies.csv")
    assert movies[0] == ["movieId", "title", "genres"]
    assert {len(m) for m in movies} == {3}
    raw = files[f"{spec.folder}/movies.csv"].decode("utf-8")
    assert re.search(r',"[^"]*,[^"]* \(\d{4}\)",', raw)  # a title with a comma, quoted
    assert '""' in raw  # a title with quotes, doubled
    titles = [m[1] for m in movies[1:]]
    frame = halves.catalog.frame
    assert titles == [f"{t} ({y})" for t, y in zip(frame["title"], frame["year"], strict=True)]

    tags = table("tags.csv")
    assert tags[0] == ["userId", "movieId", "tag", "timestamp"] and len(tags) > 1
    assert {len(t) for t in tags} == {4}
    links = table("links.csv")
    assert links[0] == ["movieId", "imdbId", "tmdbId"] and len(links) == len(frame) + 1
    assert all(re.fullmatch(r"\d{7}", row[1]) for row in links[1:])
    assert any(row[2] == "" for row in links[1:]) or frame["tmdb_id"].notna().all()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_archives_round_trip_through_the_parser(
    stars: Dataset, tmp_path: Path, variant: str
) -> None:
    path = write_archive(stars, tmp_path, variant)  # a folder: the official file name
    assert path == tmp_path / f"{variant}.zip"
    back = parse_archive(path, VARIANTS[variant])

    def rows(ratings: Ratings) -> pd.DataFrame:
        return ratings.to_frame().sort_values(["user", "item"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(rows(back.ratings), rows(stars.ratings))
    assert back.catalog.frame["title"].tolist() == stars.catalog.frame["title"].tolist()
    assert back.catalog.frame["year"].tolist() == stars.catalog.frame["year"].tolist()
    if variant == "ml-100k":
        assert back.ratings.fingerprint() == stars.ratings.fingerprint()  # u.data keeps order
        expected = canonical_folds(stars.ratings)
        assert set(back.folds) == set(expected)
        for name, mask in expected.items():
            assert np.array_equal(back.folds[name], mask), name


def test_half_stars_do_not_fit_whole_star_variants(halves: Dataset, tmp_path: Path) -> None:
    for variant in ("ml-100k", "ml-1m"):
        with pytest.raises(ConfigError, match=rf"{variant} takes ratings in whole stars"):
            write_archive(halves, tmp_path / "x.zip", variant)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_requests_raise_config_error(stars: Dataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'ml-7m'"):
        write_archive(stars, tmp_path / "x.zip", "ml-7m")
    with pytest.raises(ConfigError, match="does not exist"):
        write_archive(stars, tmp_path / "missing" / "x.zip", "ml-20m")
    untimed = synthesize(30, 40, 600, with_timestamps=False)
    with pytest.raises(ConfigError, match="needs timestamps"):
        write_archive(untimed, tmp_path / "x.zip", "ml-20m")
    no_people = Dataset("bare", stars.ratings, stars.catalog)
    with pytest.raises(ConfigError, match="needs user demographics"):
        write_archive(no_people, tmp_path / "x.zip", "ml-1m")
    write_archive(no_people, tmp_path / "ok.zip", "ml-10m")  # ml-10m has no users file
    piped = stars.catalog.frame.copy()
    piped.loc[0, "title"] = "Either|Or"
    odd = Dataset("odd", stars.ratings, Catalog(piped), stars.users)
    with pytest.raises(ConfigError, match=r"movie 1: title 'Either\|Or \(\d{4}\)' holds '\|'"):
        write_archive(odd, tmp_path / "x.zip", "ml-100k")
    write_archive(odd, tmp_path / "ok.zip", "ml-20m")  # CSV quotes what it must
    assert [p.name for p in tmp_path.iterdir()] == ["ok.zip"]


def test_a_failed_write_leaves_the_old_file_and_no_debris(
    stars: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ml-20m.zip"
    target.write_bytes(b"old")

    def broken(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("movierec.data.archives._tags", broken)  # fails after ratings.csv
    with pytest.raises(RuntimeError, match="disk full"):
        write_archive(stars, target, "ml-20m")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ml-20m.zip"]


def test_archives_are_byte_for_byte_reproducible(stars: Dataset, tmp_path: Path) -> None:
    first = write_archive(stars, tmp_path / "a.zip", "ml-latest-small").read_bytes()
    second = write_archive(stars, tmp_path / "b.zip", "ml-latest-small").read_bytes()
    assert first == second
