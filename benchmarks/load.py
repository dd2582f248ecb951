"""Loading at scale: time and peak RSS of the first load (parse + cache build) and of a cached load
of an ml-32m-layout archive with tens of millions of ratings, and of the same ratings as a user's own
CSV file.

    python benchmarks/load.py                 # 32M ratings (the size of ml-32m)
    python benchmarks/load.py --rows 8M       # a quicker run
    python benchmarks/load.py --no-own-file   # skip the user's-own-file measurement

The archive is generated in blocks into a temporary folder (ratings.csv sorted by user then movie,
half stars, MovieLens-like long tails, with movies/tags/links files) and deleted afterwards: nothing
of the size of the data is ever kept. Each load runs in a fresh Python process, so its peak RSS is
its own. ``--src`` points the loads at another checkout's ``src`` (to measure a baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
USERS, MOVIES, ID_SPAN = 200_948, 87_585, 292_757  # ml-32m's users, movies and largest movie id


def _rows(text: str) -> int:
    text = text.upper().replace("_", "")
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * scale)


def _movie_ids() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.sort(rng.choice(np.arange(1, ID_SPAN + 1), MOVIES, replace=False))


def _rating_blocks(rows: int, seed: int) -> object:
    """Yield CSV bytes of ``rows`` ratings (no header), sorted by user then movie, in blocks."""
    sys.path.insert(0, str(ROOT / "src"))
    from movierec.data.archives import _digits, _format_rows, _lookup

    rng = np.random.default_rng(seed)
    movie_ids = _movie_ids()
    popularity = 1.0 / np.arange(1, MOVIES + 1) ** 0.9  # long tail
    popularity /= popularity.sum()
    activity = rng.lognormal(0.0, 1.1, USERS)
    activity *= 1.3 * rows / activity.sum()  # draws that repeat a pair are dropped
    per_user = np.maximum(1, np.minimum(np.rint(activity), MOVIES // 2)).astype(np.int64)
    levels = [f"{v / 2:.1f}".encode() for v in range(11)]
    level_p = np.array([0, 1.6, 3.3, 1.7, 7.0, 5.0, 19.5, 13.0, 26.5, 8.5, 14.0])
    level_p /= level_p.sum()
    ends = np.cumsum(per_user)
    written, user = 0, 0
    while written < rows and user < USERS:
        done = ends[user - 1] if user else 0
        stop = max(user + 1, int(np.searchsorted(ends, done + 1_000_000)))
        counts = per_user[user:stop]
        owners = np.repeat(np.arange(user + 1, stop + 1), counts)
        picks = rng.choice(MOVIES, size=len(owners), p=popularity)
        codes = np.unique(owners * MOVIES + picks)  # distinct pairs, sorted by user then movie
        codes = codes[: rows - written]
        n = len(codes)
        level = rng.choice(11, size=n, p=level_p)
        stamps = rng.integers(789_652_009, 1_697_164_162, size=n)
        yield _format_rows(
            [_digits(codes // MOVIES), _digits(movie_ids[codes % MOVIES]), _lookup(levels, level),
             _digits(stamps)],
            b",", b"\n",
        )
        written += n
        user = stop
    if written < rows:
        raise SystemExit(f"generated only {written:,} distinct ratings; ask for fewer")


def write_archive(path: Path, rows: int, own_csv: Path | None) -> None:
    """An ml-32m-layout zip: ratings.csv (streamed in blocks), movies.csv, tags.csv, links.csv."""
    movie_ids = _movie_ids()
    header = b"userId,movieId,rating,timestamp\n"
    own = own_csv.open("wb") if own_csv is not None else None
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("ml-32m/ratings.csv", "w", force_zip64=True) as member:
            member.write(header)
            if own is not None:
                own.write(header)
            for block in _rating_blocks(rows, seed=0):
                member.write(block)
                if own is not None:
                    own.write(block)
        movies = ["movieId,title,genres"] + [
            f"{m},Movie {m} ({1900 + m % 124}),Drama|Comedy" for m in movie_ids.tolist()
        ]
        archive.writestr("ml-32m/movies.csv", "\n".join(movies) + "\n")
        tags = ["userId,movieId,tag,timestamp"] + [
            f"{1 + i % USERS},{m},tag {i % 50},1600000000" for i, m in enumerate(movie_ids[:5000])
        ]
        archive.writestr("ml-32m/tags.csv", "\n".join(tags) + "\n")
        links = ["movieId,imdbId,tmdbId"] + [f"{m},{m:07d},{m}" for m in movie_ids.tolist()]
        archive.writestr("ml-32m/links.csv", "\n".join(links) + "\n")
    if own is not None:
        own.close()


def _child(what: str, home: str) -> None:
    from movierec.data.download import load_dataset

    start = time.perf_counter()
    dataset = load_dataset(what, data_dir=home)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    r = dataset.ratings
    columns = r.user_index.nbytes + r.item_index.nbytes + r.rating.nbytes + (
        r.timestamp.nbytes if r.timestamp is not None else 0)
    print(json.dumps({"rows": len(r), "seconds": seconds, "peak_mb": peak,
                      "columns_mb": columns / 2**20, "users": r.n_users, "movies": r.n_items}))


def _measure(what: str, home: Path, src: Path) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", what, str(home)],
        check=False, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(src), "MOVIEREC_MIRROR": str(home / "nowhere")},
    )
    if result.returncode:
        raise SystemExit(f"{what}: load failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", default="32M", help="ratings to generate (32M, 8M, 500K...)")
    parser.add_argument("--no-own-file", action="store_true",
                        help="skip loading the same ratings as a user's own CSV file")
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="the movierec source to measure (default: this checkout's)")
    parser.add_argument("--tmp", type=Path, default=None, help="where to write the temporary data")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    rows = _rows(args.rows)
    with tempfile.TemporaryDirectory(prefix="movierec-load-", dir=args.tmp) as temp:
        home = Path(temp)
        (home / "downloads").mkdir()
        own = None if args.no_own_file else home / "own-ratings.csv"
        start = time.perf_counter()
        write_archive(home / "downloads" / "ml-32m.zip", rows, own)
        size = (home / "downloads" / "ml-32m.zip").stat().st_size
        print(f"generated {rows:,} ratings in the ml-32m layout ({size / 2**20:,.0f} MB zip) "
              f"in {time.perf_counter() - start:.0f} s; source: {args.src}")
        print(f"{'load':<40}{'rows':>12}{'seconds':>9}{'peak MB':>9}{'columns MB':>11}")
        runs = [("ml-32m first load (parse + cache)", "ml-32m"), ("ml-32m cached load", "ml-32m")]
        if own is not None:
            runs.append(("own CSV file (same ratings)", str(own)))
        for label, what in runs:
            figures = _measure(what, home, args.src)
            print(f"{label:<40}{figures['rows']:>12,}{figures['seconds']:>9.1f}"
                  f"{figures['peak_mb']:>9.0f}{figures['columns_mb']:>11.0f}")


if __name__ == "__main__":
    main()
