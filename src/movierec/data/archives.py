"""Writing a `Dataset` as a zip in the official layout of each MovieLens registry variant.

`write_archive` writes a dataset (integer ids, timestamps; users where the layout has a users file)
as the zip GroupLens ships for a variant: the ``100k``, ``dat`` or ``csv`` layout, with the
variant's top folder, member names, encodings, rating notation and line ends. The dataset may be
real or made by `movierec.data.synth.synthesize`, so the parsers can be tested on every format
without downloading anything.

`canonical_folds` makes ml-100k's ``u1``..``u5``/``ua``/``ub`` folds from a dataset's rows, as
ml-100k's own scripts do; the ``100k`` writer uses them for any fold the dataset does not carry.

Archives are reproducible: fixed member times and seeded invented tags, so the same dataset gives
the same bytes. Rating lines are formatted vectorised, in blocks of rows.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from movierec._arrays import stable_argsort
from movierec.data.dataset import Catalog, Dataset, Ratings
from movierec.data.registry import Variant, get_variant
from movierec.data.synth import OCCUPATIONS_100K
from movierec.errors import ConfigError

__all__ = ["GENRES_100K", "canonical_folds", "write_archive"]

#: ml-100k's ``u.genre``, in flag order.
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)

# ml-100k occupation -> ml-1m users.dat occupation code (its README's list of 21).
_ML1M_OCCUPATION_CODE = {
    "other": 0, "educator": 1, "librarian": 1, "artist": 2, "entertainment": 2,
    "administrator": 3, "student": 4, "doctor": 6, "healthcare": 6, "executive": 7,
    "homemaker": 9, "lawyer": 11, "programmer": 12, "retired": 13, "marketing": 14,
    "salesman": 14, "scientist": 15, "engineer": 17, "technician": 17, "none": 19, "writer": 20,
}

_ZIP_TIME = (2000, 1, 1, 0, 0, 0)  # fixed member times: the same dataset gives the same bytes
_ZIP_LEVEL = 1  # fast deflate: ratings files of 32M rows are ~800 MB of text
_CHUNK = 1 << 21  # rating lines formatted at once (bounds the per-row byte matrices)


# -- canonical folds ---------------------------------------------------------------------------


def canonical_folds(ratings: Ratings) -> dict[str, np.ndarray]:
    """ml-100k's folds as its ``mku.sh`` makes them from the rows in file order.

    ``u1``..``u5``: test = the k-th fifth of the rows (rows ``n*(k-1)//5`` to ``n*k//5``), so every
    row is in exactly one test fold. ``ua``: test = each user's first 10 rows in file order;
    ``ub``: rows 11 to 20 (``allbut.pl``; a user with fewer rows has fewer, or none, in test, and
    there is no cap on the test size). Masks are over rows, True for test. On the real ml-100k,
    whose users all have >= 20 ratings, this reproduces the shipped files exactly.
    """
    n = len(ratings)
    folds: dict[str, np.ndarray] = {}
    for k in range(1, 6):
        mask = np.zeros(n, dtype=bool)
        mask[n * (k - 1) // 5 : n * k // 5] = True
        folds[f"u{k}"] = mask
    order = stable_argsort(ratings.user_index)
    users = ratings.user_index[order]
    first = np.ones(n, dtype=bool)
    first[1:] = users[1:] != users[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - group_start
    folds["ua"] = position < 10
    folds["ub"] = (position >= 10) & (position < 20)
    return folds


# -- writing archives --------------------------------------------------------------------------


def write_archive(dataset: Dataset, path: str | Path, variant: str) -> Path:
    """Write ``dataset`` as a zip in the official layout of registry variant ``variant``.

    Members sit under the variant's top folder with its official names:

    - ``100k`` layout: ``u.data`` (rows in dataset order), ``u.item``, ``u.user``, ``u.genre``,
      ``u.occupation``, ``u.info``, ``README``, and the folds ``u1..u5``/``ua``/``ub`` as
      ``.base``/``.test`` (from ``dataset.folds`` where present, else `canonical_folds`);
    - ``dat`` layout: ``ratings.dat``, ``movies.dat``, and ``users.dat`` (ml-1m) or ``tags.dat``
      (ml-10m), ``README``;
    - ``csv`` layout: ``ratings.csv``, ``movies.csv``, ``tags.csv``, ``links.csv``,
      ``README.txt``; CRLF line ends for ml-latest-small (as GroupLens ships it), LF otherwise.

    Rating files other than ``u.data`` are sorted by user then movie, like the real ones. Tags are
    invented (seeded, deterministic) on about 1 in 50 rated pairs. The archive is written to a
    temporary file beside ``path`` and renamed, so a failure leaves nothing half-written.

    Args:
        dataset: the data; integer ids, timestamps, and (for ml-100k and ml-1m) users.
        path: the zip to write, or an existing folder to write ``<variant>.zip`` into.
        variant: a registry name such as ``"ml-100k"``.

    Returns:
        The path written.

    Raises:
        ConfigError: for an unknown variant, a missing folder, ratings off the variant's scale
            (half stars into ml-100k), non-integer ids, no timestamps, missing users where the
            layout needs them, or a title the layout's encoding cannot write.
    """
    spec = get_variant(variant)
    _check_writable(dataset, spec)
    target = Path(path)
    if target.is_dir():
        target = target / spec.filename
    if not target.parent.is_dir():
        raise ConfigError(f"folder {target.parent} does not exist")
    writer = {"100k": _write_100k, "dat": _write_dat, "csv": _write_csv}[spec.layout]
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                         dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(
            raw, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL
        ) as archive:
            folder = zipfile.ZipInfo(f"{spec.folder}/", _ZIP_TIME)
            folder.external_attr = 0o40755 << 16
            archive.writestr(folder, b"")
            writer(_Members(archive, spec.folder), dataset, spec)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return target


def _check_writable(dataset: Dataset, spec: Variant) -> None:
    ratings = dataset.ratings
    for vocab in (ratings.users, ratings.items):
        if not vocab.is_integer or (len(vocab) and vocab.ids.min() < 0):
            raise ConfigError(f"{spec.name} needs non-negative integer {vocab.kind} ids")
    if ratings.timestamp is None:
        raise ConfigError(f"{spec.name} needs timestamps; these ratings have none")
    if len(ratings) and ratings.timestamp.min() < 0:
        raise ConfigError(f"{spec.name} needs timestamps >= 0 (Unix seconds)")
    if "users" in spec.members:
        if dataset.users is None:
            raise ConfigError(f"{spec.name} needs user demographics; this dataset has none")
        missing = {"age", "gender", "occupation", "zip"} - set(dataset.users.frame.columns)
        if missing:
            raise ConfigError(f"{spec.name} needs user columns {sorted(missing)}")
    if not len(ratings):
        return
    low, high = spec.scale
    doubled = ratings.rating * 2
    step = 2 if low == 1.0 else 1  # whole stars: doubled ratings are even
    if (
        ratings.rating.min() < low
        or ratings.rating.max() > high
        or not np.array_equal(doubled, np.rint(doubled))
        or np.any(doubled.astype(np.int64) % step)
    ):
        kind = "whole stars" if step == 2 else "half stars"
        raise ConfigError(
            f"{spec.name} takes ratings in {kind} from {low:g} to {high:g}; these ratings range "
            f"{ratings.rating.min():g}..{ratings.rating.max():g}"
            + (" with half stars" if step == 2 and np.any(doubled % 2) else "")
        )


class _Members:
    """Streams members into the archive under the top folder, with fixed times."""

    def __init__(self, archive: zipfile.ZipFile, folder: str) -> None:
        self.archive, self.folder = archive, folder

    def write(self, name: str, data: bytes | Iterator[bytes]) -> None:
        info = zipfile.ZipInfo(f"{self.folder}/{name}", _ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        if hasattr(info, "compress_level"):
            info.compress_level = _ZIP_LEVEL
        else:  # Python < 3.13 keeps it private; without it members get zlib's default level
            info._compresslevel = _ZIP_LEVEL  # type: ignore[attr-defined]
        with self.archive.open(info, "w", force_zip64=True) as member:
            for chunk in [data] if isinstance(data, bytes) else data:
                member.write(chunk)

    def text(self, name: str, lines: Sequence[str], encoding: str, eol: str = "\n") -> None:
        text = "".join(line + eol for line in lines)
        try:
            self.write(name, text.encode(encoding))
        except UnicodeEncodeError as exc:
            bad = exc.object[max(0, exc.start - 20) : exc.end + 20]
            raise ConfigError(f"{name} is {encoding}, which cannot write {bad!r}") from None

    def table(self, name: str, header: Sequence[str] | None, rows: Sequence[Sequence[Any]],
              encoding: str, eol: str) -> None:
        buffer = io.StringIO()
        out = csv.writer(buffer, lineterminator=eol, quoting=csv.QUOTE_MINIMAL)
        if header is not None:
            out.writerow(header)
        out.writerows(rows)
        self.write(name, buffer.getvalue().encode(encoding))


# Rating text by doubled rating (0..10), per layout.
_WHOLE = [f"{v // 2}" if v % 2 == 0 else "" for v in range(11)]
_SHORT = [f"{v / 2:g}" for v in range(11)]  # ml-10m: 5, 3.5
_POINT = [f"{v / 2:.1f}" for v in range(11)]  # csv: 5.0, 3.5


def _rating_lines(
    ratings: Ratings, rows: np.ndarray | None, sep: bytes, eol: bytes, texts: list[str]
) -> Iterator[bytes]:
    """Lines ``user sep item sep rating sep timestamp`` for ``rows`` (all rows if None)."""
    user_ids, item_ids = ratings.users.ids, ratings.items.ids
    table = [t.encode() for t in texts]
    n = len(ratings) if rows is None else len(rows)
    for lo in range(0, n, _CHUNK):
        at = np.arange(lo, min(lo + _CHUNK, n)) if rows is None else rows[lo : lo + _CHUNK]
        level = np.rint(ratings.rating[at] * 2).astype(np.int64)
        assert ratings.timestamp is not None  # checked by _check_writable
        yield _format_rows(
            [
                _digits(user_ids[ratings.user_index[at]]),
                _digits(item_ids[ratings.item_index[at]]),
                _lookup(table, level),
                _digits(ratings.timestamp[at]),
            ],
            sep,
            eol,
        )


def _digits(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative integers as right-aligned ASCII digits: (bytes, valid) of shape (n, width)."""
    q = values.astype(np.int64)
    width = len(str(int(q.max()))) if len(q) else 1
    out = np.empty((len(q), width), dtype=np.uint8)
    valid = np.empty((len(q), width), dtype=bool)
    for k in range(width):
        column = width - 1 - k
        valid[:, column] = q > 0 if k else True
        out[:, column] = q % 10 + 48
        q //= 10
    return out, valid


def _lookup(table: list[bytes], index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strings from a small table, left-aligned: (bytes, valid) of shape (n, width)."""
    width = max(1, *map(len, table))
    codes = np.zeros((len(table), width), dtype=np.uint8)
    for j, text in enumerate(table):
        codes[j, : len(text)] = np.frombuffer(text, dtype=np.uint8)
    lengths = np.array([len(t) for t in table])
    return codes[index], np.arange(width) < lengths[index][:, None]


def _format_rows(
    fields: list[tuple[np.ndarray, np.ndarray]], sep: bytes, eol: bytes
) -> bytes:
    """Join per-row fields with ``sep``, end each row with ``eol``; vectorised over rows."""
    n = len(fields[0][0])
    blocks, masks = [], []
    for j, (block, valid) in enumerate(fields):
        blocks.append(block)
        masks.append(valid)
        tail = sep if j < len(fields) - 1 else eol
        blocks.append(np.broadcast_to(np.frombuffer(tail, dtype=np.uint8), (n, len(tail))))
        masks.append(np.ones((n, len(tail)), dtype=bool))
    return np.hstack(blocks)[np.hstack(masks)].tobytes()


def _by_user_item(ratings: Ratings, rows: np.ndarray | None = None) -> np.ndarray:
    """Row positions sorted by raw user id then raw movie id (all rows, or ``rows``)."""
    rows = np.arange(len(ratings)) if rows is None else rows
    users = ratings.users.ids[ratings.user_index[rows]]
    items = ratings.items.ids[ratings.item_index[rows]]
    span = int(items.max()) + 1 if len(items) else 1
    return rows[np.argsort(users * span + items, kind="stable")]


def _full_title(title: Any, year: Any) -> str:
    title = "" if title is None or title is pd.NA else str(title)
    return title if year is None or year is pd.NA else f"{title} ({int(year)})"


def _movie_rows(
    catalog: Catalog, separator: str | None = None
) -> list[tuple[int, str, list[str], int | None]]:
    """(movie id, "Title (Year)", genres, year or None) per catalog movie.

    Raises:
        ConfigError: if a title contains ``separator`` (a layout that cannot quote).
    """
    frame = catalog.frame
    rows = [
        (int(item), _full_title(title, year), list(genres),
         None if year is None or year is pd.NA else int(year))
        for item, title, year, genres in zip(
            frame["item"], frame["title"], frame["year"], frame["genres"], strict=True
        )
    ]
    if separator is not None:
        for item, title, _, _ in rows:
            if separator in title or "\n" in title:
                raise ConfigError(
                    f"movie {item}: title {title!r} holds {separator!r} or a line break, "
                    "which this layout cannot write"
                )
    return rows


def _genre_text(genres: list[str], old_names: bool) -> str:
    names = [_old_genre(g) if old_names else _new_genre(g) for g in genres]
    return "|".join(names) if names else "(no genres listed)"


def _old_genre(genre: str) -> str:
    return "Children's" if genre == "Children" else genre


def _new_genre(genre: str) -> str:
    return "Children" if genre == "Children's" else genre


_TAG_WORDS = (
    "atmospheric", "funny", "twist ending", "based on a book", "dark comedy", "visually appealing",
    "slow", "great soundtrack", "Oscar (Best Picture)", "quirky", "overrated", "classic",
    "so bad it's good", 'quotes: "here\'s looking at you"', "sad, but beautiful", "Amélie-like",
    "noir", "must see!", "cult film", "thought-provoking",
)


def _tags(ratings: Ratings) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Invented tag applications on rated pairs: (user ids, movie ids, tags, timestamps).

    Seeded and deterministic; sorted by user then movie like the real files.
    """
    rng = np.random.default_rng(20_151_001)
    n = len(ratings)
    size = min(max(n // 50, min(n, 5)), 1_000_000)
    rows = np.sort(rng.integers(0, n, size)) if n else np.empty(0, np.int64)
    rows = rows[np.diff(rows, prepend=-1) != 0]  # unique; np.unique hashes and is slower here
    rows = _by_user_item(ratings, rows)
    words = (ratings.item_index[rows].astype(np.int64) * 7 + rng.integers(0, 3, len(rows)))
    assert ratings.timestamp is not None
    times = ratings.timestamp[rows] + rng.integers(0, 600, len(rows))
    return (ratings.users.ids[ratings.user_index[rows]], ratings.items.ids[ratings.item_index[rows]],
            [_TAG_WORDS[w % len(_TAG_WORDS)] for w in words], times)


def _fold_masks(dataset: Dataset) -> dict[str, np.ndarray]:
    folds = canonical_folds(dataset.ratings)
    folds.update({k: v for k, v in dataset.folds.items() if k in folds})
    return folds


def _write_100k(out: _Members, dataset: Dataset, spec: Variant) -> None:
    ratings, catalog = dataset.ratings, dataset.catalog
    assert dataset.users is not None
    out.write(spec.members["ratings"], _rating_lines(ratings, None, b"\t", b"\n", _WHOLE))
    by_user = _by_user_item(ratings)
    for name, test in _fold_masks(dataset).items():
        in_test = test[by_user]
        out.write(f"{name}.base", _rating_lines(ratings, by_user[~in_test], b"\t", b"\n", _WHOLE))
        out.write(f"{name}.test", _rating_lines(ratings, by_user[in_test], b"\t", b"\n", _WHOLE))

    urls = catalog.frame.get("imdb_url")
    flag_of = {g: j for j, g in enumerate(GENRES_100K)}
    lines = []
    for j, (item, title, genres, year) in enumerate(_movie_rows(catalog, "|")):
        flags = [0] * len(GENRES_100K)
        for genre in genres:
            if _old_genre(genre) in flag_of:
                flags[flag_of[_old_genre(genre)]] = 1
        if not any(flags):
            flags[0] = 1
        release = "" if year is None else f"01-Jan-{year}"
        if urls is not None:
            url = "" if not isinstance(urls.iloc[j], str) else urls.iloc[j]
        else:
            url = "http://us.imdb.com/M/title-exact?" + quote(title, safe="(),'",
                                                               encoding="latin-1",
                                                               errors="replace")
        lines.append("|".join([str(item), title, release, "", url, *map(str, flags)]))
    out.text(spec.members["movies"], lines, "latin-1")

    people = dataset.users.frame
    out.text(
        spec.members["users"],
        [
            f"{u}|{int(a)}|{g}|{o}|{z}"
            for u, a, g, o, z in zip(
                people["user"], people["age"], people["gender"], people["occupation"],
                people["zip"], strict=True,
            )
        ],
        "latin-1",
    )
    out.text("u.genre", [*(f"{g}|{j}" for j, g in enumerate(GENRES_100K)), ""], "latin-1")
    out.text("u.occupation", list(OCCUPATIONS_100K), "latin-1")
    out.text("u.info", [f"{ratings.n_users} users", f"{ratings.n_items} items",
                        f"{len(ratings)} ratings"], "latin-1")
    out.text("README", _readme(dataset, spec).splitlines(), "latin-1")


def _age_code(age: int) -> int:
    """ml-1m's age bucket: 1 (<18), 18, 25, 35, 45, 50, 56 (56+); idempotent on codes."""
    for low in (56, 50, 45, 35, 25, 18):
        if age >= low:
            return low
    return 1


def _write_dat(out: _Members, dataset: Dataset, spec: Variant) -> None:
    ratings = dataset.ratings
    whole = spec.scale[0] == 1.0
    old_names = spec.name == "ml-1m"  # ml-1m says "Children's", ml-10m "Children"
    encoding = "latin-1" if spec.name == "ml-1m" else "utf-8"
    by_user = _by_user_item(ratings)
    out.write(spec.members["ratings"],
              _rating_lines(ratings, by_user, b"::", b"\n", _WHOLE if whole else _SHORT))
    out.text(
        spec.members["movies"],
        [f"{item}::{title}::{_genre_text(genres, old_names=old_names)}"
         for item, title, genres, _ in _movie_rows(dataset.catalog, "::")],
        encoding,
    )
    if "users" in spec.members:
        assert dataset.users is not None
        people = dataset.users.frame
        codes = [
            o if isinstance(o, int | np.integer) else _ML1M_OCCUPATION_CODE.get(str(o), 0)
            for o in people["occupation"]
        ]
        out.text(
            spec.members["users"],
            [
                f"{u}::{g}::{_age_code(int(a))}::{c}::{z}"
                for u, g, a, c, z in zip(
                    people["user"], people["gender"], people["age"], codes, people["zip"],
                    strict=True,
                )
            ],
            encoding,
        )
    if "tags" in spec.members:
        users, items, tags, times = _tags(ratings)
        out.text(
            spec.members["tags"],
            [f"{u}::{i}::{t}::{s}" for u, i, t, s in zip(users, items, tags, times, strict=True)],
            encoding,
        )
    out.text("README.html" if spec.name == "ml-10m" else "README",
             _readme(dataset, spec).splitlines(), encoding)


def _write_csv(out: _Members, dataset: Dataset, spec: Variant) -> None:
    ratings, catalog = dataset.ratings, dataset.catalog
    eol = "\r\n" if spec.name == "ml-latest-small" else "\n"
    header = b"userId,movieId,rating,timestamp" + eol.encode()
    lines = _rating_lines(ratings, _by_user_item(ratings), b",", eol.encode(), _POINT)
    out.write(spec.members["ratings"], _prepend(header, lines))
    out.table(
        spec.members["movies"], ["movieId", "title", "genres"],
        [(item, title, _genre_text(genres, old_names=False))
         for item, title, genres, _ in _movie_rows(catalog)],
        "utf-8", eol,
    )
    users, items, tags, times = _tags(ratings)
    out.table(spec.members["tags"], ["userId", "movieId", "tag", "timestamp"],
              list(zip(users.tolist(), items.tolist(), tags, times.tolist(), strict=True)),
              "utf-8", eol)
    frame = catalog.frame
    if "imdb_id" in frame:
        imdb = [int(str(v).removeprefix("tt")) if isinstance(v, str) and v else None
                for v in frame["imdb_id"]]
    else:
        imdb = [None] * len(frame)
    tmdb = frame["tmdb_id"] if "tmdb_id" in frame else pd.Series([pd.NA] * len(frame))
    out.table(
        spec.members["links"], ["movieId", "imdbId", "tmdbId"],
        [
            (int(item), "" if i is None else f"{i:07d}", "" if t is pd.NA or t is None else int(t))
            for item, i, t in zip(frame["item"], imdb, tmdb, strict=True)
        ],
        "utf-8", eol,
    )
    out.text("README.txt", _readme(dataset, spec).splitlines(), "utf-8", eol)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _readme(dataset: Dataset, spec: Variant) -> str:
    ratings = dataset.ratings
    members = ", ".join(spec.members.values())
    folds = (
        "\nu1..u5 .base/.test: 80%/20% splits; u1.test..u5.test are disjoint fifths of u.data "
        "(in its order).\nua, ub .base/.test: each user's 1st-10th (ua) and 11th-20th (ub) "
        "ratings in u.data order are the test set.\n"
        if spec.layout == "100k" else ""
    )
    return (
        f"SYNTHETIC DATA in the layout of MovieLens {spec.name}\n"
        "=============================================\n\n"
        f"Written by movierec from the dataset {dataset.name!r}; not GroupLens data.\n"
        f"{len(ratings)} ratings from {ratings.n_users} users on {ratings.n_items} movies; "
        f"rating scale {spec.scale[0]:g}-{spec.scale[1]:g}.\n"
        f"Files: {members}.\n{folds}"
    )

