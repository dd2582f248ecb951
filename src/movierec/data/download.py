"""Fetch MovieLens archives, verify them, and keep a Parquet cache so the second load is fast.

Cache layout under the data home (``MOVIEREC_DATA``, default: the user's cache folder)::

    downloads/<name>.zip        verified archives, as GroupLens (or the mirror) serves them
    <name>/meta.json            what the cache holds and which archive it came from
    <name>/ratings.parquet      user, item, rating, timestamp in file order
    <name>/movies.parquet       item, title, year, genres[, tags, imdb_id, tmdb_id, imdb_url]
    <name>/users.parquet        demographics, where the data has them
    <name>/folds.parquet        canonical folds (ml-100k): one boolean column per fold, True = test

Every write goes to a temporary path first and is renamed into place, so an interrupted or rejected
fetch leaves the cache exactly as it was.
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
from movierec.data.dataset import Catalog, Dataset, Ratings, Users
from movierec.data.movielens import parse_archive, read_ratings_file
from movierec.data.registry import BASE_URL, VARIANTS, Variant, get_variant
from movierec.errors import ChecksumError, ConfigError, DataError

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

CACHE_FORMAT = 1
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
    """Whether ``name`` has a complete Parquet cache of the current format."""
    meta = data_home(data_dir) / name / "meta.json"
    try:
        return json.loads(meta.read_text()).get("format") == CACHE_FORMAT
    except (OSError, ValueError):
        return False


def _write_cache(dataset: Dataset, folder: Path, meta: dict[str, Any]) -> None:
    """Write ``dataset`` as Parquet into a temporary sibling of ``folder``, then swap it in."""
    with atomic_folder(folder) as temp:
        dataset.ratings.to_frame().to_parquet(temp / "ratings.parquet", index=False)
        dataset.catalog.frame.to_parquet(temp / "movies.parquet", index=False)
        if dataset.users is not None:
            dataset.users.frame.to_parquet(temp / "users.parquet", index=False)
        if dataset.folds:
            pd.DataFrame(dataset.folds).to_parquet(temp / "folds.parquet", index=False)
        meta = {**meta, "format": CACHE_FORMAT, "scale": list(dataset.ratings.scale),
                "fingerprint": dataset.ratings.fingerprint()}
        (temp / "meta.json").write_text(json.dumps(meta, indent=2))


def _read_cache(folder: Path, name: str) -> Dataset:
    meta = json.loads((folder / "meta.json").read_text())
    frame = pd.read_parquet(folder / "ratings.parquet")
    ratings = Ratings.from_frame(frame, scale=tuple(meta["scale"]))
    movies = pd.read_parquet(folder / "movies.parquet")
    users = Users(pd.read_parquet(folder / "users.parquet")) if (
        folder / "users.parquet").is_file() else None
    folds: dict[str, np.ndarray] = {}
    if (folder / "folds.parquet").is_file():
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
            dataset, _ = read_ratings_file(path, movies)
            return dataset
        if path.suffix or "/" in name or "\\" in name:
            raise ConfigError(f"no such ratings file: {name}")
        get_variant(name)  # raises ConfigError naming the known datasets
    folder = data_home(data_dir) / name
    if is_cached(name, data_dir) and not refresh:
        try:
            return _read_cache(folder, name)
        except (OSError, ValueError, KeyError, DataError) as exc:
            log.warning("cache of %s unreadable (%s); rebuilding it", name, exc)
    archive = fetch_archive(
        name, mirror=mirror, data_dir=data_dir, verify=verify, progress=progress
    )
    start = time.perf_counter()
    variant = get_variant(name)
    dataset = parse_archive(archive, variant)
    _write_cache(
        dataset,
        folder,
        {"name": name, "archive": archive.name, "archive_bytes": archive.stat().st_size,
         "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    )
    log.info("parsed and cached %s in %.1f s", name, time.perf_counter() - start)
    return dataset
