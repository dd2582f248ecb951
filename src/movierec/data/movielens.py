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

from movierec.data.dataset import Catalog, Dataset, Ratings, Users, split_title_year
from movierec.data.registry import Variant
from movierec.data.stream import TextFormat, first_duplicate, read_ratings_text
from movierec.errors import DataError

__all__ = [
    "FOLD_NAMES",
    "MAX_RATIO",
    "check_archive_entries",
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
    movies["tags"] = [per_movie.get(i, []) for i in movies["item"]]
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
