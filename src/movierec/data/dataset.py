"""In-memory data types: `Vocabulary`, `Ratings`, `Catalog`, `Users` and the `Dataset` bundle.

Raw ids (what the files and the user say: MovieLens user and movie ids, or strings from a user's own
file) live outside; dense indices ``0..n-1`` live inside, translated by a `Vocabulary` at the boundary.
A vocabulary built from values is sorted ascending, so index order is raw-id order and "ties broken by
ascending item id" is the same as ties broken by ascending index.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec._arrays import stable_argsort
from movierec.errors import DataError, UnknownIdError

__all__ = ["Catalog", "Dataset", "Ratings", "Users", "Vocabulary", "split_title_year"]


# Up to this many ids, `Vocabulary.indices` looks them up in a dict (a fold-in's few ratings).
_FEW = 256


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    if array.flags.writeable:
        array = array.view()
        array.flags.writeable = False
    return array


class Vocabulary:
    """A bijection between raw ids and dense indices ``0..len-1``.

    Args:
        ids: the raw ids, unique, in index order (index ``i`` is ``ids[i]``). Integers or strings.
        kind: a word for error messages ("user", "movie").

    Raises:
        DataError: if ``ids`` holds duplicates.
    """

    def __init__(self, ids: Sequence[Any] | np.ndarray, kind: str = "id") -> None:
        array = np.asarray(ids)
        if array.dtype.kind in "iu":
            array = array.astype(np.int64, copy=False)
        elif array.dtype.kind not in "iuU":
            array = array.astype(str)
        self._index = pd.Index(array)
        if not self._index.is_unique:
            dupes = self._index[self._index.duplicated()].unique()[:5].tolist()
            raise DataError(f"{kind} ids must be unique, got duplicates such as {dupes}")
        self.ids: np.ndarray = _readonly(array)
        self.kind = kind

    @classmethod
    def from_values(cls, values: Iterable[Any] | np.ndarray, kind: str = "id") -> Vocabulary:
        """The vocabulary of the distinct values, sorted ascending."""
        return _encode(values, kind)[0]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, raw: Any) -> bool:
        try:
            return self._positions.get(self._coerce(raw), -1) >= 0
        except (TypeError, ValueError):
            return False

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Vocabulary)
            and self.ids.dtype.kind == other.ids.dtype.kind
            and np.array_equal(self.ids, other.ids)
        )

    def __hash__(self) -> int:  # vocabularies are immutable values
        return hash((len(self.ids), self.ids[:8].tobytes()))

    def __repr__(self) -> str:
        head = ", ".join(map(str, self.ids[:3]))
        return f"Vocabulary({self.kind}, n={len(self)}, [{head}{', ...' if len(self) > 3 else ''}])"

    @property
    def is_integer(self) -> bool:
        return self.ids.dtype.kind in "iu"

    def _coerce(self, raw: Any) -> Any:
        # "42" from a command line finds movie 42; 42 finds the string id "42" in a user's file.
        if self.is_integer and isinstance(raw, str):
            return int(raw.strip())
        if not self.is_integer and not isinstance(raw, str):
            return str(raw)
        return raw

    def index(self, raw: Any) -> int:
        """Dense index of one raw id.

        Raises:
            UnknownIdError: if the id is not in the vocabulary.
        """
        try:
            position = self._positions.get(self._coerce(raw), -1)
        except (TypeError, ValueError):
            position = -1
        if position < 0:
            raise UnknownIdError(f"unknown {self.kind} id {raw!r}")
        return position

    def indices(self, raws: Sequence[Any] | np.ndarray, missing: str = "raise") -> np.ndarray:
        """Dense indices (int64) of many raw ids.

        Args:
            raws: raw ids.
            missing: ``"raise"`` raises on the first unknown id; ``"mask"`` returns -1 for it.

        Raises:
            UnknownIdError: if ``missing="raise"`` and an id is unknown.
        """
        values = np.asarray(raws)
        if self.is_integer and values.dtype.kind in "USO":
            converted = np.empty(len(values), dtype=np.int64)
            unusable = np.zeros(len(values), dtype=bool)
            for position, value in enumerate(values):  # only text input: a user's few ids
                try:
                    converted[position] = self._coerce(value)
                except (TypeError, ValueError):
                    unusable[position] = True  # "abc" cannot name an integer id: unknown
            if unusable.any():
                if missing == "raise":
                    raise UnknownIdError(f"unknown {self.kind} id {str(values[unusable][0])!r}")
                out = np.full(len(values), -1, dtype=np.int64)
                out[~unusable] = self.indices(converted[~unusable], missing=missing)
                return out
            values = converted
        elif not self.is_integer and values.dtype.kind not in "US":
            values = values.astype(str)
        if len(values) == 0:
            return np.empty(0, dtype=np.int64)
        if len(values) <= _FEW:  # a user's few ids: dict lookups beat an index query's set-up
            positions = self._positions
            out = np.array([positions.get(v, -1) for v in values.tolist()], dtype=np.int64)
        else:
            out = self._index.get_indexer(values).astype(np.int64, copy=False)
        if missing == "raise":
            bad = np.flatnonzero(out < 0)
            if len(bad):
                raise UnknownIdError(f"unknown {self.kind} id {values[bad[0]].item()!r}")
        elif missing != "mask":
            raise ValueError(f"missing must be 'raise' or 'mask', got {missing!r}")
        return out

    def __getstate__(self) -> dict[str, Any]:
        # a pickled vocabulary (sent to another process) leaves its lookup, built again on use
        return {key: value for key, value in self.__dict__.items() if key != "_positions"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # pandas sets an index's lookup up on first use, and not safely from several threads at
        # once: an unpickled index first asked by two threads (recommend-all's workers) raised
        # "Reindexing only valid with uniquely valued Index objects". Set it up here, as __init__ does.
        _ = self._index.is_unique

    @cached_property
    def _positions(self) -> dict[Any, int]:
        """Raw id (a Python int or str) -> index, built on first use."""
        return dict(zip(self.ids.tolist(), range(len(self.ids)), strict=True))

    def id_of(self, index: int) -> Any:
        """The raw id at a dense index, as a Python scalar."""
        return self.ids[index].item()


@dataclass(frozen=True, eq=False)
class Ratings:
    """Immutable user x movie interactions, one row per rating, rows in their original (file) order.

    Attributes:
        users, items: vocabularies translating raw ids to the indices used below.
        user_index, item_index: int32 arrays (n,) of dense indices.
        rating: float32 array (n,).
        timestamp: int64 array (n,) of Unix seconds, or None when the data has no times.
        scale: (lowest, highest) rating the scale allows, e.g. (1, 5) or (0.5, 5).

    Build one with `Ratings.from_arrays` or `Ratings.from_frame`; no (user, movie) pair may repeat.
    """

    users: Vocabulary
    items: Vocabulary
    user_index: np.ndarray
    item_index: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray | None = None
    scale: tuple[float, float] = (0.5, 5.0)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.user_index)
        arrays = {"item_index": self.item_index, "rating": self.rating}
        if self.timestamp is not None:
            arrays["timestamp"] = self.timestamp
        for name, array in arrays.items():
            if len(array) != n:
                raise DataError(f"{name} has {len(array)} rows, expected {n} like user_index")
        object.__setattr__(self, "user_index", _readonly(np.asarray(self.user_index, np.int32)))
        object.__setattr__(self, "item_index", _readonly(np.asarray(self.item_index, np.int32)))
        object.__setattr__(self, "rating", _readonly(np.asarray(self.rating, np.float32)))
        if self.timestamp is not None:
            object.__setattr__(self, "timestamp", _readonly(np.asarray(self.timestamp, np.int64)))
        low, high = (float(self.scale[0]), float(self.scale[1]))
        if not low < high:
            raise DataError(f"rating scale must have low < high, got {self.scale}")
        object.__setattr__(self, "scale", (low, high))
        if n:
            if self.user_index.min() < 0 or self.user_index.max() >= len(self.users):
                raise DataError("user_index out of range of the user vocabulary")
            if self.item_index.min() < 0 or self.item_index.max() >= len(self.items):
                raise DataError("item_index out of range of the movie vocabulary")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        user_ids: Sequence[Any] | np.ndarray,
        item_ids: Sequence[Any] | np.ndarray,
        ratings: Sequence[float] | np.ndarray,
        timestamps: Sequence[int] | np.ndarray | None = None,
        *,
        scale: tuple[float, float] | None = None,
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
    ) -> Ratings:
        """Ratings from raw-id arrays, in the given row order.

        Args:
            user_ids, item_ids: raw ids per row.
            ratings: rating per row.
            timestamps: Unix seconds per row, or None.
            scale: the rating scale; inferred from the data (0.5 steps -> (0.5, 5) style) if None.
            users, items: vocabularies to use; built from the ids (sorted) if None.

        Raises:
            DataError: on ragged arrays, NaN ratings, or ratings outside ``scale``.
            UnknownIdError: if ``users``/``items`` are given and lack an id.
        """
        if users is None:
            users, user_index = _encode(user_ids, "user")
        else:
            user_index = users.indices(user_ids)
        if items is None:
            items, item_index = _encode(item_ids, "movie")
        else:
            item_index = items.indices(item_ids)
        rating = np.asarray(ratings, dtype=np.float32)
        if np.isnan(rating).any():
            raise DataError("ratings contain NaN")
        if scale is None:
            scale = infer_scale(rating)
        elif len(rating) and (rating.min() < scale[0] or rating.max() > scale[1]):
            raise DataError(
                f"ratings must lie in the scale {scale}, got {rating.min()}..{rating.max()}"
            )
        return cls(
            users=users,
            items=items,
            user_index=user_index,
            item_index=item_index,
            rating=rating,
            timestamp=None if timestamps is None else np.asarray(timestamps, np.int64),
            scale=scale,
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, **kwargs: Any) -> Ratings:
        """Ratings from a frame with columns user, item, rating and optionally timestamp."""
        missing = {"user", "item", "rating"} - set(frame.columns)
        if missing:
            raise DataError(f"ratings frame lacks columns {sorted(missing)}")
        timestamps = frame["timestamp"].to_numpy() if "timestamp" in frame else None
        return cls.from_arrays(
            frame["user"].to_numpy(),
            frame["item"].to_numpy(),
            frame["rating"].to_numpy(),
            timestamps,
            **kwargs,
        )

    # -- views --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.user_index)

    def __repr__(self) -> str:
        return (
            f"Ratings(n={len(self):,}, users={self.n_users:,}, movies={self.n_items:,}, "
            f"scale={self.scale})"
        )

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def user_ids(self) -> np.ndarray:
        """Raw user id of every row."""
        return self.users.ids[self.user_index]

    @property
    def item_ids(self) -> np.ndarray:
        """Raw movie id of every row."""
        return self.items.ids[self.item_index]

    @property
    def csr(self) -> sp.csr_matrix:
        """users x movies matrix of ratings (float32), built once.

        Raises:
            DataError: if a (user, movie) pair occurs more than once.
        """
        if "csr" not in self._cache:
            matrix = sp.csr_matrix(
                (self.rating, (self.user_index, self.item_index)),
                shape=(self.n_users, self.n_items),
                dtype=np.float32,
            )
            matrix.sum_duplicates()
            if matrix.nnz != len(self):
                raise DataError(
                    f"{len(self) - matrix.nnz} (user, movie) pairs occur more than once"
                )
            matrix.sort_indices()
            self._cache["csr"] = matrix
        return self._cache["csr"]

    @property
    def user_counts(self) -> np.ndarray:
        """Ratings per user index (int64, length n_users)."""
        return np.bincount(self.user_index, minlength=self.n_users)

    @property
    def item_counts(self) -> np.ndarray:
        """Ratings per movie index (int64, length n_items)."""
        return np.bincount(self.item_index, minlength=self.n_items)

    def to_frame(self) -> pd.DataFrame:
        """Rows as a frame of raw ids: user, item, rating (and timestamp)."""
        columns: dict[str, Any] = {
            "user": self.user_ids,
            "item": self.item_ids,
            "rating": self.rating,
        }
        if self.timestamp is not None:
            columns["timestamp"] = self.timestamp
        return pd.DataFrame(columns)

    def take(self, rows: np.ndarray, *, reindex: bool = True) -> Ratings:
        """The ratings at ``rows`` (positions or a boolean mask), in the order given.

        With ``reindex=True`` the vocabularies shrink to the ids that remain (what a model trained on
        the subset may know); otherwise they are kept, so indices stay comparable with ``self``.
        """
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        user_index = self.user_index[rows]
        item_index = self.item_index[rows]
        users, items = self.users, self.items
        if reindex:
            kept_users, user_index = _encode(user_index, self.users.kind)
            kept_items, item_index = _encode(item_index, self.items.kind)
            users = Vocabulary(self.users.ids[kept_users.ids], self.users.kind)
            items = Vocabulary(self.items.ids[kept_items.ids], self.items.kind)
        return Ratings(
            users=users,
            items=items,
            user_index=user_index,
            item_index=item_index,
            rating=self.rating[rows],
            timestamp=None if self.timestamp is None else self.timestamp[rows],
            scale=self.scale,
        )

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the rows' raw ids, ratings and timestamps, in row order.

        Two `Ratings` with the same rows in the same order have the same fingerprint, whatever
        their vocabularies; an artifact records it so a model can name the data it was trained on.
        """
        if "fingerprint" not in self._cache:
            digest = hashlib.sha256()
            step = 1 << 22  # raw ids a block at a time: no n-row temporary for tens of millions
            for vocab, index in ((self.users, self.user_index), (self.items, self.item_index)):
                digest.update(vocab.ids.dtype.str.encode())
                for start in range(0, len(index), step):
                    block = vocab.ids[index[start : start + step]]
                    digest.update(np.ascontiguousarray(block).tobytes())
            # the columns' own memory, not a copy (tobytes would double a 32M-row column)
            digest.update(memoryview(self.rating).cast("B"))
            if self.timestamp is not None:
                digest.update(memoryview(self.timestamp).cast("B"))
            digest.update(repr(self.scale).encode())
            self._cache["fingerprint"] = digest.hexdigest()
        return self._cache["fingerprint"]

    def describe(self) -> dict[str, Any]:
        """Summary figures: counts, density, scale, rating levels and time span."""
        levels, counts = np.unique(self.rating, return_counts=True)
        info: dict[str, Any] = {
            "ratings": len(self),
            "users": self.n_users,
            "movies": self.n_items,
            "density": len(self) / max(1, self.n_users * self.n_items),
            "scale": list(self.scale),
            "mean_rating": float(self.rating.mean()) if len(self) else math.nan,
            "rating_counts": {f"{lv:g}": int(c) for lv, c in zip(levels, counts, strict=True)},
        }
        if self.timestamp is not None and len(self):
            first, last = self.timestamp.min(), self.timestamp.max()
            info["first_rating"] = pd.Timestamp(first, unit="s").isoformat()
            info["last_rating"] = pd.Timestamp(last, unit="s").isoformat()
        return info


