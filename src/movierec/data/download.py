"""Fetch MovieLens archives, verify them, and keep a Parquet cache so the second load is fast.

Cache layout under the data home (``MOVIEREC_DATA``, default: the user's cache folder)::

    downloads/<name>.zip        verified archives, as GroupLens (or the mirror) serves them
    <name>/meta.json            what the cache holds, which archive it came from, and the SHA-256 of
                                every file and every ratings column
    <name>/ratings.parquet      user_index, item_index, rating, timestamp in file order
    <name>/user_ids.parquet     raw user ids in index order (sorted)
    <name>/item_ids.parquet     raw movie ids in index order (sorted)
    <name>/movies.parquet       item, title, year, genres[, tags, imdb_id, tmdb_id, imdb_url]
    <name>/users.parquet        demographics, where the data has them
    <name>/folds.parquet        canonical folds (ml-100k): one boolean column per fold, True = test

Every write goes to a temporary path first, is fsynced and renamed into place, so an interrupted or
rejected fetch, or a disk that fills, leaves the cache exactly as it was. Reading verifies every file
and column against meta.json (JSON and Parquet only: nothing is unpickled); a cache that fails is
rebuilt from the archive, or refused with one line when it cannot be.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from movierec._files import atomic_file, atomic_folder
from movierec.data.dataset import Catalog, Dataset, Ratings, Users, Vocabulary
from movierec.data.movielens import parse_archive, read_ratings_file
from movierec.data.registry import BASE_URL, VARIANTS, Variant, get_variant
from movierec.errors import ChecksumError, ConfigError, DataError, MovieRecError

__all__ = [
    "CACHE_FORMAT",
    "Progress",
    "data_home",
    "fetch_archive",
    "is_cached",
    "load_dataset",
    "verify_archive",
]

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: indices + vocabularies, checksums of every file and column
_CHUNK = 1 << 20

#: ``progress(description, done_bytes, total_bytes_or_None)``, called as work advances.
Progress = Callable[[str, int, int | None], None]


def data_home(data_dir: str | Path | None = None) -> Path:
    """The cache folder: ``data_dir``, else ``$MOVIEREC_DATA``, else the user's cache folder.

    Nothing is created here; writers create what they need.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("MOVIEREC_DATA")
    if env:
        return Path(env).expanduser()
    import platformdirs  # deferred: only needed when no folder was given

    return Path(platformdirs.user_cache_dir("movierec"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_archive(
    path: str | Path, variant: Variant, md5: str | None = None, label: str | None = None
) -> str:
    """Check that ``path`` is a genuine ``variant`` archive; return how it was verified.

    Accepted, in order: the official archive's SHA-256 (``"sha256"``); a zip whose pinned key members
    all match their SHA-256 (``"members"``, a genuine repack); the MD5 GroupLens publishes, passed as
    ``md5`` (``"md5"``).

    ``label`` names the file in messages (default: its file name).

    Raises:
        ChecksumError: if none of these holds (corrupt, truncated, foreign or unverifiable file).
    """
    path = Path(path)
    label = label or path.name
    if variant.sha256 and _sha256(path) == variant.sha256:
        return "sha256"
    if variant.member_sha256:
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                for member, expected in variant.member_sha256.items():
                    full = f"{variant.folder}/{member}"
                    if full not in names:
                        raise ChecksumError(
                            f"{label} is not a genuine {variant.name} archive: "
                            f"member {full} is missing"
                        )
                    digest = hashlib.sha256()
                    with archive.open(full) as handle:
                        for block in iter(lambda h=handle: h.read(_CHUNK), b""):
                            digest.update(block)
                    if digest.hexdigest() != expected:
                        raise ChecksumError(
                            f"{label} is not a genuine {variant.name} archive: "
                            f"{member} has sha256 {digest.hexdigest()[:16]}..., "
                            f"expected {expected[:16]}..."
                        )
        except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile, zlib.error) as exc:
            raise ChecksumError(
                f"{label} is not a valid {variant.name} archive (truncated or not a zip: {exc})"
            ) from None
        return "members"
    if md5 is not None:
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(block)
        if digest.hexdigest() == md5.strip().lower():
            return "md5"
        raise ChecksumError(
            f"{label} has md5 {digest.hexdigest()}, but GroupLens publishes {md5.strip()}"
        )
    if variant.sha256:
        raise ChecksumError(
            f"{label} does not match the official {variant.name} archive "
            f"(sha256 {_sha256(path)[:16]}..., expected {variant.sha256[:16]}...)"
        )
    raise ChecksumError(
        f"{label}: no checksum is available to verify {variant.name} "
        f"(its .md5 could not be fetched); pass --no-verify to accept it unchecked"
    )


def _source_url(source: str | None, filename: str) -> tuple[str, bool]:
    """Where to read ``filename`` from: (location, is_local_path)."""
    if source is None:
        return BASE_URL + filename, False
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https", "ftp"):
        return source.rstrip("/") + "/" + filename, False
    if parsed.scheme == "file":
        return str(Path(urllib.parse.unquote(parsed.path)) / filename), True
    return str(Path(source).expanduser() / filename), True



def _copy_to(location: str, local: bool, target: Path, what: str, progress: Progress | None) -> None:
    """Copy a local file or URL to ``target`` in chunks, reporting progress.

    Raises:
        DataError: if the source does not exist or cannot be read.
    """
    try:
        if local:
            source_path = Path(location)
            if not source_path.is_file():
                raise DataError(f"{what}: not found at {location}")
            total: int | None = source_path.stat().st_size
            stream: Any = source_path.open("rb")
        else:
            request = urllib.request.Request(location, headers={"User-Agent": "movierec"})
            stream = urllib.request.urlopen(request, timeout=60)
            length = stream.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"{what}: cannot download from {location} ({exc})") from None
    done = 0
    with stream, target.open("wb") as out:
        while True:
            try:
                block = stream.read(_CHUNK)
            except (urllib.error.URLError, OSError) as exc:
                raise DataError(f"{what}: download from {location} failed ({exc})") from None
            if not block:
                break
            out.write(block)
            done += len(block)
            if progress is not None:
                progress(f"fetch {what}", done, total)


