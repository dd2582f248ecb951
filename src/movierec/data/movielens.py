"""Parsers: every MovieLens layout, and a user's own ratings file, into the canonical in-memory form.

Layouts (see `registry.Variant.layout`):
- ``100k``: ``u.data`` (tab: user, item, rating, timestamp), ``u.item`` (pipe-separated, latin-1, 19 genre
  flags in ``u.genre`` order), ``u.user`` (user|age|gender|occupation|zip), canonical folds
  ``u1..u5``/``ua``/``ub`` as ``.base``/``.test`` files.
- ``dat`` (ml-1m, ml-10m): ``::``-separated ``ratings.dat``, ``movies.dat`` (``id::Title (Year)::A|B``),
  ``users.dat`` (ml-1m), ``tags.dat`` (ml-10m); latin-1 for ml-1m.
- ``csv`` (ml-20m and later, ml-latest*): ``ratings.csv``, ``movies.csv`` (quoted titles), ``tags.csv``,
  ``links.csv``, each with a header.

Everything becomes frames with canonical columns, then a `Dataset`:
ratings (user, item, rating, timestamp), movies (item, title, year, genres[, tags, imdb_id, tmdb_id]),
users (user, age, gender, occupation, zip).
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from movierec.data.dataset import Catalog, Dataset, Ratings, Users, split_title_year
from movierec.data.registry import Variant
from movierec.errors import DataError

__all__ = [
    "FOLD_NAMES",
    "LoadReport",
    "parse_archive",
    "read_movies_file",
    "read_ratings_file",
]

log = logging.getLogger(__name__)

FOLD_NAMES = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")

# ml-1m users.dat occupation codes, from its README.
_ML1M_OCCUPATIONS = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
]

_NO_GENRES = "(no genres listed)"

Reader = Callable[[str], bytes]


# -- archives ----------------------------------------------------------------------------------


def parse_archive(path: str | Path, variant: Variant) -> Dataset:
    """Parse a MovieLens zip archive of ``variant``'s layout into a `Dataset`.

    Raises:
        DataError: if a member is missing or malformed.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable zip archive ({exc})") from None
    with archive:
        names = set(archive.namelist())

        def read(member: str) -> bytes:
            full = f"{variant.folder}/{member}"
            if full not in names:
                raise DataError(f"{path.name}: member {full} is missing")
            return archive.read(full)

        def has(member: str) -> bool:
            return f"{variant.folder}/{member}" in names

        parser = {"100k": _parse_100k, "dat": _parse_dat, "csv": _parse_csv}[variant.layout]
        return parser(read, has, variant)


def _parse_100k(read: Reader, has: Callable[[str], bool], variant: Variant) -> Dataset:
    ratings = _read_table(read, "u.data", sep="\t", names=["user", "item", "rating", "timestamp"])
    genre_names = [
        line.split("|")[0]
        for line in read("u.genre").decode("latin-1").splitlines()
        if line.strip()
    ]
    item_cols = ["item", "raw_title", "release", "video_release", "imdb_url", *genre_names]
    items = pd.read_csv(
        io.BytesIO(read("u.item")),
        sep="|",
        names=item_cols,
        header=None,
        encoding="latin-1",
        dtype={"raw_title": str, "release": str},
        keep_default_na=False,
    )
    flags = items[genre_names].to_numpy(dtype=bool)
    genre_array = np.array(genre_names, dtype=object)
    genres = [[g for g in genre_array[row] if g != "unknown"] for row in flags]
    titles, years = _titles_years(items["raw_title"])
    # Titles like "unknown" carry no year; u.item's release date still gives one.
    release_years = pd.to_datetime(items["release"], format="%d-%b-%Y", errors="coerce").dt.year
    years = years.fillna(release_years.astype("Int64"))
    movies = pd.DataFrame(
        {
            "item": items["item"].astype(np.int64),
            "title": titles,
            "year": years,
            "genres": genres,
            "imdb_url": items["imdb_url"].replace("", None),
        }
    )
    users = pd.read_csv(
        io.BytesIO(read("u.user")),
        sep="|",
        names=["user", "age", "gender", "occupation", "zip"],
        header=None,
        dtype={"zip": str},
        encoding="latin-1",
    )
    dataset_ratings = _ratings(ratings, variant)
    folds = {}
    for fold in FOLD_NAMES:
        if has(f"{fold}.base") and has(f"{fold}.test"):
            folds[fold] = _fold_mask(read, fold, ratings)
    return Dataset(
        name=variant.name,
        ratings=dataset_ratings,
        catalog=Catalog(movies),
        users=Users(users),
        folds=folds,
    )


