"""Data-layer figures: rows, seconds and peak MB of the first and the cached load of each available
MovieLens archive, and of synthetic data generation and load at 1M / 10M / 32M ratings.

    python benchmarks/data.py                      # everything (32M needs ~1-2 min and a few GB)
    python benchmarks/data.py --sizes 1M 10M       # skip the largest
    python benchmarks/data.py --archives ml-100k   # just one archive

Each measurement runs in a fresh Python process, so its peak RSS is its own (not the sum of earlier
ones) and caches in memory cannot flatter the second load.

Archives come from $MOVIEREC_MIRROR (default: ../shared/data/movielens beside the project).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # name -> (users, items, ratings): MovieLens-like shapes
    "1M": (6_000, 4_000, 1_000_000),
    "10M": (70_000, 10_000, 10_000_000),
    "32M": (200_000, 80_000, 32_000_000),
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _child(task: str, arg: str, home: str) -> dict:
    """Run one measurement in this process and return its figures (called in a subprocess)."""
    from movierec.data.download import load_dataset

    base = _peak_mb()
    start = time.perf_counter()
    if task == "load":
        dataset = load_dataset(arg, data_dir=home)
        rows = len(dataset.ratings)
    elif task == "synth":
        from movierec.data.synth import synthesize

        users, items, ratings = SIZES[arg]
        dataset = synthesize(users, items, ratings, seed=0)
        rows = len(dataset.ratings)
        seconds = time.perf_counter() - start
        path = Path(home) / f"synth-{arg}.parquet"
        dataset.ratings.to_frame().to_parquet(path, index=False)
        return {"seconds": seconds, "rows": rows, "peak_mb": _peak_mb(), "base_mb": base}
    elif task == "load-file":
        dataset = load_dataset(str(Path(home) / f"synth-{arg}.parquet"))
        rows = len(dataset.ratings)
        _ = dataset.ratings.csr  # what every model builds first
    else:
        raise SystemExit(f"unknown task {task}")
    return {"seconds": time.perf_counter() - start, "rows": rows, "peak_mb": _peak_mb(),
            "base_mb": base}


def _measure(task: str, arg: str, home: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", task, arg, home],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--archives", nargs="*", default=None,
                        help="registry names (default: all in the mirror)")
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return

    from movierec.data.registry import VARIANTS

    mirror = Path(os.environ.get("MOVIEREC_MIRROR", ROOT.parent / "shared" / "data" / "movielens"))
    os.environ["MOVIEREC_MIRROR"] = str(mirror)
    names = args.archives if args.archives is not None else [
        name for name, v in VARIANTS.items() if (mirror / v.filename).is_file()
    ]
    print(f"{'what':<44}{'rows':>12}{'seconds':>10}{'peak MB':>10}")
    with tempfile.TemporaryDirectory(prefix="movierec-bench-") as home:
        for name in names:
            first = _measure("load", name, home)
            cached = min((_measure("load", name, home) for _ in range(3)), key=lambda r: r["seconds"])
            print(f"{name + ' first load (verify+parse)':<44}{first['rows']:>12,}"
                  f"{first['seconds']:>10.2f}{first['peak_mb']:>10.0f}")
            print(f"{name + ' cached load':<44}{cached['rows']:>12,}"
                  f"{cached['seconds']:>10.2f}{cached['peak_mb']:>10.0f}")
        for size in args.sizes:
            made = _measure("synth", size, home)
            loaded = _measure("load-file", size, home)
            print(f"{'synthetic ' + size + ' generate':<44}{made['rows']:>12,}"
                  f"{made['seconds']:>10.2f}{made['peak_mb']:>10.0f}")
            print(f"{'synthetic ' + size + ' load parquet + CSR':<44}{loaded['rows']:>12,}"
                  f"{loaded['seconds']:>10.2f}{loaded['peak_mb']:>10.0f}")
            (Path(home) / f"synth-{size}.parquet").unlink()


if __name__ == "__main__":
    main()