def _fetch_md5(variant: Variant, source: str | None) -> str | None:
    location, local = _source_url(source, variant.filename + ".md5")
    try:
        if local:
            text = Path(location).read_text()
        else:
            with urllib.request.urlopen(location, timeout=30) as response:
                text = response.read().decode("ascii", "replace")
    except (OSError, urllib.error.URLError, ValueError):
        return None
    # GroupLens' .md5 files read "MD5 (ml-10m.zip) = <hex>" or "<hex>  ml-10m.zip".
    for token in text.replace("=", " ").split():
        if len(token) == 32 and all(c in "0123456789abcdefABCDEF" for c in token):
            return token
    return None


def fetch_archive(
    name: str,
    *,
    mirror: str | None = None,
    data_dir: str | Path | None = None,
    force: bool = False,
    verify: bool = True,
    progress: Progress | None = None,
) -> Path:
    """Download (or copy from a mirror) a MovieLens archive into the cache and verify it.

    Args:
        name: registry name, e.g. ``ml-latest-small``.
        mirror: a folder or URL holding archives under their official names; defaults to
            ``$MOVIEREC_MIRROR``, then GroupLens.
        data_dir: the data home (see `data_home`).
        force: fetch again even if a verified archive is cached.
        verify: check checksums (see `verify_archive`); False accepts the file unchecked.
        progress: called with bytes done/total.

    Returns:
        The path of the verified archive in the cache.

    Raises:
        ConfigError: unknown name. DataError: unreachable source.
        ChecksumError: the file is not genuine; nothing is left in the cache.
    """
    variant = get_variant(name)
    mirror = mirror if mirror is not None else (os.environ.get("MOVIEREC_MIRROR") or None)
    downloads = data_home(data_dir) / "downloads"
    target = downloads / variant.filename
    if target.is_file() and not force:
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    location, local = _source_url(mirror, variant.filename)
    with atomic_file(target) as temp:
        _copy_to(location, local, temp, variant.filename, progress)
        if verify:
            md5 = None
            if not variant.sha256 and not variant.member_sha256 and variant.md5_published:
                md5 = _fetch_md5(variant, mirror)
            how = verify_archive(temp, variant, md5=md5, label=f"{variant.filename} from {location}")
            log.info("%s verified by %s", variant.filename, how)
        else:
            log.warning("%s accepted without verification", variant.filename)
    return target


def is_cached(name: str, data_dir: str | Path | None = None) -> bool:
    """Whether ``name`` has a complete Parquet cache of the current format (not yet verified)."""
    meta = data_home(data_dir) / name / "meta.json"
    try:
        return json.loads(meta.read_text()).get("format") == CACHE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


_RATING_COLUMNS = {"user_index": np.int32, "item_index": np.int32, "rating": np.float32,
                   "timestamp": np.int64}
_ROW_GROUP = 1 << 20  # rows per Parquet row group: bounds the writer's and reader's buffers


