"""Fetch, verify and cache: genuine archives pass, anything else is rejected and the cache stays intact."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from movierec.data import download
from movierec.data.download import fetch_archive, is_cached, load_dataset, verify_archive
from movierec.data.registry import VARIANTS, get_variant
from movierec.errors import ChecksumError, ConfigError, DataError


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its SHA-256: what "the cache stayed as it was" means."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def bad_mirror(tmp_path: Path) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    return folder


def test_official_archive_verified_by_sha256(mirror: Path) -> None:
    assert verify_archive(mirror / "ml-latest-small.zip", get_variant("ml-latest-small")) == "sha256"


def test_repacked_archive_verified_by_members(mirror: Path) -> None:
    assert verify_archive(mirror / "ml-100k.zip", get_variant("ml-100k")) == "members"


def test_fetch_copies_verifies_and_caches(mirror: Path, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int | None]] = []
    path = fetch_archive("ml-100k", mirror=str(mirror), data_dir=tmp_path,
                         progress=lambda *a: seen.append(a))
    assert path == tmp_path / "downloads" / "ml-100k.zip"
    assert path.read_bytes() == (mirror / "ml-100k.zip").read_bytes()
    assert seen[-1][1] == seen[-1][2] == path.stat().st_size
    assert [p.name for p in (tmp_path / "downloads").iterdir()] == ["ml-100k.zip"]


def test_second_load_reads_the_parquet_cache(mirror: Path, tmp_path: Path) -> None:
    first = load_dataset("ml-latest-small", mirror=str(mirror), data_dir=tmp_path)
    assert is_cached("ml-latest-small", tmp_path)
    # Without the archive, only the Parquet cache can answer.
    (tmp_path / "downloads" / "ml-latest-small.zip").unlink()
    second = load_dataset("ml-latest-small", mirror=str(tmp_path / "nowhere"), data_dir=tmp_path)
    assert second.ratings.fingerprint() == first.ratings.fingerprint()
    assert second.catalog.get(1) == first.catalog.get(1)
    assert second.catalog.frame["tags"].map(len).sum() == first.catalog.frame["tags"].map(len).sum()


def test_cache_keeps_folds_and_users(mirror: Path, tmp_path: Path) -> None:
    load_dataset("ml-100k", mirror=str(mirror), data_dir=tmp_path)
    cached = load_dataset("ml-100k", mirror=str(tmp_path / "nowhere"), data_dir=tmp_path)
    assert sorted(cached.folds) == ["u1", "u2", "u3", "u4", "u5", "ua", "ub"]
    assert cached.users is not None and cached.users.get(1)["occupation"] == "technician"


def _corrupt_byte(source: Path, target: Path) -> None:
    data = bytearray(source.read_bytes())
    # A byte inside the first member's compressed data: the zip still opens, the content differs.
    with zipfile.ZipFile(source) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("u.data"))
    offset = info.header_offset + 30 + len(info.filename) + 500
    data[offset] ^= 0xFF
    target.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["corrupted byte", "truncated", "wrong file", "not a zip"])
def test_bad_archives_rejected_and_cache_left_intact(
    mirror: Path, tmp_path: Path, bad_mirror: Path, damage: str
) -> None:
    home = tmp_path / "home"
    load_dataset("ml-100k", mirror=str(mirror), data_dir=home)
    before = snapshot(home)
    source, target = mirror / "ml-100k.zip", bad_mirror / "ml-100k.zip"
    if damage == "corrupted byte":
        _corrupt_byte(source, target)
    elif damage == "truncated":
        target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    elif damage == "wrong file":
        shutil.copy(mirror / "ml-latest-small.zip", target)
    else:
        target.write_text("<html>404 Not Found</html>")
    with pytest.raises(ChecksumError) as caught:
        fetch_archive("ml-100k", mirror=str(bad_mirror), data_dir=home, force=True)
    assert "\n" not in str(caught.value) and "ml-100k" in str(caught.value)
    assert snapshot(home) == before
    assert not any(p.name.endswith(".part") for p in home.rglob("*"))


def test_rejected_first_fetch_leaves_nothing(tmp_path: Path, bad_mirror: Path) -> None:
    (bad_mirror / "ml-latest-small.zip").write_bytes(b"PK\x03\x04 garbage")
    home = tmp_path / "home"
    message = r"ml-latest-small\.zip from .* is not a valid ml-latest-small archive"
    with pytest.raises(ChecksumError, match=message):
        load_dataset("ml-latest-small", mirror=str(bad_mirror), data_dir=home)
    assert snapshot(home) == {}
    assert not is_cached("ml-latest-small", home)


def test_missing_from_mirror(tmp_path: Path, bad_mirror: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        fetch_archive("ml-1m", mirror=str(bad_mirror), data_dir=tmp_path)


def test_unknown_name_and_missing_file() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'ml-5m'"):
        load_dataset("ml-5m")
    with pytest.raises(ConfigError, match="no such ratings file"):
        load_dataset("missing/ratings.csv")


def test_md5_verification(tmp_path: Path, bad_mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Variants with only a published .md5 are checked against the .md5 from the same source."""
    payload = b"an archive whose only checksum is an md5 file"
    (bad_mirror / "ml-10m.zip").write_bytes(payload)
    digest = hashlib.md5(payload).hexdigest()
    (bad_mirror / "ml-10m.zip.md5").write_text(f"MD5 (ml-10m.zip) = {digest}\n")
    path = fetch_archive("ml-10m", mirror=str(bad_mirror), data_dir=tmp_path)
    assert path.read_bytes() == payload
    (bad_mirror / "ml-10m.zip.md5").write_text(f"{'0' * 32}  ml-10m.zip\n")
    with pytest.raises(ChecksumError, match="md5"):
        fetch_archive("ml-10m", mirror=str(bad_mirror), data_dir=tmp_path / "b")
    (bad_mirror / "ml-10m.zip.md5").unlink()
    with pytest.raises(ChecksumError, match="no checksum is available"):
        fetch_archive("ml-10m", mirror=str(bad_mirror), data_dir=tmp_path / "c")
    path = fetch_archive("ml-10m", mirror=str(bad_mirror), data_dir=tmp_path / "d", verify=False)
    assert path.is_file()


