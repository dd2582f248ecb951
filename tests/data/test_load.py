"""Loading at scale and under bad input: every release through `load_dataset` on a generated archive,
the streaming reader against a reference, hostile archives and ratings files refused with one line
and no partial cache, a full disk and a damaged cache."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import stat
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movierec.data import download, movielens, stream
from movierec.data.archives import write_archive
from movierec.data.dataset import Dataset, Ratings, Vocabulary
from movierec.data.download import CACHE_FORMAT, is_cached, load_dataset
from movierec.data.movielens import parse_archive, read_ratings_file
from movierec.data.registry import VARIANTS
from movierec.data.stream import IdEncoder, TextFormat, read_ratings_text
from movierec.errors import DataError, MovieRecError


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def rows(ratings: Ratings) -> pd.DataFrame:
    return ratings.to_frame().sort_values(["user", "item"]).reset_index(drop=True)


def place(archive: Path, home: Path, name: str) -> Path:
    """Put an archive where `fetch_archive` keeps verified downloads (so no mirror is asked)."""
    target = home / "downloads" / f"{name}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(archive.read_bytes())
    return target


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    assert isinstance(error.value, MovieRecError)
    return message


@pytest.fixture(scope="module")
def small(stars: Dataset) -> Dataset:
    return stars


# -- every release through the same path -------------------------------------------------------

_LAYOUT = {
    "ml-100k": {"u.data", "u.item", "u.user", "u.genre"},
    "ml-1m": {"ratings.dat", "movies.dat", "users.dat"},
    "ml-10m": {"ratings.dat", "movies.dat", "tags.dat"},
    **{name: {"ratings.csv", "movies.csv", "tags.csv", "links.csv"}
       for name in ("ml-20m", "ml-25m", "ml-32m", "ml-latest", "ml-latest-small")},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_release_loads_through_load_dataset_and_its_cache(
    small: Dataset, tmp_path: Path, name: str
) -> None:
    assert set(_LAYOUT) == set(VARIANTS)
    archive = write_archive(small, tmp_path, name)
    with zipfile.ZipFile(archive) as opened:
        folder = VARIANTS[name].folder
        assert _LAYOUT[name] <= {n.split("/", 1)[1] for n in opened.namelist()}
        member = f"{folder}/{VARIANTS[name].members['ratings']}"
        first = opened.read(member).split(b"\n", 1)[0].rstrip(b"\r")
    if name in ("ml-1m", "ml-10m"):
        assert first.count(b"::") == 3
    elif VARIANTS[name].layout == "csv":
        assert first == b"userId,movieId,rating,timestamp"
    home = tmp_path / "home"
    place(archive, home, name)
    loaded = load_dataset(name, data_dir=home)
    pd.testing.assert_frame_equal(rows(loaded.ratings), rows(small.ratings))
    assert loaded.ratings.scale == VARIANTS[name].scale
    assert loaded.catalog.frame["title"].tolist() == small.catalog.frame["title"].tolist()
    assert is_cached(name, home)
    (home / "downloads" / f"{name}.zip").unlink()  # only the cache can answer now
    cached = load_dataset(name, data_dir=home, mirror=str(tmp_path / "nowhere"))
    assert cached.ratings.fingerprint() == loaded.ratings.fingerprint()
    for column in ("user_index", "item_index", "rating", "timestamp"):
        assert np.array_equal(getattr(cached.ratings, column), getattr(loaded.ratings, column))
    assert cached.ratings.users == loaded.ratings.users
    assert cached.ratings.items == loaded.ratings.items
    assert cached.catalog.frame["genres"].tolist() == loaded.catalog.frame["genres"].tolist()
    if name == "ml-100k":
        assert sorted(cached.folds) == sorted(loaded.folds) and loaded.folds


# -- the streaming reader ----------------------------------------------------------------------

_CSV = TextFormat(sep=",", fields=4, positions={"user": 0, "item": 1, "rating": 2, "timestamp": 3},
                  header=True, quoted=True, expected="userId,movieId,rating,timestamp",
                  header_names=("userId", "movieId", "rating", "timestamp"))


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, header=["userId", "movieId", "rating", "timestamp"]).encode()


def random_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    codes = rng.choice(5_000 * 3_000, size=n, replace=False)
    return pd.DataFrame({
        "user": codes // 3_000 * 7 + 3,  # sparse raw ids, out of sorted order
        "item": codes % 3_000 * 11 + 1,
        "rating": rng.integers(1, 11, size=n) / 2,
        "timestamp": rng.integers(0, 2**40, size=n),
    })


def test_blocks_give_the_same_ratings_as_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = random_frame(20_000, seed=1)
    data = csv_bytes(frame)
    monkeypatch.setattr(stream, "_BLOCK", 4096)  # about 100 blocks
    seen: list[int] = []
    got = read_ratings_text(lambda: io.BytesIO(data), _CSV, label="r.csv", size=len(data),
                            scale=(0.5, 5.0), progress=lambda _, done, total: seen.append(done))
    reference = Ratings.from_frame(frame, scale=(0.5, 5.0))
    assert got.fingerprint() == reference.fingerprint()
    assert got.users == reference.users and got.items == reference.items
    assert np.array_equal(got.user_index, reference.user_index)
    assert np.array_equal(got.item_index, reference.item_index)
    assert seen[-1] == len(data) and seen == sorted(seen)


def test_row_estimate_too_small_grows_the_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = random_frame(5_000, seed=2)
    data = csv_bytes(frame)
    monkeypatch.setattr(stream, "_BLOCK", 2048)
    assert stream._count_rows(lambda: io.BytesIO(data), header=True) == 5_000
    assert stream._count_rows(lambda: io.BytesIO(data.rstrip(b"\n")), header=True) == 5_000
    monkeypatch.setattr(stream, "_count_rows", lambda opener, header: 10)
    got = read_ratings_text(lambda: io.BytesIO(data), _CSV, label="r.csv")
    assert got.fingerprint() == Ratings.from_frame(frame, scale=got.scale).fingerprint()


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    blocks=st.lists(
        st.one_of(
            st.lists(st.integers(-50, 50), max_size=30),
            st.lists(st.integers(-(2**40), 2**40), max_size=10),  # forces the hash index
        ),
        max_size=8,
    )
)
def test_id_encoder_agrees_with_the_sorted_vocabulary(blocks: list[list[int]]) -> None:
    encoder = IdEncoder("user")
    codes = [encoder.encode(np.array(b, dtype=np.int64)) for b in blocks]
    vocabulary, rank = encoder.finish()
    values = np.array([v for b in blocks for v in b], dtype=np.int64)
    assert vocabulary == Vocabulary.from_values(values, "user")
    if len(values):
        final = rank[np.concatenate(codes)]
        assert np.array_equal(vocabulary.ids[final], values)


@given(blocks=st.lists(st.lists(st.text("abcé", min_size=1, max_size=3), max_size=20), max_size=5))
def test_id_encoder_on_text(blocks: list[list[str]]) -> None:
    encoder = IdEncoder("movie")
    codes = [encoder.encode(np.array(b, dtype=object)) for b in blocks]
    vocabulary, rank = encoder.finish()
    values = [v for b in blocks for v in b]
    assert vocabulary.ids.tolist() == sorted(set(values))
    if values:
        assert vocabulary.ids[rank[np.concatenate(codes)]].tolist() == values


def test_text_ids_deep_in_a_users_file_switch_the_column_to_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "_BLOCK", 1024)
    lines = [f"{u},{u % 7},3" for u in range(3_000)] + ["alice,2,4"]
    path = tmp_path / "mine.csv"
    path.write_text("user,item,rating\n" + "\n".join(lines) + "\n")
    dataset, _ = read_ratings_file(path)
    users = dataset.ratings.users
    assert not users.is_integer and "alice" in users and "2999" in users
    assert dataset.ratings.items.is_integer
    assert dataset.ratings.user_ids[-1] == "alice" and dataset.ratings.rating[-1] == 4


# -- bad input: a malformed line deep in the file ------------------------------------------------


def big_archive(tmp_path: Path, name: str, text: bytes) -> Path:
    """An archive of ``name``'s layout whose ratings member is ``text`` (other members genuine)."""
    spec = VARIANTS[name]
    path = tmp_path / f"{name}.zip"
    movie = "movieId,title,genres\n" + "".join(f"{m},Movie {m} (2000),Drama\n" for m in range(1, 60))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{spec.folder}/ratings.csv", text)
        archive.writestr(f"{spec.folder}/movies.csv", movie)
    return path