def _fold_mask(read: Reader, fold: str, ratings: pd.DataFrame) -> np.ndarray:
    """Boolean mask over u.data rows: True where the row is in ``fold``.test.

    Pairs are unique in u.data, so (user, item) identifies a row. Checks that base and test are
    disjoint and together are u.data, so a foreign fold file cannot slip through.
    """
    names = ["user", "item", "rating", "timestamp"]
    base = _read_table(read, f"{fold}.base", sep="\t", names=names)
    test = _read_table(read, f"{fold}.test", sep="\t", names=names)
    n_items = int(ratings["item"].max()) + 1

    def codes(frame: pd.DataFrame) -> np.ndarray:
        return frame["user"].to_numpy(np.int64) * n_items + frame["item"].to_numpy(np.int64)

    all_codes, base_codes, test_codes = codes(ratings), codes(base), codes(test)
    in_test = _member(all_codes, test_codes)
    in_base = _member(all_codes, base_codes)
    if (
        len(base) + len(test) != len(ratings)
        or in_test.sum() != len(test)
        or in_base.sum() != len(base)
        or (in_test & in_base).any()
    ):
        raise DataError(f"canonical fold {fold}: .base and .test do not partition u.data")
    return in_test


def _member(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """``np.isin(values, pool)`` by binary search: several times faster on millions of codes."""
    pool = np.sort(pool)
    position = np.minimum(np.searchsorted(pool, values), max(len(pool) - 1, 0))
    return (pool[position] == values) if len(pool) else np.zeros(len(values), dtype=bool)


def _parse_dat(read: Reader, has: Callable[[str], bool], variant: Variant) -> Dataset:
    encoding = "latin-1" if variant.name == "ml-1m" else "utf-8"
    ratings = _read_table(
        read, "ratings.dat", sep="::", names=["user", "item", "rating", "timestamp"]
    )
    raw_movies = _read_table(
        read, "movies.dat", sep="::", names=["item", "raw_title", "genres"],
        dtype={"item": np.int64, "raw_title": str, "genres": str}, encoding=encoding,
    )
    movies = _movies_frame(raw_movies)
    if has("tags.dat"):
        tags = _read_table(
            read, "tags.dat", sep="::", names=["user", "item", "tag", "timestamp"],
            dtype={"tag": str}, encoding=encoding,
        )
        movies = _attach_tags(movies, tags)
    users = None
    if has("users.dat"):
        frame = _read_table(
            read, "users.dat", sep="::", names=["user", "gender", "age", "occupation", "zip"],
            dtype={"zip": str}, encoding=encoding,
        )
        codes = frame["occupation"].to_numpy()
        frame["occupation"] = np.array(_ML1M_OCCUPATIONS, dtype=object)[codes]
        users = Users(frame[["user", "age", "gender", "occupation", "zip"]])
    return Dataset(
        name=variant.name,
        ratings=_ratings(ratings, variant),
        catalog=Catalog(movies),
        users=users,
    )


def _parse_csv(read: Reader, has: Callable[[str], bool], variant: Variant) -> Dataset:
    ratings = pd.read_csv(
        io.BytesIO(read("ratings.csv")),
        dtype={"userId": np.int64, "movieId": np.int64, "rating": np.float32,
               "timestamp": np.int64},
    ).rename(columns={"userId": "user", "movieId": "item"})
    raw_movies = pd.read_csv(
        io.BytesIO(read("movies.csv")), dtype={"movieId": np.int64, "title": str, "genres": str}
    ).rename(columns={"movieId": "item", "title": "raw_title"})
    movies = _movies_frame(raw_movies)
    if has("tags.csv"):
        tags = pd.read_csv(io.BytesIO(read("tags.csv")), dtype={"tag": str}).rename(
            columns={"userId": "user", "movieId": "item"}
        )
        movies = _attach_tags(movies, tags)
    if has("links.csv"):
        links = pd.read_csv(
            io.BytesIO(read("links.csv")), dtype={"movieId": np.int64, "imdbId": str}
        )
        links = links.rename(columns={"movieId": "item"})
        links["imdb_id"] = "tt" + links["imdbId"].str.zfill(7)
        links["tmdb_id"] = pd.to_numeric(links["tmdbId"], errors="coerce").astype("Int64")
        movies = movies.merge(links[["item", "imdb_id", "tmdb_id"]], on="item", how="left")
    return Dataset(
        name=variant.name, ratings=_ratings(ratings, variant), catalog=Catalog(movies)
    )


def _read_table(
    read: Reader,
    member: str,
    *,
    sep: str,
    names: list[str],
    dtype: dict[str, Any] | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    data = read(member)
    if len(sep) > 1:
        # pandas' fast parser takes one-character separators only; "::" never occurs inside a
        # field of these files (titles use single colons), so map it to a byte that never occurs.
        data = data.replace(sep.encode(), b"\x1f")
        sep = "\x1f"
    if dtype is None:
        dtype = {"user": np.int64, "item": np.int64, "rating": np.float32, "timestamp": np.int64}
    try:
        return pd.read_csv(
            io.BytesIO(data),
            sep=sep,
            names=names,
            header=None,
            dtype={k: v for k, v in dtype.items() if k in names},
            encoding=encoding,
            quoting=3,  # csv.QUOTE_NONE: these files never quote, and titles may hold a lone "
            keep_default_na=False,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{member}: {exc}") from None


def _titles_years(raw_titles: pd.Series) -> tuple[list[str], pd.Series]:
    pairs = [split_title_year(t) for t in raw_titles.fillna("")]
    titles = [p[0] for p in pairs]
    years = pd.array([p[1] for p in pairs], dtype="Int64")
    return titles, pd.Series(years)


def _movies_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """(item, raw_title, genres "A|B") -> (item, title, year, genres [..])."""
    titles, years = _titles_years(raw["raw_title"])
    genres = [
        [] if (not isinstance(g, str) or g == _NO_GENRES or not g) else g.split("|")
        for g in raw["genres"]
    ]
    return pd.DataFrame(
        {"item": raw["item"].to_numpy(np.int64), "title": titles, "year": years, "genres": genres}
    )


def _attach_tags(movies: pd.DataFrame, tags: pd.DataFrame) -> pd.DataFrame:
    """Add a ``tags`` column: each movie's distinct tags (lowercased), most applied first."""
    frame = tags[["item", "tag"]].dropna()
    frame = frame.assign(tag=frame["tag"].astype(str).str.strip().str.lower())
    frame = frame[frame["tag"] != ""]
    counts = frame.groupby(["item", "tag"]).size().reset_index(name="n")
    counts = counts.sort_values(["item", "n", "tag"], ascending=[True, False, True])
    per_movie = counts.groupby("item")["tag"].agg(list)
    movies = movies.copy()
    movies["tags"] = [per_movie.get(i, []) for i in movies["item"]]
    return movies


def _ratings(frame: pd.DataFrame, variant: Variant) -> Ratings:
    return Ratings.from_arrays(
        frame["user"].to_numpy(),
        frame["item"].to_numpy(),
        frame["rating"].to_numpy(np.float32),
        frame["timestamp"].to_numpy(np.int64) if "timestamp" in frame else None,
        scale=variant.scale,
    )


# -- a user's own files ------------------------------------------------------------------------

_ALIASES = {
    "user": ("user", "userid", "user_id", "uid", "users"),
    "item": ("item", "movieid", "movie_id", "movie", "itemid", "item_id", "iid", "movies"),
    "rating": ("rating", "ratings", "score", "stars", "value"),
    "timestamp": ("timestamp", "time", "ts", "date", "datetime", "unix_time"),
}


@dataclass(frozen=True)
class LoadReport:
    """What reading a user's ratings file found.

    Attributes:
        rows: data rows read.
        duplicates: rows that repeated an earlier (user, movie) pair and were averaged into it.
        pairs_averaged: distinct (user, movie) pairs that had more than one row.
    """

    rows: int
    duplicates: int
    pairs_averaged: int


def _detect_sep(path: Path) -> str:
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    for sep in ("\t", ",", ";", "|"):
        if sep in first:
            return sep
    return r"\s+"


def _resolve_columns(columns: list[str], path: Path) -> dict[str, str]:
    lowered = {c.strip().lower(): c for c in columns}
    mapping = {}
    for role, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in lowered:
                mapping[lowered[alias]] = role
                break
        else:
            if role != "timestamp":
                raise DataError(
                    f"{path}: no {role} column; expected one named like {', '.join(aliases[:4])} "
                    f"(columns found: {', '.join(columns)})"
                )
    return mapping


def _read_any(path: Path, sep: str | None) -> pd.DataFrame:
    """Read CSV/TSV/Parquet, keeping a header if there is one; clean numeric columns stay numeric."""
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for a bad file
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    sep = sep or _detect_sep(path)
    try:
        head = pd.read_csv(path, sep=sep, nrows=1, header=None, dtype=str, engine="python")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    first = head.iloc[0].tolist() if len(head) else []
    has_header = any(_not_number(v) for v in first[:3])
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=0 if has_header else None,
            keep_default_na=False,  # a blank field keeps its column textual, so it is reported
            skip_blank_lines=True,
            engine="c" if len(sep) == 1 else "python",
        )
    except pd.errors.ParserError as exc:
        # pandas says "Expected 4 fields in line 17, saw 5": keep its line number, add the file.
        raise DataError(f"{path}: {str(exc).strip().splitlines()[-1]}") from None
    if not has_header:
        roles = ["user", "item", "rating", "timestamp"][: frame.shape[1]]
        if frame.shape[1] < 3:
            raise DataError(f"{path}: expected at least 3 columns (user, item, rating)")
        frame.columns = roles + [f"extra{i}" for i in range(frame.shape[1] - len(roles))]
    frame.attrs["header_lines"] = 1 if has_header else 0
    return frame


def _not_number(value: Any) -> bool:
    try:
        float(str(value))
        return False
    except ValueError:
        return True


def read_ratings_file(
    path: str | Path,
    movies: str | Path | None = None,
    *,
    sep: str | None = None,
    scale: tuple[float, float] | None = None,
) -> tuple[Dataset, LoadReport]:
    """Read a user's own ratings file (CSV, TSV or Parquet) into a `Dataset`.

    The file needs user, item and rating columns (common names such as ``userId``/``movieId`` are
    recognised; a file without a header is read as user, item, rating[, timestamp]) and may have a
    timestamp (Unix seconds or a date). Ids may be numbers or strings. Repeated (user, movie) pairs
    are averaged (timestamp: the latest) and counted in the returned `LoadReport`.

    Args:
        path: the ratings file.
        movies: optional movies file in MovieLens ``movies.csv`` form (id, title, genres).
        sep: field separator; sniffed from the first line if None.
        scale: rating scale; inferred from the values if None.

    Raises:
        DataError: naming the file and line of the first malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    frame = _read_any(path, sep)
    mapping = _resolve_columns([str(c) for c in frame.columns], path)
    frame = frame.rename(columns=mapping)[list(dict.fromkeys(mapping.values()))]
    if frame.empty:
        raise DataError(f"{path}: no ratings in the file")
    first_line = 1 + frame.attrs.get("header_lines", 0)

    def bad_row(mask: np.ndarray, what: str, column: str) -> None:
        if mask.any():
            row = int(np.flatnonzero(mask)[0])
            value = frame[column].iloc[row]
            raise DataError(f"{path}:{row + first_line}: {what}, got {value!r}")

    for role in ("user", "item"):
        column = frame[role]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            bad_row(column.isna().to_numpy(), f"empty {role}", role)
            if (column == column.round()).all():
                frame[role] = column.astype(np.int64)
                continue
        values = column.astype(str).str.strip()
        bad_row((values == "").to_numpy() | column.isna().to_numpy(), f"empty {role}", role)
        numeric = pd.to_numeric(values, errors="coerce")
        # Keep numeric ids numeric (so 10 sorts after 9) unless any id is not a whole number.
        if numeric.notna().all() and (numeric == numeric.round()).all():
            frame[role] = numeric.astype(np.int64)
        else:
            frame[role] = values
    rating = pd.to_numeric(frame["rating"], errors="coerce")
    bad_row(rating.isna().to_numpy(), "rating is not a number", "rating")
    frame["rating"] = rating.astype(np.float32)
    if "timestamp" in frame:
        frame["timestamp"] = _parse_times(frame["timestamp"], path, first_line)
    try:
        ratings = Ratings.from_frame(frame, scale=scale)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    ratings, report = _average_duplicates(ratings)
    if report.duplicates:
        log.warning("%s: %d duplicate rows averaged into %d pairs", path, report.duplicates,
                    report.pairs_averaged)
    catalog = (
        read_movies_file(movies)
        if movies is not None
        else Catalog(
            pd.DataFrame(
                {
                    "item": ratings.items.ids,
                    "title": [f"Movie {i}" for i in ratings.items.ids],
                    "year": pd.array([None] * ratings.n_items, dtype="Int64"),
                    "genres": [[] for _ in range(ratings.n_items)],
                }
            )
        )
    )
    return Dataset(name=str(path), ratings=ratings, catalog=catalog), report


def _average_duplicates(ratings: Ratings) -> tuple[Ratings, LoadReport]:
    """Merge repeated (user, movie) rows: mean rating, latest timestamp, at the first row's place."""
    n = len(ratings)
    try:
        _ = ratings.csr  # O(n), cached for whoever uses the ratings next; raises on duplicates
        return ratings, LoadReport(rows=n, duplicates=0, pairs_averaged=0)
    except DataError:
        pass
    codes = ratings.user_index.astype(np.int64) * ratings.n_items + ratings.item_index
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    if len(starts) == n:
        return ratings, LoadReport(rows=n, duplicates=0, pairs_averaged=0)
    sizes = np.diff(np.r_[starts, n])
    mean = np.add.reduceat(ratings.rating[order].astype(np.float64), starts) / sizes
    first = order[starts]  # stable sort: the first occurrence in file order
    keep = np.argsort(first, kind="stable")
    timestamp = None
    if ratings.timestamp is not None:
        timestamp = np.maximum.reduceat(ratings.timestamp[order], starts)[keep]
    merged = Ratings(
        users=ratings.users,
        items=ratings.items,
        user_index=ratings.user_index[first[keep]],
        item_index=ratings.item_index[first[keep]],
        rating=mean[keep],
        timestamp=timestamp,
        scale=ratings.scale,
    )
    report = LoadReport(rows=n, duplicates=n - len(starts), pairs_averaged=int((sizes > 1).sum()))
    return merged, report


def _parse_times(column: pd.Series, path: Path, first_line: int) -> np.ndarray:
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(np.int64)
    parsed = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}:{row + first_line}: timestamp is neither Unix seconds nor a date, "
            f"got {column.iloc[row]!r}"
        )
    # Resolution-independent (pandas may parse at s, ms, us or ns): whole seconds since the epoch.
    epoch = pd.Timestamp(0, tz="UTC")
    return ((parsed - epoch) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def read_movies_file(path: str | Path) -> Catalog:
    """Read a movies file in MovieLens ``movies.csv`` form (movieId/item, title[, genres]).

    Raises:
        DataError: if the file lacks an id or title column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    frame = pd.read_csv(path, sep=_detect_sep(path), dtype=str, keep_default_na=False)
    lowered = {c.strip().lower(): c for c in frame.columns}
    id_col = next((lowered[a] for a in _ALIASES["item"] if a in lowered), None)
    title_col = lowered.get("title")
    if id_col is None or title_col is None:
        raise DataError(f"{path}: a movies file needs an id column (movieId) and a title column")
    raw = pd.DataFrame(
        {
            "item": frame[id_col].str.strip(),
            "raw_title": frame[title_col],
            "genres": frame[lowered["genres"]] if "genres" in lowered else "",
        }
    )
    numeric = pd.to_numeric(raw["item"], errors="coerce")
    if numeric.notna().all():
        raw["item"] = numeric.astype(np.int64)
    titles, years = _titles_years(raw["raw_title"])
    genres = [[] if not g or g == _NO_GENRES else g.split("|") for g in raw["genres"]]
    return Catalog(
        pd.DataFrame({"item": raw["item"].to_numpy(), "title": titles, "year": years,
                      "genres": genres})
    )
