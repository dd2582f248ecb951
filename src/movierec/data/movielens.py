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
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from movierec._arrays import stable_argsort
from movierec.data.dataset import Catalog, Dataset, Ratings, Users, split_title_year
from movierec.data.registry import Variant
from movierec.data.stream import (
    TextFormat,
    first_duplicate,
    ratings_from_batches,
    read_ratings_text,
)
from movierec.errors import DataError

__all__ = [
    "FOLD_NAMES",
    "MAX_RATIO",
    "LoadReport",
    "check_archive_entries",
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
RatingsReader = Callable[[str, TextFormat], Ratings]
#: ``progress(description, done_bytes, total_bytes_or_None)``.
Progress = Callable[[str, int, int | None], None]


# -- archives ----------------------------------------------------------------------------------


#: Archive limits: a member may not inflate more than this many times, nor beyond these sizes.
#: MovieLens text compresses 3-5x, and ml-32m's largest member is under 1 GB.
MAX_RATIO = 100
MAX_MEMBER_BYTES = 8 << 30
MAX_TOTAL_BYTES = 16 << 30
_RATIO_FLOOR = 1 << 20  # members smaller than this are not held to the ratio


def check_archive_entries(archive: zipfile.ZipFile, label: str) -> None:
    """Refuse an archive with entries no MovieLens release has: paths that climb out (``..``) or
    are absolute, symbolic links, and members that would inflate beyond the limits (zip bombs).

    Nothing is ever extracted to disk, but a hostile archive is refused before any member is read.

    Raises:
        DataError: naming the entry and the rule it breaks.
    """
    total = 0
    for info in archive.infolist():
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise DataError(f"{label}: entry {name!r} has an absolute or climbing path")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DataError(f"{label}: entry {name!r} is a symbolic link")
        if info.file_size > MAX_MEMBER_BYTES:
            raise DataError(
                f"{label}: entry {name!r} inflates to {info.file_size:,} bytes, over the limit "
                f"of {MAX_MEMBER_BYTES:,}"
            )
        if info.file_size > _RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise DataError(
                f"{label}: entry {name!r} inflates {info.file_size / max(info.compress_size, 1):,.0f}"
                f" times (a zip bomb?), over the limit of {MAX_RATIO}"
            )
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise DataError(
            f"{label}: members inflate to {total:,} bytes in all, over the limit of "
            f"{MAX_TOTAL_BYTES:,}"
        )


def parse_archive(
    path: str | Path, variant: Variant, progress: Progress | None = None
) -> Dataset:
    """Parse a MovieLens zip archive of ``variant``'s layout into a `Dataset`.

    The ratings member is streamed (see `movierec.data.stream`): memory stays near the size of the
    final columns however large the file is.

    Raises:
        DataError: if the archive is not a readable zip, has hostile entries (see
            `check_archive_entries`), or a member is missing or malformed (naming the line).
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a readable zip archive ({exc})") from None
    with archive:
        check_archive_entries(archive, path.name)
        names = set(archive.namelist())

        def full(member: str) -> str:
            name = f"{variant.folder}/{member}"
            if name not in names:
                raise DataError(f"{path.name}: member {name} is missing")
            return name

        def read(member: str) -> bytes:
            name = full(member)
            try:
                return archive.read(name)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise DataError(f"{path.name}: member {name} is damaged ({exc})") from None

        def has(member: str) -> bool:
            return f"{variant.folder}/{member}" in names

        def ratings(member: str, fmt: TextFormat) -> Ratings:
            name = full(member)
            rows = read_ratings_text(
                lambda: archive.open(name),
                fmt,
                label=f"{path.name}:{name}",
                size=archive.getinfo(name).file_size,
                scale=variant.scale,
                progress=progress,
            )
            repeat = first_duplicate(rows)
            if repeat is not None:
                first, again = repeat
                line = again + 1 + (1 if fmt.header else 0)
                raise DataError(
                    f"{path.name}:{name}:{line}: user {rows.user_ids[again]} rated movie "
                    f"{rows.item_ids[again]} already on line {first + 1 + (1 if fmt.header else 0)}"
                    "; expected each (user, movie) pair once"
                )
            return rows

        parser = {"100k": _parse_100k, "dat": _parse_dat, "csv": _parse_csv}[variant.layout]
        try:
            return parser(read, has, ratings, variant)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise DataError(f"{path.name}: a member is damaged ({exc})") from None


def _parse_100k(
    read: Reader, has: Callable[[str], bool], ratings_of: RatingsReader, variant: Variant
) -> Dataset:
    dataset_ratings = ratings_of(
        "u.data",
        TextFormat(sep="\t", fields=4, positions=_POSITIONS, header=False,
                   expected="user<TAB>item<TAB>rating<TAB>timestamp"),
    )
    genre_names = [
        line.split("|")[0]
        for line in _decode(read("u.genre"), "u.genre", "latin-1").splitlines()
        if line.strip()
    ]
    item_cols = ["item", "raw_title", "release", "video_release", "imdb_url", *genre_names]
    items = _read_frame(
        read, "u.item", "item|title|release|video release|IMDb URL|19 genre flags",
        sep="|",
        names=item_cols,
        header=None,
        encoding="latin-1",
        dtype={"item": np.int64, "raw_title": str, "release": str},
        keep_default_na=False,
    )
    flags = _genre_flags(items, genre_names, "u.item")
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
    users = _read_frame(
        read, "u.user", "user|age|gender|occupation|zip",
        sep="|",
        names=["user", "age", "gender", "occupation", "zip"],
        header=None,
        dtype={"user": np.int64, "zip": str},
        encoding="latin-1",
    )
    raw = pd.DataFrame({"user": dataset_ratings.user_ids, "item": dataset_ratings.item_ids})
    folds = {}
    for fold in FOLD_NAMES:
        if has(f"{fold}.base") and has(f"{fold}.test"):
            folds[fold] = _fold_mask(read, fold, raw)
    return Dataset(
        name=variant.name,
        ratings=dataset_ratings,
        catalog=_catalog(movies, "u.item"),
        users=_users(users, "u.user"),
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


_POSITIONS = {"user": 0, "item": 1, "rating": 2, "timestamp": 3}


def _parse_dat(
    read: Reader, has: Callable[[str], bool], ratings_of: RatingsReader, variant: Variant
) -> Dataset:
    encoding = "latin-1" if variant.name == "ml-1m" else "utf-8"
    ratings = ratings_of(
        "ratings.dat",
        TextFormat(sep="::", fields=4, positions=_POSITIONS, header=False,
                   expected="UserID::MovieID::Rating::Timestamp"),
    )
    raw_movies = _read_table(
        read, "movies.dat", sep="::", names=["item", "raw_title", "genres"],
        dtype={"item": np.int64, "raw_title": str, "genres": str}, encoding=encoding,
        expected="MovieID::Title::Genres",
    )
    movies = _movies_frame(raw_movies)
    if has("tags.dat"):
        tags = _read_table(
            read, "tags.dat", sep="::", names=["user", "item", "tag", "timestamp"],
            dtype={"user": np.int64, "item": np.int64, "tag": str, "timestamp": np.int64},
            encoding=encoding, expected="UserID::MovieID::Tag::Timestamp",
        )
        movies = _attach_tags(movies, tags)
    users = None
    if has("users.dat"):
        frame = _read_table(
            read, "users.dat", sep="::", names=["user", "gender", "age", "occupation", "zip"],
            dtype={"user": np.int64, "age": np.int64, "occupation": np.int64, "zip": str},
            encoding=encoding, expected="UserID::Gender::Age::Occupation::Zip-code",
        )
        codes = frame["occupation"].to_numpy()
        if len(codes) and (codes.min() < 0 or codes.max() >= len(_ML1M_OCCUPATIONS)):
            raise DataError(
                f"users.dat: occupation codes must lie in 0..{len(_ML1M_OCCUPATIONS) - 1}, "
                f"got {codes.min()}..{codes.max()}"
            )
        frame["occupation"] = np.array(_ML1M_OCCUPATIONS, dtype=object)[codes]
        users = _users(frame[["user", "age", "gender", "occupation", "zip"]], "users.dat")
    return Dataset(
        name=variant.name,
        ratings=ratings,
        catalog=_catalog(movies, "movies.dat"),
        users=users,
    )


def _parse_csv(
    read: Reader, has: Callable[[str], bool], ratings_of: RatingsReader, variant: Variant
) -> Dataset:
    ratings = ratings_of(
        "ratings.csv",
        TextFormat(sep=",", fields=4, positions=_POSITIONS, header=True, quoted=True,
                   expected="userId,movieId,rating,timestamp",
                   header_names=("userId", "movieId", "rating", "timestamp")),
    )
    raw_movies = _read_frame(
        read, "movies.csv", "movieId,title,genres (with a header)",
        dtype={"movieId": np.int64, "title": str, "genres": str},
        required=["movieId", "title", "genres"],
    ).rename(columns={"movieId": "item", "title": "raw_title"})
    movies = _movies_frame(raw_movies)
    if has("tags.csv"):
        tags = _read_frame(
            read, "tags.csv", "userId,movieId,tag,timestamp (with a header)",
            dtype={"userId": np.int64, "movieId": np.int64, "tag": str},
            required=["movieId", "tag"],
        ).rename(columns={"userId": "user", "movieId": "item"})
        movies = _attach_tags(movies, tags)
    if has("links.csv"):
        links = _read_frame(
            read, "links.csv", "movieId,imdbId,tmdbId (with a header)",
            dtype={"movieId": np.int64, "imdbId": str, "tmdbId": str},
            required=["movieId", "imdbId", "tmdbId"],
        )
        links = links.rename(columns={"movieId": "item"})
        links["imdb_id"] = "tt" + links["imdbId"].fillna("").str.zfill(7)
        links["tmdb_id"] = pd.to_numeric(links["tmdbId"], errors="coerce").astype("Int64")
        if links["item"].duplicated().any():
            dup = int(links.loc[links["item"].duplicated(), "item"].iloc[0])
            raise DataError(f"links.csv: movie {dup} is listed twice; expected one row a movie")
        movies = movies.merge(links[["item", "imdb_id", "tmdb_id"]], on="item", how="left")
    return Dataset(name=variant.name, ratings=ratings, catalog=_catalog(movies, "movies.csv"))


def _decode(data: bytes, member: str, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{member}: byte {exc.start} is not {encoding} text ({data[exc.start:exc.start + 1]!r})"
        ) from None


def _read_frame(read: Reader, member: str, expected: str, *, required: list[str] | None = None,
                **options: Any) -> pd.DataFrame:
    """A small member (movies, tags, links, users) read by pandas; any failure is one DataError."""
    data = read(member)
    encoding = options.get("encoding", "utf-8")
    _decode(data, member, encoding)  # a wrong encoding is named, not a pandas traceback
    if not data.strip():
        raise DataError(f"{member}: the file is empty, expected {expected}")
    try:
        frame = pd.read_csv(io.BytesIO(data), **options)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{member}: {detail}; expected {expected}") from None
    missing = [c for c in (required or []) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{member}: no {', '.join(missing)} column (found {', '.join(map(str, frame.columns))})"
            f"; expected {expected}"
        )
    return frame


def _genre_flags(items: pd.DataFrame, genre_names: list[str], member: str) -> np.ndarray:
    flags = items[genre_names].to_numpy()
    if flags.dtype.kind not in "iub" or (len(flags) and not np.isin(flags, (0, 1)).all()):
        raise DataError(f"{member}: genre flags must be 0 or 1")
    return flags.astype(bool)


def _catalog(movies: pd.DataFrame, member: str) -> Catalog:
    if movies["item"].duplicated().any():
        dup = movies.loc[movies["item"].duplicated(), "item"].iloc[0]
        raise DataError(f"{member}: movie {dup} is listed twice; expected one line a movie")
    return Catalog(movies)


def _users(frame: pd.DataFrame, member: str) -> Users:
    if frame["user"].duplicated().any():
        dup = frame.loc[frame["user"].duplicated(), "user"].iloc[0]
        raise DataError(f"{member}: user {dup} is listed twice; expected one line a user")
    return Users(frame)


def _read_table(
    read: Reader,
    member: str,
    *,
    sep: str,
    names: list[str],
    dtype: dict[str, Any] | None = None,
    encoding: str = "utf-8",
    expected: str | None = None,
) -> pd.DataFrame:
    """A small headerless member (``::``, tab or pipe separated) read by pandas."""
    data = read(member)
    if len(sep) > 1:
        # pandas' fast parser takes one-character separators only; "::" never occurs inside a
        # field of these files (titles use single colons), so map it to a byte that never occurs.
        data = data.replace(sep.encode(), b"\x1f")
        sep = "\x1f"
    if dtype is None:
        dtype = {"user": np.int64, "item": np.int64, "rating": np.float32, "timestamp": np.int64}
    expected = expected or sep.join(names)
    return _read_frame(
        lambda _: data, member, expected,
        sep=sep,
        names=names,
        header=None,
        dtype={k: v for k, v in dtype.items() if k in names},
        encoding=encoding,
        quoting=3,  # csv.QUOTE_NONE: these files never quote, and titles may hold a lone "
        keep_default_na=False,
    )


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
    found = movies["item"].map(per_movie)  # one hash join, not a lookup per movie
    movies["tags"] = [t if isinstance(t, list) else [] for t in found]
    return movies


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


def _first_line(path: Path) -> str:
    """The file's first line, decoded (a BOM dropped).

    Raises:
        DataError: for an empty file or one that is not UTF-8 text.
    """
    with path.open("rb") as handle:
        raw = handle.readline(1 << 16)
    if not raw.strip():
        raise DataError(f"{path}: the file is empty, expected a ratings table "
                        "(user, item, rating[, timestamp])")
    try:
        return raw.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}:1: byte {exc.start} is not UTF-8 text ({raw[exc.start:exc.start + 1]!r}); "
            "save the file as UTF-8"
        ) from None


def _detect_sep(first: str) -> str:
    for sep in ("\t", ",", ";", "|"):
        if sep in first:
            return sep
    return " "


def _resolve_columns(columns: list[str], path: Path) -> dict[str, int]:
    """role -> column position, from header names."""
    lowered = {c.strip().lower(): position for position, c in enumerate(columns)}
    mapping: dict[str, int] = {}
    for role, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in lowered:
                mapping[role] = lowered[alias]
                break
        else:
            if role != "timestamp":
                raise DataError(
                    f"{path}: no {role} column; expected one named like {', '.join(aliases[:4])} "
                    f"(columns found: {', '.join(columns)})"
                )
    return mapping


def _not_number(value: Any) -> bool:
    try:
        float(str(value))
        return False
    except ValueError:
        return True


def _text_format(path: Path, sep: str | None) -> TextFormat:
    """The layout of a user's ratings text file, from its first line."""
    first = _first_line(path)
    sep = sep or _detect_sep(first)
    quoted = '"' in first
    if quoted:
        import csv

        fields = next(csv.reader([first], delimiter=sep))
    else:
        fields = first.split(sep)
    has_header = any(_not_number(v.strip()) for v in fields[:3])
    if has_header:
        positions = _resolve_columns(fields, path)
        expected = sep.join(f.strip() for f in fields)
    else:
        if len(fields) < 3:
            raise DataError(
                f"{path}:1: {len(fields)} fields; expected at least 3 columns (user, item, rating)"
            )
        roles = ["user", "item", "rating", "timestamp"][: len(fields)]
        positions = {role: i for i, role in enumerate(roles)}
        expected = sep.join(roles + [f"extra{i}" for i in range(len(fields) - len(roles))])
    shown = {"\t": "<TAB>", " ": "<SPACE>"}.get(sep)
    if shown:
        expected = expected.replace(sep, shown)
    return TextFormat(sep=sep, fields=len(fields), positions=positions, header=has_header,
                      expected=f"{len(fields)} fields: {expected}", quoted=True)


def _read_parquet_ratings(path: Path, scale: tuple[float, float] | None) -> Ratings:
    """A Parquet ratings file, one row group (or batch) at a time."""
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
        columns = list(handle.schema_arrow.names)
    except Exception as exc:  # pyarrow raises many types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    positions = _resolve_columns(columns, path)
    names = {role: columns[p] for role, p in positions.items()}
    kinds = {role: handle.schema_arrow.field(name).type for role, name in names.items()}
    text = {role for role, kind in kinds.items()
            if role in ("user", "item")
            and (pa.types.is_string(kind) or pa.types.is_large_string(kind))}

    def batches() -> Any:
        try:
            yield from handle.iter_batches(batch_size=1 << 20, columns=list(names.values()))
        except Exception as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None

    return ratings_from_batches(
        batches(), label=str(path), estimate=handle.metadata.num_rows, scale=scale, names=names,
        text_roles=text,
    )


def read_ratings_file(
    path: str | Path,
    movies: str | Path | None = None,
    *,
    sep: str | None = None,
    scale: tuple[float, float] | None = None,
    progress: Progress | None = None,
) -> tuple[Dataset, LoadReport]:
    """Read a user's own ratings file (CSV, TSV or Parquet) into a `Dataset`.

    The file needs user, item and rating columns (common names such as ``userId``/``movieId`` are
    recognised; a file without a header is read as user, item, rating[, timestamp]) and may have a
    timestamp (Unix seconds or a date). Ids may be numbers or strings. Repeated (user, movie) pairs
    are averaged (timestamp: the latest) and counted in the returned `LoadReport`.

    The file is streamed in blocks like a MovieLens archive (see `movierec.data.stream`), so tens of
    millions of rows load in memory near the size of the final columns.

    Args:
        path: the ratings file (UTF-8 text, every line with the same number of fields).
        movies: optional movies file in MovieLens ``movies.csv`` form (id, title, genres).
        sep: field separator; sniffed from the first line if None.
        scale: rating scale every rating must lie in; inferred from the values if None.
        progress: called with bytes read so far.

    Raises:
        DataError: naming the file and line of the first malformed row (too few or many fields, an
            empty or non-numeric field, a rating that is not finite or off ``scale``), or for an
            empty file, one that is not UTF-8, or one without user/item/rating columns.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        ratings = _read_parquet_ratings(path, scale)
    else:
        fmt = _text_format(path, sep)
        ratings = read_ratings_text(
            lambda: path.open("rb"), fmt, label=str(path), size=path.stat().st_size,
            scale=scale, adaptive=True, progress=progress,
        )
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
    order = stable_argsort(codes)
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    if len(starts) == n:
        return ratings, LoadReport(rows=n, duplicates=0, pairs_averaged=0)
    sizes = np.diff(np.r_[starts, n])
    mean = np.add.reduceat(ratings.rating[order].astype(np.float64), starts) / sizes
    first = order[starts]  # stable sort: the first occurrence in file order
    keep = stable_argsort(first)
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


def read_movies_file(path: str | Path) -> Catalog:
    """Read a movies file in MovieLens ``movies.csv`` form (movieId/item, title[, genres]).

    Raises:
        DataError: if the file lacks an id or title column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    first = _first_line(path)
    try:
        frame = pd.read_csv(path, sep=_detect_sep(first), dtype=str, keep_default_na=False,
                            encoding="utf-8-sig")
    except (ValueError, pd.errors.ParserError, UnicodeError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: {detail}; expected movieId,title[,genres]") from None
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
    if numeric.notna().all() and (numeric == numeric.round()).all():
        raw["item"] = numeric.astype(np.int64)
    if raw["item"].duplicated().any():
        dup = raw.loc[raw["item"].duplicated(), "item"].iloc[0]
        raise DataError(f"{path}: movie {dup} is listed twice; expected one line a movie")
    titles, years = _titles_years(raw["raw_title"])
    genres = [[] if not g or g == _NO_GENRES else g.split("|") for g in raw["genres"]]
    return Catalog(
        pd.DataFrame({"item": raw["item"].to_numpy(), "title": titles, "year": years,
                      "genres": genres})
    )