def _encode(values: Sequence[Any] | np.ndarray, kind: str) -> tuple[Vocabulary, np.ndarray]:
    """The sorted vocabulary of ``values`` and each value's index in it.

    Integer ids in a compact range (MovieLens, synthetic data) take an O(n) lookup table instead of a
    sort: this is what makes loading tens of millions of ratings take seconds.
    """
    array = np.asarray(values)
    if array.dtype.kind in "iu" and len(array):
        low, high = int(array.min()), int(array.max())
        if high - low <= 4 * len(array) + 1_000_000:
            present = np.zeros(high - low + 1, dtype=bool)
            present[array - low] = True
            # int32 positions where they fit (what `Ratings` keeps): no int64 copy of every value
            position = np.cumsum(present, dtype=np.int32 if len(present) < 2**31 else np.int64) - 1
            ids = np.flatnonzero(present).astype(np.int64) + low
            return Vocabulary(ids, kind), position[array - low]
    if array.dtype.kind not in "iuU":
        array = array.astype(str)
    # Sort and compare neighbours: numpy 2.4's np.unique hashes and is many times slower here.
    order = stable_argsort(array)
    ordered = array[order]
    first = np.ones(len(array), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    index = np.empty(len(array), dtype=np.int64)
    index[order] = np.cumsum(first) - 1
    return Vocabulary(ordered[first], kind), index


def infer_scale(rating: np.ndarray) -> tuple[float, float]:
    """The rating scale implied by observed values: half-star data -> (0.5, 5), else (min, max).

    Whole-star data on 1..5 gives (1, 5); anything else spans its observed range.
    """
    if len(rating) == 0:
        return (0.5, 5.0)
    low, high = float(rating.min()), float(rating.max())
    halves = np.any(rating != np.round(rating))
    if halves and low >= 0.5 and high <= 5:
        return (0.5, 5.0)
    if low >= 1 and high <= 5:
        return (1.0, 5.0)
    if low == high:
        return (low - 1.0, high)
    return (low, high)


_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[-–]\d{0,4})?\)\s*$", re.DOTALL)


