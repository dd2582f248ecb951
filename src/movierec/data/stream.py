"""Streaming ratings reader: a text (CSV, TSV, ``::``) or Parquet ratings file into `Ratings` in blocks.

Tens of millions of ratings must load in memory near the size of the final columns (int32 user and
movie indices, float32 ratings, int64 timestamps: 20 bytes a row). So the file is never held whole:
pyarrow's streaming CSV reader hands over blocks of rows, an incremental `IdEncoder` turns each block's
raw ids into provisional codes, and the columns fill preallocated buffers. At the end the codes are
renumbered in place so that indices follow sorted raw ids, as `Vocabulary` promises.

Errors name the file, the line and what the line should look like: pyarrow reports a bad block
without a line number, so the block is scanned again line by line (only on that failure path) to find
the first line that breaks the format.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from movierec._arrays import stable_argsort
from movierec.data.dataset import Ratings, Vocabulary, infer_scale
from movierec.errors import DataError

__all__ = ["IdEncoder", "TextFormat", "ratings_from_batches", "read_ratings_text"]

log = logging.getLogger(__name__)

Opener = Callable[[], IO[bytes]]
#: ``progress(description, done_bytes, total_bytes_or_None)``.
Progress = Callable[[str, int, int | None], None]

_BLOCK = 1 << 20  # bytes pyarrow parses at once: bounds the working memory beside the columns
_TABLE_LIMIT = 1 << 24  # integer ids spanning more than this use a hash index, not a lookup table
_ROLES = ("user", "item", "rating", "timestamp")


class _TextIds(Exception):
    """Internal: a column read as integers holds text; the reader restarts reading it as text."""

    def __init__(self, role: str) -> None:
        super().__init__(role)
        self.role = role


class IdEncoder:
    """Raw ids -> dense codes, block by block; `finish` renumbers them to sorted-id order.

    Integer ids in a compact range use a lookup table (O(n), no hashing); other ids (text, or
    integers spread over a huge range) use a pandas hash index. Codes are provisional (first-seen
    order) until `finish`, which returns the sorted `Vocabulary` and the map provisional -> final.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._low = 0
        self._table: np.ndarray | None = None  # code of id (low + i), -1 if unseen
        self._index: pd.Index | None = None  # hash mode: ids in code order
        self._new: list[np.ndarray] = []  # table mode: ids in code order, block by block
        self.count = 0

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Provisional int32 codes of ``values`` (a block of raw ids)."""
        if len(values) == 0:
            return np.empty(0, dtype=np.int32)
        if self._index is None and values.dtype.kind in "iu":
            codes = self._encode_table(values.astype(np.int64, copy=False))
            if codes is not None:
                return codes
        return self._encode_index(values)

    def _encode_table(self, values: np.ndarray) -> np.ndarray | None:
        low, high = int(values.min()), int(values.max())
        if self._table is not None:
            low, high = min(low, self._low), max(high, self._low + len(self._table) - 1)
        if high - low + 1 > _TABLE_LIMIT:
            self._to_index()
            return None
        if self._table is None or low < self._low or high >= self._low + len(self._table):
            table = np.full(high - low + 1, -1, dtype=np.int32)
            if self._table is not None:
                table[self._low - low : self._low - low + len(self._table)] = self._table
            self._table, self._low = table, low
        offset = values - self._low
        codes = self._table[offset]
        unseen = codes < 0
        if unseen.any():
            fresh = np.unique(offset[unseen])
            self._table[fresh] = np.arange(self.count, self.count + len(fresh), dtype=np.int32)
            self._new.append(fresh + self._low)
            self.count += len(fresh)
            codes[unseen] = self._table[offset[unseen]]
        return codes

    def _to_index(self) -> None:
        ids = np.concatenate(self._new) if self._new else np.empty(0, dtype=np.int64)
        self._index = pd.Index(ids)
        self._table, self._new = None, []

    def _encode_index(self, values: np.ndarray) -> np.ndarray:
        if self._index is None:
            self._to_index()
        assert self._index is not None
        if values.dtype.kind not in "iu":
            values = values.astype(str)
            if len(self._index) and self._index.dtype.kind in "iu":
                raise DataError(f"{self.kind} ids mix numbers and text")
        codes = self._index.get_indexer(values)
        unseen = codes < 0
        if unseen.any():
            fresh = pd.unique(values[unseen])
            self._index = self._index.append(pd.Index(fresh))
            self.count = len(self._index)
            codes[unseen] = self._index.get_indexer(values[unseen])
        return codes.astype(np.int32)

    def finish(self) -> tuple[Vocabulary, np.ndarray]:
        """The sorted vocabulary, and ``rank`` with ``rank[provisional code] = final index``."""
        if self._index is not None:
            ids = self._index.to_numpy()
            if ids.dtype.kind not in "iu":
                ids = ids.astype(str)
        elif self._new:
            ids = np.concatenate(self._new)
        else:
            ids = np.empty(0, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        rank = np.empty(len(ids), dtype=np.int32)
        rank[order] = np.arange(len(ids), dtype=np.int32)
        return Vocabulary(ids[order], self.kind), rank


class _Buffer:
    """A column filled block by block: preallocated from a row estimate, grown if it was short."""

    def __init__(self, dtype: Any, capacity: int) -> None:
        self.data = np.empty(max(capacity, 16), dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self.data):
            grown = np.empty(max(end, int(len(self.data) * 1.5)), dtype=self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = values
        self.size = end

    def view(self) -> np.ndarray:
        """The filled part; spare capacity is handed back first (a realloc, usually no copy)."""
        if len(self.data) > self.size:
            try:
                self.data.resize((self.size,), refcheck=False)
            except ValueError:  # something else holds the array: keep the spare room
                return self.data[: self.size]
        return self.data


@dataclass(frozen=True)
class TextFormat:
    """How a ratings text file is laid out.

    Attributes:
        sep: the field separator as written (``","``, ``"\\t"``, ``"::"``).
        fields: number of fields on every line.
        positions: role (user, item, rating, timestamp) -> field position; timestamp optional.
        header: whether the first line is a header.
        expected: the line format for messages, e.g. ``"userId,movieId,rating,timestamp"``.
        quoted: whether fields may be quoted (CSV).
        header_names: the header the file must have, if it is fixed (MovieLens CSV).
    """

    sep: str
    fields: int
    positions: dict[str, int]
    header: bool
    expected: str
    quoted: bool = False
    header_names: tuple[str, ...] | None = None

    @property
    def _columns(self) -> tuple[str, list[str], dict[str, int]]:
        """(pyarrow delimiter, column names, role -> pyarrow column) for this layout."""
        if self.sep == "::":  # read on ":", so every other column must be empty
            names = [f"f{i}" for i in range(2 * self.fields - 1)]
            return ":", names, {role: 2 * p for role, p in self.positions.items()}
        return self.sep, [f"f{i}" for i in range(self.fields)], dict(self.positions)


def _bad_ratings(values: np.ndarray, scale: tuple[float, float] | None) -> np.ndarray | None:
    """Row mask of ratings that are not finite or off ``scale`` (None when all are fine)."""
    bad = ~np.isfinite(values)
    if scale is not None:
        bad |= (values < scale[0]) | (values > scale[1])
    return bad if bad.any() else None


def _describe_rating_problem(value: float, scale: tuple[float, float] | None) -> str:
    if not math.isfinite(value):
        return f"rating must be a finite number, got {value!r}"
    assert scale is not None
    return f"rating must lie in {scale[0]:g}..{scale[1]:g}, got {value:g}"


class _Counting(io.RawIOBase):
    """A read-only stream that counts the bytes read and reports them."""

    def __init__(self, raw: IO[bytes], report: Callable[[int], None] | None) -> None:
        self.raw, self.done, self.report = raw, 0, report

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.done += n
        if self.report is not None and n:
            self.report(self.done)
        return n


def _count_rows(opener: Opener, header: bool) -> int:
    """Rows to preallocate for: the file's line count (one fast pass, no parsing).

    Counting first costs a pass over the bytes (a few seconds for ml-32m's 850 MB), and saves
    guessing: the columns are allocated once, at their final size, never grown or over-sized.
    """
    lines, last = 0, b"\n"
    with opener() as handle:
        while block := handle.read(1 << 22):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"  # a last line without its line end
    return max(lines - (1 if header else 0), 0)


def read_ratings_text(
    opener: Opener,
    fmt: TextFormat,
    *,
    label: str,
    size: int | None = None,
    scale: tuple[float, float] | None = None,
    adaptive: bool = False,
    progress: Progress | None = None,
) -> Ratings:
    """Read a ratings text file in blocks into `Ratings` (rows in file order).

    Args:
        opener: opens the file (a file or an archive member) as a fresh binary stream; called again
            to locate a bad line or, with ``adaptive``, to reread ids as text.
        fmt: the layout.
        label: names the file in messages (``ml-32m.zip:ml-32m/ratings.csv``).
        size: the file's bytes, the total reported to ``progress`` (None: unknown).
        scale: the rating scale every value must lie in; inferred from the values if None.
        adaptive: ids that are not all integers are read as text (a user's own file); otherwise
            every id must be an integer (MovieLens).
        progress: called with bytes read so far.

    Raises:
        DataError: ``label:line: what is wrong, expected <format>`` for the first bad line (too few
            or many fields, a non-numeric id or rating, an empty field, a rating off the scale or
            not finite), or for an empty file.
    """
    if fmt.header_names is not None:
        with opener() as handle:
            first = handle.readline(4096)
        try:
            found = tuple(
                f.strip().strip('"') for f in first.decode("utf-8").strip().split(fmt.sep)
            )
        except UnicodeDecodeError:
            found = ()
        if not first.strip():
            raise DataError(f"{label}: no ratings in the file, expected {fmt.expected}")
        if found != fmt.header_names:
            shown = _show(first.rstrip(b"\r\n"))
            raise DataError(
                f"{label}:1: header is {shown}, "
                f"expected {fmt.sep.join(fmt.header_names)}"
            )
    text_roles: set[str] = set()
    while True:
        try:
            return _read_text(opener, fmt, label, size, scale, text_roles, adaptive, progress)
        except _TextIds as restart:
            text_roles.add(restart.role)
            log.info("%s: %s ids are not all integers; reading them as text", label, restart.role)


def _read_text(
    opener: Opener,
    fmt: TextFormat,
    label: str,
    size: int | None,
    scale: tuple[float, float] | None,
    text_roles: set[str],
    adaptive: bool,
    progress: Progress | None,
) -> Ratings:
    delimiter, names, columns = fmt._columns
    types: dict[str, Any] = {}
    for name in names:
        types[name] = pa.null()  # every other column of a "::" file: must be empty
    for role, column in columns.items():
        kind = {"user": pa.int64(), "item": pa.int64(), "rating": pa.float64(),
                "timestamp": pa.int64()}[role]
        types[names[column]] = pa.string() if role in text_roles else kind
    included = [names[c] for c in sorted(set(columns.values()) | _empty_columns(fmt, names))]
    read_options = pacsv.ReadOptions(
        column_names=names, skip_rows=1 if fmt.header else 0, block_size=_BLOCK, use_threads=True
    )
    parse_options = pacsv.ParseOptions(
        delimiter=delimiter, quote_char='"' if fmt.quoted else False, ignore_empty_lines=False
    )
    convert_options = pacsv.ConvertOptions(
        column_types={n: types[n] for n in included}, include_columns=included,
        null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True,
    )
    estimate = _count_rows(opener, fmt.header)
    batches = _batches(opener, read_options, parse_options, convert_options, label, fmt, scale,
                       size, progress, text_roles if adaptive else None)
    return ratings_from_batches(
        batches, label=label, estimate=estimate, scale=scale, text_roles=text_roles,
        locate=lambda row: _line_of(fmt, row), line_text=lambda line: _line_text(opener, line),
        expected=fmt.expected, names={role: names[c] for role, c in columns.items()},
    )


def _empty_columns(fmt: TextFormat, names: list[str]) -> set[int]:
    return set(range(1, len(names), 2)) if fmt.sep == "::" else set()


def _line_of(fmt: TextFormat, row: int) -> int:
    return row + 1 + (1 if fmt.header else 0)


def _batches(
    opener: Opener,
    read_options: pacsv.ReadOptions,
    parse_options: pacsv.ParseOptions,
    convert_options: pacsv.ConvertOptions,
    label: str,
    fmt: TextFormat,
    scale: tuple[float, float] | None,
    size: int | None,
    progress: Progress | None,
    text_roles: set[str] | None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of the file; ``text_roles`` is None for a strict read (ids must be integers),
    else the roles already read as text (an integer column holding text restarts the read)."""
    report = None if progress is None else (lambda done: progress(f"read {label}", done, size))
    rows = 0
    with opener() as raw:
        stream = io.BufferedReader(_Counting(raw, report), buffer_size=1 << 20)
        try:
            reader = pacsv.open_csv(stream, read_options=read_options,
                                    parse_options=parse_options, convert_options=convert_options)
            for batch in reader:
                yield batch
                rows += batch.num_rows
        except pa.ArrowInvalid as exc:
            message = str(exc)
            if "Empty CSV file" in message or (rows == 0 and "no columns" in message.lower()):
                raise DataError(f"{label}: no ratings in the file, expected {fmt.expected}") from None
            role = _role_of_conversion_error(message, fmt)
            if text_roles is not None and role in ("user", "item", "timestamp") and (
                "int64" in message
            ):
                raise _TextIds(role) from None  # adaptive: reread that column as text
            _raise_first_bad_line(opener, fmt, label, _line_of(fmt, rows), scale, message,
                                  text_roles or set())
        except (OSError, EOFError, ValueError) as exc:  # a damaged archive member, a bad gzip...
            raise DataError(f"{label}: cannot read ({exc})") from None


def _role_of_conversion_error(message: str, fmt: TextFormat) -> str | None:
    if "In CSV column #" not in message:
        return None
    try:
        column = int(message.split("In CSV column #", 1)[1].split(":", 1)[0])
    except ValueError:
        return None
    _, _, columns = fmt._columns
    return next((role for role, c in columns.items() if c == column), None)


def _raise_first_bad_line(
    opener: Opener,
    fmt: TextFormat,
    label: str,
    start: int,
    scale: tuple[float, float] | None,
    message: str,
    text_roles: set[str],
) -> None:
    """Scan from line ``start`` for the first line that breaks ``fmt``; raise a DataError on it."""
    with opener() as handle:
        for number, raw in enumerate(_lines_from(handle, start), start):
            problem = _line_problem(raw, fmt, scale, text_roles)
            if problem is not None:
                raise DataError(
                    f"{label}:{number}: {problem}; expected {fmt.expected}, got {_show(raw)}"
                )
    # pyarrow saw something the line check does not (say, a quote that never closes)
    detail = message.strip().splitlines()[0] if message.strip() else "unreadable"
    raise DataError(f"{label}: at or after line {start}: {detail}; expected {fmt.expected}")


def _lines_from(handle: IO[bytes], start: int) -> Iterator[bytes]:
    """The lines of ``handle`` from 1-based line ``start`` on, without their line ends."""
    line = 1
    tail = b""
    while line < start:
        block = handle.read(1 << 20)
        if not block:
            return
        block = tail + block
        breaks = block.count(b"\n")
        if line + breaks < start:
            line += breaks
            tail = block[block.rfind(b"\n") + 1 :] if breaks else block
            continue
        position = -1
        for _ in range(start - line):
            position = block.index(b"\n", position + 1)
        line = start
        tail = block[position + 1 :]
    rest = io.BufferedReader(_Prefixed(tail, handle))  # type: ignore[arg-type]
    for raw in rest:
        yield raw.rstrip(b"\n").rstrip(b"\r")


class _Prefixed(io.RawIOBase):
    def __init__(self, prefix: bytes, handle: IO[bytes]) -> None:
        self.prefix, self.handle = prefix, handle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.prefix[: len(buffer)] if self.prefix else self.handle.read(len(buffer))
        self.prefix = self.prefix[len(data) :]
        buffer[: len(data)] = data
        return len(data)


def _line_text(opener: Opener, line: int) -> bytes:
    with opener() as handle:
        return next(iter(_lines_from(handle, line)), b"")


def _show(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="backslashreplace")
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _line_problem(
    raw: bytes, fmt: TextFormat, scale: tuple[float, float] | None, text_roles: set[str]
) -> str | None:
    """What is wrong with one line, or None. Mirrors the rules the fast reader applies."""
    if not raw.strip():
        return "empty line"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    if fmt.quoted and '"' in text:
        import csv

        fields = next(csv.reader([text], delimiter=fmt.sep))
    else:
        fields = text.split(fmt.sep)
    if len(fields) != fmt.fields:
        return f"{len(fields)} field{'s' if len(fields) != 1 else ''}"
    for role, position in fmt.positions.items():
        value = fields[position].strip()
        if not value:
            return f"empty {role}"
        if role in text_roles:
            continue
        if role in ("user", "item", "timestamp"):
            try:
                int(value)
            except ValueError:
                return f"{role} is not an integer ({value!r})"
        else:
            try:
                number = float(value)
            except ValueError:
                return f"rating is not a number ({value!r})"
            if not math.isfinite(number) or (
                scale is not None and not scale[0] <= number <= scale[1]
            ):
                return _describe_rating_problem(number, scale)
    return None


def ratings_from_batches(
    batches: Iterator[pa.RecordBatch],
    *,
    label: str,
    estimate: int,
    scale: tuple[float, float] | None,
    names: dict[str, str],
    locate: Callable[[int], int] | None = None,
    line_text: Callable[[int], bytes] | None = None,
    expected: str = "",
    text_roles: set[str] | frozenset[str] = frozenset(),
) -> Ratings:
    """`Ratings` from record batches whose columns ``names[role]`` hold raw ids, ratings, times.

    ``locate(row)`` turns a 0-based data row into a line number for messages (None: rows are
    reported as ``row N``); ``line_text(line)`` fetches the line to quote.

    Raises:
        DataError: for an empty field, a non-finite or off-scale rating, no rows at all.
    """
    encoders = {"user": IdEncoder("user"), "item": IdEncoder("movie")}
    has_time = "timestamp" in names
    buffers = {
        "user": _Buffer(np.int32, estimate),
        "item": _Buffer(np.int32, estimate),
        "rating": _Buffer(np.float32, estimate),
    }
    if has_time:
        buffers["timestamp"] = _Buffer(np.int64, estimate)
    rows = 0

    def fail(row: int, problem: str) -> None:
        if locate is None:
            raise DataError(f"{label}: row {row + 1}: {problem}")
        line = locate(row)
        shown = ""
        if line_text is not None:
            raw = line_text(line)
            problem = "empty line" if not raw.strip() else problem
            shown = f", got {_show(raw)}"
        tail = f"; expected {expected}" if expected else ""
        raise DataError(f"{label}:{line}: {problem}{tail}{shown}")

    for batch in batches:
        n = batch.num_rows
        if n == 0:
            continue
        for role in _ROLES:
            if role not in names:
                continue
            column = batch.column(batch.schema.get_field_index(names[role]))
            if column.null_count:
                fail(rows + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0]),
                     f"empty {role}")
            if role in ("user", "item"):
                values = column.to_numpy(zero_copy_only=False)
                if values.dtype.kind == "f":  # Parquet ids stored as floats: whole numbers only
                    if not np.array_equal(values, np.round(values)):
                        fail(rows + int(np.flatnonzero(values != np.round(values))[0]),
                             f"{role} id is not a whole number")
                    values = values.astype(np.int64)
                elif values.dtype.kind == "O":
                    values = values.astype(str)
                    values = np.char.strip(values)
                    if role in text_roles:
                        blank = values == ""
                        if blank.any():
                            fail(rows + int(np.flatnonzero(blank)[0]), f"empty {role}")
                buffers[role].extend(encoders[role].encode(values))
            elif role == "rating":
                values = column.to_numpy(zero_copy_only=False)
                if values.dtype.kind not in "fiu":
                    kind = "text" if pa.types.is_string(column.type) or pa.types.is_large_string(
                        column.type) else str(column.type)  # pandas 3 writes large_string
                    raise DataError(f"{label}: the rating column holds {kind}, not numbers")
                values = values.astype(np.float64, copy=False)
                bad = _bad_ratings(values, scale)
                if bad is not None:
                    first = int(np.flatnonzero(bad)[0])
                    fail(rows + first, _describe_rating_problem(float(values[first]), scale))
                buffers["rating"].extend(values)
            else:
                values = column.to_numpy(zero_copy_only=False)
                if values.dtype.kind not in "iu":
                    values = _times(values, rows, fail)
                buffers["timestamp"].extend(values)
        rows += n
    if rows == 0:
        tail = f", expected {expected}" if expected else ""
        raise DataError(f"{label}: no ratings in the file{tail}")
    pa.default_memory_pool().release_unused()  # the parser's blocks: give them back to the OS
    users, user_rank = encoders["user"].finish()
    items, item_rank = encoders["item"].finish()
    user_index, item_index = buffers["user"].view(), buffers["item"].view()
    step = 1 << 22
    for start in range(0, rows, step):  # renumber in place, a block at a time
        user_index[start : start + step] = user_rank[user_index[start : start + step]]
        item_index[start : start + step] = item_rank[item_index[start : start + step]]
    rating = buffers["rating"].view()
    return Ratings(
        users=users,
        items=items,
        user_index=user_index,
        item_index=item_index,
        rating=rating,
        timestamp=buffers["timestamp"].view() if has_time else None,
        scale=scale if scale is not None else infer_scale(rating),
    )