def test_member_pins_checked_one_by_one(mirror: Path, tmp_path: Path) -> None:
    """A repack with genuine ratings but an edited movies file is still rejected."""
    source = mirror / "ml-100k.zip"
    target = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info.filename)
            if info.filename.endswith("u.item"):
                data = data.replace(b"Toy Story", b"Toy Storm")
            new.writestr(info, data)
    with pytest.raises(ChecksumError, match=r"u\.item has sha256"):
        verify_archive(target, VARIANTS["ml-100k"])
    variant = replace(VARIANTS["ml-100k"], member_sha256={"u.missing": "0" * 64})
    with pytest.raises(ChecksumError, match="is missing"):
        verify_archive(source, variant)


@pytest.fixture
def http_mirror(mirror: Path) -> Iterator[str]:
    """The mirror folder served over HTTP on the loopback interface."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_from_http_mirror(http_mirror: str, mirror: Path, tmp_path: Path) -> None:
    path = fetch_archive("ml-latest-small", mirror=http_mirror, data_dir=tmp_path)
    assert path.read_bytes() == (mirror / "ml-latest-small.zip").read_bytes()
    with pytest.raises(DataError, match="cannot download"):
        fetch_archive("ml-1m", mirror=http_mirror, data_dir=tmp_path)


def test_file_url_mirror(mirror: Path, tmp_path: Path) -> None:
    path = fetch_archive("ml-100k", mirror=mirror.as_uri(), data_dir=tmp_path)
    assert path.stat().st_size == (mirror / "ml-100k.zip").stat().st_size


def test_refresh_swaps_the_cache_atomically(mirror: Path, tmp_path: Path) -> None:
    load_dataset("ml-latest-small", mirror=str(mirror), data_dir=tmp_path)
    load_dataset("ml-latest-small", mirror=str(mirror), data_dir=tmp_path, refresh=True)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["downloads", "ml-latest-small"]  # no leftover temporary folders


def test_unreadable_cache_is_rebuilt(mirror: Path, tmp_path: Path) -> None:
    load_dataset("ml-latest-small", mirror=str(mirror), data_dir=tmp_path)
    (tmp_path / "ml-latest-small" / "ratings.parquet").write_bytes(b"not parquet")
    again = load_dataset("ml-latest-small", mirror=str(mirror), data_dir=tmp_path)
    assert len(again.ratings) == 100_836


def test_data_home_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOVIEREC_DATA", str(tmp_path / "env"))
    assert download.data_home() == tmp_path / "env"
    assert download.data_home(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("MOVIEREC_DATA")
    assert "movierec" in str(download.data_home())