def split_title_year(raw: str) -> tuple[str, int | None]:
    """Split a MovieLens title into (title, year): "Heat (1995)" -> ("Heat", 1995).

    Titles without a trailing year in parentheses keep their text and get None.
    """
    text = (raw or "").strip()
    match = _YEAR.match(text)
    if match is None:
        return text, None
    return match.group("title").strip(), int(match.group("year"))


_CATALOG_COLUMNS = ("item", "title", "year", "genres")


class Catalog:
    """The movies: id -> title, year, genres, and where known tags and external links.

    Args:
        movies: frame with columns item (raw movie id, unique), title (str), year (nullable int),
            genres (list of str per movie); optional: tags (list of str), imdb_id, tmdb_id.

    Raises:
        DataError: on missing columns or duplicate movie ids.
    """

    def __init__(self, movies: pd.DataFrame) -> None:
        missing = set(_CATALOG_COLUMNS) - set(movies.columns)
        if missing:
            raise DataError(f"movies frame lacks columns {sorted(missing)}")
        frame = movies.reset_index(drop=True).copy()
        frame["year"] = frame["year"].astype("Int64")
        frame["genres"] = [list(g) if g is not None else [] for g in frame["genres"]]
        if "tags" in frame:
            frame["tags"] = [list(t) if t is not None else [] for t in frame["tags"]]
        self.items = Vocabulary(frame["item"].to_numpy(), "movie")
        self.frame: pd.DataFrame = frame

    def __len__(self) -> int:
        return len(self.frame)

    def __contains__(self, item: Any) -> bool:
        return item in self.items

    def __repr__(self) -> str:
        return f"Catalog(movies={len(self):,}, genres={len(self.genres)})"

    @cached_property
    def genres(self) -> list[str]:
        """Every genre named in the catalog, sorted ("(no genres listed)" excluded)."""
        names = {g for gs in self.frame["genres"] for g in gs}
        names.discard("(no genres listed)")
        return sorted(names)

    def get(self, item: Any) -> dict[str, Any]:
        """One movie as a plain dict (item, title, year, genres, ...).

        Raises:
            UnknownIdError: if the movie is not in the catalog.
        """
        row = self.frame.iloc[self.items.index(item)]
        record = {key: _plain(value) for key, value in row.items()}
        return record

    def rows(self, items: Sequence[Any] | np.ndarray) -> pd.DataFrame:
        """The catalog rows of many movies, in the order given; unknown movies get a placeholder."""
        positions = self.items.indices(np.asarray(items), missing="mask")
        known = positions >= 0
        frame = self.frame.iloc[np.where(known, positions, 0)].reset_index(drop=True).copy()
        if not known.all():
            frame.loc[~known, "item"] = np.asarray(items)[~known]
            frame.loc[~known, "title"] = "(unknown movie)"
            frame.loc[~known, "year"] = pd.NA
            frame.loc[~known, "genres"] = pd.Series([[] for _ in range(int((~known).sum()))],
                                                    index=frame.index[~known])
        return frame

    def search(self, query: str, limit: int = 10) -> pd.DataFrame:
        """Movies whose title matches ``query``: all words present (case-insensitive), best first.

        A four-digit word also matches the year. Exact title matches rank first, then titles that
        start with the query, then the rest by title length.
        """
        words = [w for w in re.split(r"\s+", query.lower().strip()) if w]
        if not words:
            return self.frame.iloc[0:0]
        titles = self.frame["title"].str.lower()
        years = self.frame["year"].astype("string").fillna("")
        mask = np.ones(len(self.frame), dtype=bool)
        for word in words:
            hit = titles.str.contains(word, regex=False).to_numpy()
            if word.isdigit() and len(word) == 4:
                hit = hit | (years == word).to_numpy(dtype=bool)
            mask &= hit
        found = self.frame[mask]
        phrase = " ".join(w for w in words if not (w.isdigit() and len(w) == 4))
        title_lower = found["title"].str.lower()
        rank = np.where(title_lower == phrase, 0, np.where(title_lower.str.startswith(phrase), 1, 2))
        order = np.lexsort((found["title"].str.len().to_numpy(), rank))
        return found.iloc[order[:limit]]

    def genre_matrix(self, items: Sequence[Any] | np.ndarray | Vocabulary) -> sp.csr_matrix:
        """Binary movies x genres matrix (float32) for the given movies, columns in `genres` order.

        Movies absent from the catalog get an empty row.
        """
        ids = items.ids if isinstance(items, Vocabulary) else np.asarray(items)
        positions = self.items.indices(ids, missing="mask")
        column = {g: j for j, g in enumerate(self.genres)}
        genre_lists = self.frame["genres"].to_numpy()
        rows, cols = [], []
        for row, position in enumerate(positions):
            if position < 0:
                continue
            for genre in genre_lists[position]:
                j = column.get(genre)
                if j is not None:
                    rows.append(row)
                    cols.append(j)
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(ids), len(self.genres)))