def _times(values: np.ndarray, rows: int, fail: Callable[[int, str], None]) -> np.ndarray:
    """Text or float timestamps -> int64 Unix seconds (numbers, or dates in any ISO-like form)."""
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            fail(rows + int(np.flatnonzero(~np.isfinite(values))[0]), "timestamp is not finite")
        return values.astype(np.int64)
    if values.dtype.kind == "M":
        return values.astype("datetime64[s]").astype(np.int64)
    text = pd.Series(values.astype(str))
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(np.int64)
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna().to_numpy()
    if bad.any():
        fail(rows + int(np.flatnonzero(bad)[0]), "timestamp is neither Unix seconds nor a date")
    epoch = pd.Timestamp(0, tz="UTC")
    return ((parsed - epoch) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def first_duplicate(ratings: Ratings) -> tuple[int, int] | None:
    """The first repeated (user, movie) pair in file order: (row of its first, row of its repeat).

    MovieLens files are sorted by user then movie, which a block-by-block comparison of neighbours
    confirms in O(n) without extra memory; other orders fall back to a sort. None when every pair
    is distinct.
    """
    n = len(ratings)
    if n < 2:
        return None
    n_items = np.int64(max(ratings.n_items, 1))
    step = 1 << 22
    previous = np.int64(-1)
    ordered = True
    for start in range(0, n, step):
        codes = ratings.user_index[start : start + step].astype(np.int64) * n_items
        codes += ratings.item_index[start : start + step]
        if codes[0] <= previous or np.any(codes[1:] <= codes[:-1]):
            ordered = False
            break
        previous = codes[-1]
    if ordered:
        return None
    codes = ratings.user_index.astype(np.int64) * n_items + ratings.item_index
    order = stable_argsort(codes)
    repeats = np.flatnonzero(codes[order][1:] == codes[order][:-1])
    if not len(repeats):
        return None
    # the earliest repeat in file order, paired with the first row of its pair
    later = order[repeats + 1]
    at = int(np.argmin(later))
    return int(order[repeats[at]]), int(later[at])