def ratings_text(n: int) -> list[str]:
    return [f"{1 + i // 50},{1 + i % 50},{1 + i % 9 / 2},{1_000_000 + i}" for i in range(n)]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("17,3,4.0", "3 fields"),
        ("17,3,4.0,1,2", "5 fields"),
        ("x17,3,4.0,1", "user is not an integer ('x17')"),
        ("17,3.5,4.0,1", "item is not an integer ('3.5')"),
        ("17,3,four,1", "rating is not a number ('four')"),
        ("17,3,,1", "empty rating"),
        ("17,3,9.5,1", "rating must lie in 0.5..5, got 9.5"),
        ("17,3,0,1", "rating must lie in 0.5..5, got 0"),
        ("17,3,inf,1", "rating must be a finite number, got inf"),
        ("17,3,nan,1", "rating must be a finite number, got nan"),
        ("", "empty line"),
    ],
)
def test_a_bad_line_deep_in_the_file_names_its_line_and_leaves_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str, problem: str
) -> None:
    monkeypatch.setattr(stream, "_BLOCK", 1 << 14)  # the bad line sits many blocks in
    lines = ratings_text(30_000)
    lines[25_000] = bad
    text = ("userId,movieId,rating,timestamp\n" + "\n".join(lines) + "\n").encode()
    home = tmp_path / "home"
    place(big_archive(tmp_path, "ml-32m", text), home, "ml-32m")
    with pytest.raises(DataError) as caught:
        load_dataset("ml-32m", data_dir=home)
    message = one_line(caught)
    assert message.startswith("ml-32m.zip:ml-32m/ratings.csv:25002: "), message
    assert problem in message
    assert "expected userId,movieId,rating,timestamp" in message
    assert not (home / "ml-32m").exists()
    assert sorted(p.name for p in home.iterdir()) == ["downloads"]