def _plain(value: Any) -> Any:
    """Numpy/pandas scalars -> Python values, missing -> None (for JSON)."""
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


class Users:
    """Demographics of users where the data has them (ml-100k, ml-1m): age, gender, occupation, zip.

    Args:
        frame: frame with column user (raw id, unique) and any demographic columns.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        if "user" not in frame:
            raise DataError("users frame lacks the column 'user'")
        self.frame = frame.reset_index(drop=True)
        self.ids = Vocabulary(self.frame["user"].to_numpy(), "user")

    def __len__(self) -> int:
        return len(self.frame)

    def get(self, user: Any) -> dict[str, Any]:
        """One user's demographics as a dict. Raises UnknownIdError if absent."""
        row = self.frame.iloc[self.ids.index(user)]
        return {key: _plain(value) for key, value in row.items()}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: ratings, the movie catalog, demographics if any, canonical folds if any.

    Attributes:
        name: registry name (``ml-100k``) or the path of the user's own file.
        ratings: every rating, in file order.
        catalog: the movies (possibly only ids, for a ratings file without a movies file).
        users: demographics, or None.
        folds: canonical folds by name (``u1``..``u5``, ``ua``, ``ub``): a boolean mask over
            ``ratings`` rows that is True for the fold's test rows.
    """

    name: str
    ratings: Ratings
    catalog: Catalog
    users: Users | None = None
    folds: dict[str, np.ndarray] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {self.ratings!r}, {self.catalog!r})"