def _digest(array: np.ndarray) -> str:
    """SHA-256 of a column: its dtype, then its bytes (text ids: their UTF-8, NUL-separated)."""
    digest = hashlib.sha256(array.dtype.str.encode() if array.dtype.kind != "U" else b"text")
    if array.dtype.kind == "U":
        digest.update("\0".join(array.tolist()).encode())
    else:
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to the disk, so a crash cannot leave it half there."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _write_columns(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Numeric columns as Parquet, a row group at a time (no copy of the whole column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.from_numpy_dtype(array.dtype)) for name, array in
                        columns.items()])
    n = len(next(iter(columns.values())))
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, max(n, 1), _ROW_GROUP):
            writer.write_table(pa.table(
                {name: pa.array(array[start : start + _ROW_GROUP])
                 for name, array in columns.items()},
                schema=schema,
            ))


def _write_ids(path: Path, ids: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    array = pa.array(ids.tolist(), type=pa.string()) if ids.dtype.kind == "U" else pa.array(ids)
    pq.write_table(pa.table({"id": array}), path, compression="zstd")


def _write_cache(dataset: Dataset, folder: Path, meta: dict[str, Any]) -> None:
    """Write ``dataset`` as Parquet into a temporary sibling of ``folder``, then swap it in.

    Every file is fsynced before the folder is renamed into place, and meta.json records the
    SHA-256 of every file and of every ratings column, so a truncated or altered cache is caught
    when it is read.

    Raises:
        DataError: if the disk fills or refuses the write; the previous cache is left as it was.
    """
    ratings = dataset.ratings
    columns = {"user_index": ratings.user_index, "item_index": ratings.item_index,
               "rating": ratings.rating}
    if ratings.timestamp is not None:
        columns["timestamp"] = ratings.timestamp
    try:
        with atomic_folder(folder) as temp:
            _write_columns(temp / "ratings.parquet", columns)
            _write_ids(temp / "user_ids.parquet", ratings.users.ids)
            _write_ids(temp / "item_ids.parquet", ratings.items.ids)
            dataset.catalog.frame.to_parquet(temp / "movies.parquet", index=False)
            if dataset.users is not None:
                dataset.users.frame.to_parquet(temp / "users.parquet", index=False)
            if dataset.folds:
                pd.DataFrame(dataset.folds).to_parquet(temp / "folds.parquet", index=False)
            files = {}
            for path in sorted(temp.iterdir()):
                _fsync(path)
                files[path.name] = _sha256(path)
            digests = {name: _digest(array) for name, array in columns.items()}
            digests["user_ids"] = _digest(ratings.users.ids)
            digests["item_ids"] = _digest(ratings.items.ids)
            meta = {**meta, "format": CACHE_FORMAT, "rows": len(ratings),
                    "scale": list(ratings.scale), "fingerprint": ratings.fingerprint(),
                    "files": files, "columns": digests}
            (temp / "meta.json").write_text(json.dumps(meta, indent=2))
            _fsync(temp / "meta.json")
            _fsync(temp)
        import pyarrow as pa

        pa.default_memory_pool().release_unused()  # the writer's pages
        _fsync(folder.parent)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DataError(
            f"cannot write the cache {folder} ({reason}); the previous cache, if any, is unchanged"
        ) from None


def _read_cache(folder: Path, name: str) -> Dataset:
    """The cached dataset, verified against the checksums in meta.json (no pickle anywhere).

    Raises:
        DataError: naming the file or column that is missing, truncated or altered.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cache {folder}: meta.json unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise DataError(f"cache {folder}: not a format-{CACHE_FORMAT} cache")
    files, digests = meta.get("files"), meta.get("columns")
    if not isinstance(files, dict) or not isinstance(digests, dict):
        raise DataError(f"cache {folder}: meta.json lacks its checksums")
    present = {p.name for p in folder.iterdir()} - {"meta.json"}
    if present != set(files):
        odd = sorted(present ^ set(files))
        raise DataError(f"cache {folder}: files {odd} missing or unexpected")
    for file, expected in files.items():
        if _sha256(folder / file) != expected:
            raise DataError(f"cache {folder}: {file} was truncated or altered (checksum differs)")

    def column(file: str, name: str) -> np.ndarray:
        """One column, read a row group at a time into its final array (no second copy)."""
        try:
            parquet = pq.ParquetFile(folder / file)
            if parquet.schema_arrow.field(name).type == pa.string():
                array = parquet.read(columns=[name]).column(name).to_numpy(zero_copy_only=False)
                return array.astype(str)
            out = np.empty(parquet.metadata.num_rows,
                           dtype=parquet.schema_arrow.field(name).type.to_pandas_dtype())
            start = 0
            for group in range(parquet.num_row_groups):
                part = parquet.read_row_group(group, columns=[name]).column(name).to_numpy()
                out[start : start + len(part)] = part
                start += len(part)
        except Exception as exc:  # pyarrow raises many types for a bad file
            raise DataError(f"cache {folder}: {file} unreadable ({exc})") from None
        if start != len(out):
            raise DataError(f"cache {folder}: {file} holds {start} rows, expected {len(out)}")
        return out

    arrays: dict[str, np.ndarray] = {}
    for name_, dtype in _RATING_COLUMNS.items():
        if name_ in digests:
            arrays[name_] = column("ratings.parquet", name_)
            if arrays[name_].dtype != dtype:
                raise DataError(f"cache {folder}: column {name_} is {arrays[name_].dtype}")
    arrays["user_ids"] = column("user_ids.parquet", "id")
    arrays["item_ids"] = column("item_ids.parquet", "id")
    for name_, array in arrays.items():
        if _digest(array) != digests.get(name_):
            raise DataError(f"cache {folder}: column {name_} does not match its checksum")
    if set(arrays) != set(digests):
        raise DataError(f"cache {folder}: columns {sorted(set(digests) ^ set(arrays))} differ")
    ratings = Ratings(
        users=Vocabulary(arrays["user_ids"], "user"),
        items=Vocabulary(arrays["item_ids"], "movie"),
        user_index=arrays["user_index"],
        item_index=arrays["item_index"],
        rating=arrays["rating"],
        timestamp=arrays.get("timestamp"),
        scale=tuple(meta["scale"]),
    )
    ratings._cache["fingerprint"] = meta["fingerprint"]  # the columns were just verified
    movies = pd.read_parquet(folder / "movies.parquet")
    users = Users(pd.read_parquet(folder / "users.parquet")) if "users.parquet" in files else None
    folds: dict[str, np.ndarray] = {}
    if "folds.parquet" in files:
        fold_frame = pd.read_parquet(folder / "folds.parquet")
        folds = {c: fold_frame[c].to_numpy(bool) for c in fold_frame.columns}
    return Dataset(name=name, ratings=ratings, catalog=Catalog(movies), users=users, folds=folds)


def load_dataset(
    name: str,
    *,
    mirror: str | None = None,
    data_dir: str | Path | None = None,
    movies: str | Path | None = None,
    refresh: bool = False,
    verify: bool = True,
    progress: Progress | None = None,
) -> Dataset:
    """Load a dataset by registry name (fetching and caching it on first use) or from a file.

    Args:
        name: a registry name (``ml-100k``, ``ml-latest-small``, ...) or the path of the user's own
            ratings file (CSV/TSV/Parquet; see `read_ratings_file`).
        mirror, data_dir, verify, progress: see `fetch_archive`.
        movies: for a ratings file, an optional movies file.
        refresh: rebuild the Parquet cache from the archive.

    Raises:
        ConfigError: ``name`` is neither a known dataset nor an existing file.
        DataError, ChecksumError: see `fetch_archive` and the parsers.
    """
    if name not in VARIANTS:
        path = Path(name).expanduser()
        if path.is_file():
            dataset, _ = read_ratings_file(path, movies, progress=progress)
            return dataset
        if path.suffix or "/" in name or "\\" in name:
            raise ConfigError(f"no such ratings file: {name}")
        get_variant(name)  # raises ConfigError naming the known datasets
    folder = data_home(data_dir) / name
    damage = None
    if is_cached(name, data_dir) and not refresh:
        try:
            return _read_cache(folder, name)
        except (OSError, ValueError, KeyError, TypeError, DataError) as exc:
            damage = str(exc)
            log.warning("%s; rebuilding it", damage)
    try:
        archive = fetch_archive(
            name, mirror=mirror, data_dir=data_dir, verify=verify, progress=progress
        )
    except MovieRecError as exc:
        if damage is None:
            raise
        raise DataError(f"{damage}, and it cannot be rebuilt: {exc}") from None
    start = time.perf_counter()
    variant = get_variant(name)
    dataset = parse_archive(archive, variant, progress=progress)
    _write_cache(
        dataset,
        folder,
        {"name": name, "archive": archive.name, "archive_bytes": archive.stat().st_size,
         "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    )
    log.info("parsed and cached %s in %.1f s", name, time.perf_counter() - start)
    return dataset