def test_dat_layout_names_the_line_and_format(small: Dataset, tmp_path: Path) -> None:
    archive = write_archive(small, tmp_path, "ml-1m")
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive) as old, zipfile.ZipFile(damaged, "w") as new:
        for info in old.infolist():
            data = old.read(info.filename)
            if info.filename.endswith("ratings.dat"):
                lines = data.split(b"\n")
                lines[4_000] = lines[4_000].replace(b"::", b":", 1)
                data = b"\n".join(lines)
            new.writestr(info, data)
    with pytest.raises(DataError) as caught:
        parse_archive(damaged, VARIANTS["ml-1m"])
    message = one_line(caught)
    assert message.startswith("damaged.zip:ml-1m/ratings.dat:4001: ")
    assert "expected UserID::MovieID::Rating::Timestamp" in message


def test_duplicate_pair_in_an_archive_is_refused(tmp_path: Path) -> None:
    lines = ratings_text(500)
    lines.insert(300, lines[120])
    text = ("userId,movieId,rating,timestamp\n" + "\n".join(lines) + "\n").encode()
    with pytest.raises(DataError) as caught:
        parse_archive(big_archive(tmp_path, "ml-25m", text), VARIANTS["ml-25m"])
    user, item = lines[120].split(",")[:2]
    assert one_line(caught).endswith(
        f"ratings.csv:302: user {user} rated movie {item} already on line 122; "
        "expected each (user, movie) pair once"
    )


def test_unsorted_duplicates_are_found_too(tmp_path: Path) -> None:
    lines = ratings_text(400)[::-1]
    lines.append(lines[10])
    text = ("userId,movieId,rating,timestamp\n" + "\n".join(lines) + "\n").encode()
    with pytest.raises(DataError, match=r"ratings\.csv:402: .* already on line 12;"):
        parse_archive(big_archive(tmp_path, "ml-25m", text), VARIANTS["ml-25m"])


# -- bad input: hostile archives and members ---------------------------------------------------


def hostile(tmp_path: Path, small: Dataset, change: str) -> Path:
    """A genuine ml-latest-small-layout archive, then one hostile change."""
    source = write_archive(small, tmp_path, "ml-latest-small")
    target = tmp_path / "hostile.zip"
    folder = "ml-latest-small"
    if change == "truncated":
        target.write_bytes(source.read_bytes()[: source.stat().st_size * 2 // 3])
        return target
    if change == "damaged member":
        data = bytearray(source.read_bytes())
        with zipfile.ZipFile(source) as archive:
            info = archive.getinfo(f"{folder}/ratings.csv")
        start = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
        data[start : start + 64] = bytes(64)
        target.write_bytes(bytes(data))
        return target
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = old.read(info.filename)
            member = info.filename.rsplit("/", 1)[-1]
            if change == "empty movies" and member == "movies.csv":
                data = b""
            elif change == "header-only movies" and member == "movies.csv":
                data = b"movieId,title,genres\n"
            elif change == "latin-1 movies" and member == "movies.csv":
                data = data.replace(b"1,", "1,Amélie ".encode("latin-1"), 1)
            elif change == "movies without genres" and member == "movies.csv":
                data = b"movieId,title\n1,Heat (1995)\n"
            elif change == "empty ratings" and member == "ratings.csv":
                data = b""
            elif change == "header-only ratings" and member == "ratings.csv":
                data = b"userId,movieId,rating,timestamp\n"
            elif change == "ratings missing a column" and member == "ratings.csv":
                data = b"userId,movieId,rating\n1,2,3.0\n"
            elif change == "latin-1 ratings" and member == "ratings.csv":
                data = data.replace(b"\n1,", "\n1é,".encode("latin-1"), 1)
            elif change == "utf-16 ratings" and member == "ratings.csv":
                data = data.decode().encode("utf-16")
            new.writestr(info, data)
        if change == "climbing path":
            new.writestr(f"{folder}/../../evil.sh", b"rm -rf ~")
        elif change == "absolute path":
            new.writestr("/etc/evil", b"x")
        elif change == "symlink":
            link = zipfile.ZipInfo(f"{folder}/link")
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            new.writestr(link, "/etc/passwd")
        elif change == "zip bomb":
            new.writestr(f"{folder}/padding.csv", bytes(50 << 20))
    return target


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("truncated", "not a readable zip archive"),
        ("damaged member", "ratings.csv"),
        ("climbing path", "has an absolute or climbing path"),
        ("absolute path", "has an absolute or climbing path"),
        ("symlink", "is a symbolic link"),
        ("zip bomb", "a zip bomb?), over the limit of 100"),
        ("empty movies", "movies.csv: the file is empty, expected movieId,title,genres"),
        ("header-only movies", "movies.csv"),
        ("movies without genres", "movies.csv: no genres column"),
        ("latin-1 movies", "movies.csv: byte"),
        ("empty ratings", "no ratings in the file, expected userId,movieId,rating,timestamp"),
        ("header-only ratings", "no ratings in the file"),
        ("ratings missing a column", ":1: header is 'userId,movieId,rating', expected userId,"),
        ("latin-1 ratings", "ratings.csv:2: not UTF-8 text"),
        ("utf-16 ratings", ":1: header is"),
    ],
)
def test_hostile_archives_are_refused_with_one_line_and_no_cache(
    tmp_path: Path, small: Dataset, change: str, fragment: str
) -> None:
    home = tmp_path / "home"
    place(hostile(tmp_path, small, change), home, "ml-latest-small")
    try:
        load_dataset("ml-latest-small", data_dir=home)
    except MovieRecError as exc:
        message = str(exc)
    else:
        assert change == "header-only movies", change  # no movies is a valid, empty catalog
        return
    assert "\n" not in message and fragment in message, message
    assert not (home / "ml-latest-small").exists()


def test_size_limits_apply_to_every_member(
    tmp_path: Path, small: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = write_archive(small, tmp_path, "ml-latest-small")
    monkeypatch.setattr(movielens, "MAX_MEMBER_BYTES", 1_000)
    with pytest.raises(DataError, match=r"inflates to [\d,]+ bytes, over the limit of 1,000"):
        parse_archive(archive, VARIANTS["ml-latest-small"])
    monkeypatch.setattr(movielens, "MAX_MEMBER_BYTES", 1 << 40)
    monkeypatch.setattr(movielens, "MAX_TOTAL_BYTES", 10_000)
    with pytest.raises(DataError, match=r"members inflate to .* in all, over the limit of 10,000"):
        parse_archive(archive, VARIANTS["ml-latest-small"])


def test_the_cli_turns_a_hostile_archive_into_exit_code_2(
    tmp_path: Path, small: Dataset
) -> None:
    from typer.testing import CliRunner

    from movierec.cli import app

    home = tmp_path / "home"
    place(hostile(tmp_path, small, "climbing path"), home, "ml-latest-small")
    result = CliRunner().invoke(app, ["data", "info", "ml-latest-small", "--data-dir", str(home)])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "absolute or climbing path" in lines[0]


# -- bad input: a user's own files -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        (b"user,item,rating\n", "no ratings in the file"),
        (b"user,item\n1,2\n", "no rating column"),
        (b"1,2\n3,4\n", "expected at least 3 columns"),
        (b"user,item,rating\n1,2,3\n1,2,x\n", ":3: rating is not a number ('x')"),
        (b"user,item,rating\n1,2,3\n1,2,inf\n", ":3: rating must be a finite number, got inf"),
        (b"user,item,rating\n1,2,3\n1,2,-inf\n", ":3: rating must be a finite number"),
        (b"user,item,rating\n1,2,3\n1,,4\n", ":3: empty item"),
        (b"user,item,rating\n1,2,3\n\n1,3,4\n", ":3: empty line"),
        ("user,item,rating\n1,2,3\n1,é,4\n".encode("latin-1"), ":3: not UTF-8 text"),
        ("user,item,rating\n".encode("utf-16"), ":1: byte"),
        (b"\xff\xfe\x00garbage", ":1: byte"),
    ],
)
def test_bad_own_files_raise_one_line(tmp_path: Path, text: bytes, fragment: str) -> None:
    path = tmp_path / "mine.csv"
    path.write_bytes(text)
    with pytest.raises(DataError) as caught:
        load_dataset(str(path))
    assert fragment in one_line(caught)


def test_own_file_scale_is_enforced_when_given(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("user,item,rating\n1,2,3\n1,3,7\n")
    with pytest.raises(DataError, match=r"mine\.csv:3: rating must lie in 1\.\.5, got 7"):
        read_ratings_file(path, scale=(1.0, 5.0))


def test_empty_movies_file_for_own_ratings(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("user,item,rating\n1,2,3\n")
    (tmp_path / "m.csv").write_bytes(b"")
    with pytest.raises(DataError, match="the file is empty"):
        read_ratings_file(tmp_path / "r.csv", movies=tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("movieId,title\n2,A (2001)\n2,B (2002)\n")
    with pytest.raises(DataError, match="movie 2 is listed twice"):
        read_ratings_file(tmp_path / "r.csv", movies=tmp_path / "m.csv")


def test_parquet_with_nulls_or_text_ratings(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2, None], "item": [1, 2, 3], "rating": [1.0, 2.0, 3.0]}).to_parquet(path)
    with pytest.raises(DataError, match=r"r\.parquet: row 3: user id is not a whole number|"
                                        r"r\.parquet: row 3: empty user"):
        read_ratings_file(path)
    pd.DataFrame({"user": [1], "item": [1], "rating": ["good"]}).to_parquet(path)
    with pytest.raises(DataError, match="the rating column holds text, not numbers"):
        read_ratings_file(path)


_VALID = ["userId,movieId,rating,timestamp"] + [
    f"{u},{m},{r},{t}" for u, m, r, t in
    [(1, 1, 4.0, 10), (1, 2, 3.5, 11), (2, 1, 5.0, 12), (2, 3, 0.5, 13), (3, 2, 2.0, 14)]
]


@st.composite
def malformed(draw: st.DrawFn) -> bytes:
    """A valid small ratings file with a few random edits: fields, lines or raw bytes."""
    lines = list(_VALID)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["field", "line", "drop", "bytes", "duplicate"]))
        if edit == "field":
            fields = lines[at].split(",")
            fields[draw(st.integers(0, len(fields) - 1))] = draw(
                st.sampled_from(["", "x", "nan", "inf", "-1", "1e400", "9" * 30, "3.5", '"', "é"])
                | st.text(max_size=6)
            )
            lines[at] = ",".join(fields)
        elif edit == "line":
            lines.insert(at, draw(st.text(max_size=20)))
        elif edit == "drop":
            del lines[at]
        elif edit == "duplicate":
            lines.insert(at, lines[at])
        else:
            lines[at] = draw(st.binary(max_size=12)).decode("latin-1")
    return "\n".join(lines).encode("utf-8", errors="surrogateescape")


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=malformed())
def test_property_malformed_files_fail_cleanly(tmp_path: Path, text: bytes) -> None:
    """Whatever the damage, the reader answers with ratings or a DataError, never anything else."""
    path = tmp_path / "fuzz.csv"
    path.write_bytes(text)
    try:
        dataset, _ = read_ratings_file(path)
    except DataError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert len(dataset.ratings) > 0 and np.isfinite(dataset.ratings.rating).all()
    spec = VARIANTS["ml-latest-small"]
    archive = tmp_path / "fuzz.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr(f"{spec.folder}/ratings.csv", text)
        out.writestr(f"{spec.folder}/movies.csv", "movieId,title,genres\n1,A (2000),Drama\n")
    try:
        strict = parse_archive(archive, spec).ratings
    except DataError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert strict.rating.min() >= 0.5 and strict.rating.max() <= 5.0


# -- the cache: full disk, damage, format ------------------------------------------------------


@pytest.fixture
def cached(small: Dataset, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    place(write_archive(small, tmp_path, "ml-latest-small"), home, "ml-latest-small")
    load_dataset("ml-latest-small", data_dir=home)
    return home


def test_a_full_disk_leaves_the_old_cache_intact(
    cached: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(cached)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(download, "_write_ids", full)  # after ratings.parquet was written
    with pytest.raises(DataError) as caught:
        load_dataset("ml-latest-small", data_dir=cached, refresh=True)
    assert "No space left on device" in one_line(caught)
    assert "previous cache, if any, is unchanged" in str(caught.value)
    assert snapshot(cached) == before
    assert sorted(p.name for p in cached.iterdir()) == ["downloads", "ml-latest-small"]
    monkeypatch.undo()
    assert len(load_dataset("ml-latest-small", data_dir=cached).ratings) > 0


def test_cache_writes_are_fsynced(cached: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def spy(handle: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{handle}"))
        real(handle)

    monkeypatch.setattr(os, "fsync", spy)
    load_dataset("ml-latest-small", data_dir=cached, refresh=True)
    names = {Path(p).name for p in synced}
    assert {"ratings.parquet", "movies.parquet", "meta.json", "user_ids.parquet"} <= names
    assert str(cached) in synced  # the rename itself


@pytest.mark.parametrize("damage", ["truncated", "one byte", "missing file", "extra file",
                                    "checksum edited", "garbage meta"])
def test_a_damaged_cache_is_rebuilt_or_refused(
    cached: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    folder = cached / "ml-latest-small"
    good = load_dataset("ml-latest-small", data_dir=cached).ratings.fingerprint()
    target = folder / "ratings.parquet"

    def harm() -> None:
        if damage == "truncated":
            target.write_bytes(target.read_bytes()[:-100])
        elif damage == "one byte":
            data = bytearray(target.read_bytes())
            data[len(data) // 2] ^= 0x01
            target.write_bytes(bytes(data))
        elif damage == "missing file":
            (folder / "item_ids.parquet").unlink()
        elif damage == "extra file":
            (folder / "ratings.pickle").write_bytes(pickle.dumps([1, 2]))
        elif damage == "checksum edited":
            meta = (folder / "meta.json").read_text()
            (folder / "meta.json").write_text(meta.replace('"rating": "', '"rating": "0', 1))
        else:
            (folder / "meta.json").write_text(f'{{"format": {CACHE_FORMAT}, "files": 3}}')

    harm()
    again = load_dataset("ml-latest-small", data_dir=cached)  # the archive is there: rebuilt
    assert again.ratings.fingerprint() == good
    assert "rebuilding" in caplog.text
    assert snapshot(folder) and "ratings.pickle" not in snapshot(folder)
    harm()
    (cached / "downloads" / "ml-latest-small.zip").unlink()
    with pytest.raises(DataError) as caught:
        load_dataset("ml-latest-small", data_dir=cached, mirror=str(tmp_path / "nowhere"))
    message = one_line(caught)
    assert message.startswith(f"cache {folder}") and "cannot be rebuilt" in message


def test_a_cache_of_the_old_format_is_rebuilt_not_misread(cached: Path) -> None:
    folder = cached / "ml-latest-small"
    meta = (folder / "meta.json").read_text().replace(
        f'"format": {CACHE_FORMAT}', '"format": 1')
    (folder / "meta.json").write_text(meta)
    assert not is_cached("ml-latest-small", cached)
    loaded = load_dataset("ml-latest-small", data_dir=cached)
    assert is_cached("ml-latest-small", cached) and len(loaded.ratings) > 0


def test_loading_the_cache_never_unpickles(cached: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    dataset = load_dataset("ml-latest-small", data_dir=cached)
    assert len(dataset.ratings) > 0
    assert not any(p.suffix in (".pkl", ".pickle", ".npy") for p in
                   (cached / "ml-latest-small").iterdir())
