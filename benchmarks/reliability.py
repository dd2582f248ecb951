"""Issue 16's reliability figures: what survives kill -9, what tampering is refused, what bad input is
turned away cleanly.

    python benchmarks/reliability.py                 # 50 kill -9 rounds on SQLite and on PostgreSQL
    python benchmarks/reliability.py --rounds 10 --no-postgres
    python benchmarks/reliability.py --only artifacts,files

Sections (``--only`` picks some):

- ``kill``: a real `movierec serve` (a small biased-MF model, synthetic data) with ``--clients``
  threads each putting ratings for its own profile; SIGKILL at a random moment (0.3 to 1.5 s of
  writing), restart on the same database, and check every write acknowledged so far (2xx): its last
  acknowledged value must be stored (else *lost*), and every stored row must be explained by an
  acknowledged or unacknowledged write, with no rating left without its profile (else *half*). Rounds
  run back to back on one database, so each also re-checks all earlier rounds' writes. SQLite runs
  with ``synchronous=FULL`` (the store's setting); PostgreSQL is a throwaway server of Debian's
  ``postgresql`` package (`tests/service/pgserver.py`), skipped where it is missing.
- ``artifacts``: model folders truncated, altered by one byte, swapped between models, given a
  manifest that does not match (checksum, tensor shape or dtype), and forged (the tampering done and
  the manifest's checksums and tensor list recomputed to match); each loaded with `load_model`:
  *refused* (`DataError`/`IntegrityError`, one line), *accepted*, or *crashed* (anything else). A few
  are also given to ``movierec recommend --model-dir``, which must exit 2 with one line.
- ``files``: bad ratings files (missing columns, non-numeric, out of scale, inf, NaN, empty, header
  only, wrong encoding, binary, duplicate rows, an empty movies file) given to ``movierec train``:
  *clean* (exit 2, one ``error:`` line, no traceback), *accepted* (exit 0), or *crashed* (anything
  else).

Figures depend on the machine's load (rounds take longer, not fewer writes are kept): say which
machine and how loaded it was when quoting them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "service"), str(ROOT / "src")]

from crashes import COMMAND, env_with_source, kill_rounds  # noqa: E402
from movierec.artifacts import load_model, save_model  # noqa: E402
from movierec.data.synth import synthesize  # noqa: E402
from movierec.errors import DataError  # noqa: E402
from movierec.models.registry import create_model  # noqa: E402


# -- kill -9 -------------------------------------------------------------------------------------------
def kill_section(root: Path, rounds: int, clients: int, postgres: bool, seed: int) -> None:
    data = synthesize(60, 80, 1500, seed=3)
    model_dir = root / "model"
    save_model(create_model("biased-mf-als", factors=4, epochs=2).fit(data.ratings), model_dir,
               catalog=data.catalog)
    env = env_with_source(MOVIEREC_DATA=str(root / "data"))
    backends: list[tuple[str, Callable[[], str]]] = [
        ("sqlite", lambda: f"sqlite:///{root / 'store.sqlite3'}")]
    server = None
    if postgres:
        from pgserver import PostgresServer, binaries

        bin_dir = binaries()
        if bin_dir is None:
            print("postgresql: skipped (needs Debian's postgresql package)")
        else:
            server = PostgresServer(bin_dir).start()
            backends.append(("postgresql", server.new_database))
    print(f"kill -9 rounds: {clients} writer threads, SIGKILL after 0.3-1.5 s of writing, restart, check")
    print(f"{'database':<12}{'rounds':>8}{'acknowledged':>14}{'lost':>7}{'half':>7}{'seconds':>9}")
    try:
        for name, make_url in backends:
            start = time.perf_counter()
            acknowledged = lost = half = done = 0
            url = make_url()
            for result in kill_rounds(model_dir, url, rounds, env=env, seed=seed, clients=clients):
                done += 1
                print(f"  {name} round {done}: {result.acknowledged} acknowledged, lost {result.lost}, "
                      f"half {result.half}", file=sys.stderr, flush=True)
                acknowledged += result.acknowledged
                lost = max(lost, result.lost)  # each round re-checks every earlier write
                half = max(half, result.half)
            print(f"{name:<12}{done:>8}{acknowledged:>14,}{lost:>7}{half:>7}"
                  f"{time.perf_counter() - start:>9.0f}", flush=True)
    finally:
        if server is not None:
            server.remove()


# -- tampered artifacts ------------------------------------------------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reseal(folder: Path) -> None:
    """Recompute the manifest's checksums and tensor list from the files: what a forger does."""
    from safetensors import safe_open

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {name: _sha(folder / name) for name in manifest["files"] if (folder / name).exists()}
    if "tensors" in manifest:
        names = {"F64": "float64", "F32": "float32", "I64": "int64", "I32": "int32"}
        with safe_open(str(folder / "model.safetensors"), "numpy") as handle:
            manifest["tensors"] = {
                k: {"dtype": names.get(handle.get_slice(k).get_dtype(), "?"),
                    "shape": list(handle.get_slice(k).get_shape())} for k in handle.keys()}  # noqa: SIM118
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _rewrite_tensors(folder: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


def _cases(models: dict[str, Path]) -> list[tuple[str, str, Callable[[Path], None]]]:
    """(case, model, tamper) triples."""
    cases: list[tuple[str, str, Callable[[Path], None]]] = []
    for model in models:
        for name in ("model.safetensors", "manifest.json", "catalog.parquet"):
            for fraction in (0.0, 0.5, 0.99):
                def truncate(folder: Path, name: str = name, fraction: float = fraction) -> None:
                    data = (folder / name).read_bytes()
                    (folder / name).write_bytes(data[: int(len(data) * fraction)])
                cases.append((f"truncate {name} to {fraction:.0%}", model, truncate))
            for offset in (0.1, 0.5, 0.9):
                def flip(folder: Path, name: str = name, offset: float = offset) -> None:
                    data = bytearray((folder / name).read_bytes())
                    data[int(len(data) * offset)] ^= 0x01
                    (folder / name).write_bytes(bytes(data))
                cases.append((f"flip a bit of {name} at {offset:.0%}", model, flip))
        other = next(m for m in models if m != model)

        def swap(folder: Path, other: str = other) -> None:
            shutil.copy(models[other] / "model.safetensors", folder / "model.safetensors")
        cases.append((f"swap model.safetensors from {other}", model, swap))
        cases.append((f"swap model.safetensors from {other}, resealed", model,
                      lambda f, s=swap: (s(f), _reseal(f))))

        def swap_catalog(folder: Path) -> None:
            frame = __import__("pandas").read_parquet(folder / "catalog.parquet")
            frame["item"] = frame["item"].iloc[::-1].to_numpy()
            frame.to_parquet(folder / "catalog.parquet", index=False)
        cases.append(("catalog rows shuffled (checksum mismatch)", model, swap_catalog))

        def manifest_edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
            def edit(folder: Path) -> None:
                manifest = json.loads((folder / "manifest.json").read_text())
                change(manifest)
                (folder / "manifest.json").write_text(json.dumps(manifest))
            return edit
        cases += [
            ("manifest: wrong checksum", model,
             manifest_edit(lambda m: m["files"].update({"model.safetensors": "0" * 64}))),
            ("manifest: a tensor's shape changed", model,
             manifest_edit(lambda m: m["tensors"]["seen.data"].update({"shape": [1]}))),
            ("manifest: a tensor's dtype changed", model,
             manifest_edit(lambda m: m["tensors"]["seen.data"].update({"dtype": "float64"}))),
            ("manifest: a file it does not list", model,
             manifest_edit(lambda m: m["files"].update({"../../etc/passwd": "0" * 64}))),
            ("manifest: users count changed", model,
             manifest_edit(lambda m: m["shape"].update({"users": m["shape"]["users"] - 1}))),
        ]

        def forged(change: Callable[[dict[str, np.ndarray]], None]) -> Callable[[Path], None]:
            def forge(folder: Path) -> None:
                _rewrite_tensors(folder, change)
                _reseal(folder)
            return forge

        def cut(key: str) -> Callable[[dict[str, np.ndarray]], None]:
            return lambda t: t.update({key: t[key][:-1].copy()})

        def scale(key: str) -> Callable[[dict[str, np.ndarray]], None]:
            return lambda t: t.update({key: (t[key] * 1.5 + 0.1).astype(t[key].dtype)})

        def index_out(t: dict[str, np.ndarray]) -> None:
            t["seen.indices"] = t["seen.indices"].copy()
            t["seen.indices"][0] = 10**6

        def nan(key: str) -> Callable[[dict[str, np.ndarray]], None]:
            def put(t: dict[str, np.ndarray]) -> None:
                t[key] = t[key].copy()
                t[key].flat[0] = np.nan
            return put

        cases += [
            ("forged: user array cut short, resealed", model, forged(cut("state.user_bias"))),
            ("forged: item array cut short, resealed", model, forged(cut("state.item_bias"))),
            ("forged: vocabulary cut short, resealed", model, forged(cut("vocab.users"))),
            ("forged: item factors scaled, resealed", model, forged(scale("state.item_bias"))),
            ("forged: rating index out of range, resealed", model, forged(index_out)),
            ("forged: NaN in user biases, resealed", model, forged(nan("state.user_bias"))),
            ("forged: seen ratings off the scale, resealed", model, forged(scale("seen.data"))),
        ]
    return cases


def artifacts_section(root: Path, cli_samples: int) -> None:
    data = synthesize(60, 80, 1500, seed=3)
    other = synthesize(60, 80, 1500, seed=4)
    models = {}
    for name, model, ratings in (("biased-mf-als", create_model("biased-mf-als", factors=4, epochs=2), data),
                                 ("biased-mf-als#2", create_model("biased-mf-als", factors=4, epochs=2),
                                  other)):
        models[name] = save_model(model.fit(ratings.ratings), root / "clean" / name.replace("#", "-"),
                                  catalog=ratings.catalog)
    counts = {"refused": 0, "accepted": 0, "crashed": 0}
    accepted: list[str] = []
    crashed: list[str] = []
    refused_folders: list[tuple[str, Path]] = []
    cases = _cases(models)
    for number, (case, model, tamper) in enumerate(cases):
        folder = root / "tampered" / str(number)
        shutil.copytree(models[model], folder)
        tamper(folder)
        try:
            load_model(folder)
        except DataError as exc:
            counts["refused"] += 1
            assert "\n" not in str(exc)
            refused_folders.append((case, folder))
        except Exception as exc:  # counted and shown: this is what the benchmark measures
            counts["crashed"] += 1
            crashed.append(f"{case}: {type(exc).__name__}: {exc}")
        else:
            counts["accepted"] += 1
            accepted.append(case)
    print(f"\nartifacts tampered: {len(cases)}; refused {counts['refused']}, accepted {counts['accepted']}, "
          f"crashed {counts['crashed']}")
    for line in accepted:
        print(f"  accepted: {line}")
    for line in crashed:
        print(f"  crashed:  {line}")
    rng = random.Random(0)
    sample = rng.sample(refused_folders, min(cli_samples, len(refused_folders)))
    clean = 0
    for case, folder in sample:
        result = subprocess.run([*COMMAND, "recommend", "--model-dir", str(folder), "--user", "1"],
                                capture_output=True, text=True, env=env_with_source(), timeout=300)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr:
            clean += 1
        else:
            print(f"  CLI not clean on '{case}': exit {result.returncode}: {result.stderr[-300:]}")
    print(f"  through `movierec recommend --model-dir`: {clean} of {len(sample)} exit 2 with one line")


# -- bad ratings files -----------------------------------------------------------------------------
def _bad_files(folder: Path) -> list[tuple[str, Path, list[str]]]:
    good = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{(u + i) % 5 + 1},{1000 + u * 10 + i}"
                                                   for u in range(1, 8) for i in range(1, 9)]

    def write(name: str, text: str | bytes) -> Path:
        path = folder / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    body = "\n".join(good) + "\n"
    empty_movies = write("empty-movies.csv", "")
    return [
        ("missing rating column", write("no-rating.csv", "userId,movieId\n1,2\n3,4\n"), []),
        ("missing columns (one column)", write("one-column.csv", "userId\n1\n2\n"), []),
        ("non-numeric rating", write("text-rating.csv", body + "1,99,great,5000\n"), []),
        ("non-numeric timestamp", write("text-time.csv", body + "1,99,4,yesterday\n"), []),
        ("out-of-scale rating (-3)", write("negative.csv", body + "1,99,-3,5000\n"), []),
        ("out-of-scale rating (1e9)", write("huge.csv", body + "1,99,1e9,5000\n"), []),
        ("inf rating", write("inf.csv", body + "1,99,inf,5000\n"), []),
        ("NaN rating", write("nan.csv", body + "1,99,nan,5000\n"), []),
        ("empty file", write("empty.csv", ""), []),
        ("header only", write("header.csv", good[0] + "\n"), []),
        ("wrong encoding (UTF-16)", write("utf16.csv", body.encode("utf-16")), []),
        ("wrong encoding (latin-1 ids)", write("latin1.csv", (good[0] + "\n" + "\n".join(
            f"usér{u},{i},{(u + i) % 5 + 1},{1000 + i}" for u in range(1, 5) for i in range(1, 6))
            + "\n").encode("latin-1")), []),
        ("binary garbage", write("garbage.csv", random.Random(1).randbytes(4096)), []),
        ("duplicate rows", write("duplicates.csv", body + "\n".join(good[1:6]) + "\n"), []),
        ("empty movies file", write("ok.csv", body), ["--movies", str(empty_movies)]),
    ]


def files_section(root: Path) -> None:
    folder = root / "bad-files"
    folder.mkdir()
    counts = {"clean": 0, "accepted": 0, "crashed": 0}
    print("\nbad ratings files given to `movierec train FILE --model popularity --split none`:")
    print(f"  {'case':<32}{'exit':>5}  outcome")
    for case, path, extra in _bad_files(folder):
        result = subprocess.run([*COMMAND, "train", str(path), "--model", "popularity", "--split", "none",
                                 "--out", str(root / "bad-out" / path.stem), *extra],
                                capture_output=True, text=True, env=env_with_source(
                                    MOVIEREC_DATA=str(root / "data")), timeout=300)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if result.returncode == 2 and "Traceback" not in result.stderr and len(lines) == 1:
            outcome = "clean"
            note = lines[0][:90]
        elif result.returncode == 0:
            outcome = "accepted"
            note = (lines[0][:90] if lines else "")
        else:
            outcome = "crashed"
            note = (lines[-1][:90] if lines else "")
        counts[outcome] += 1
        print(f"  {case:<32}{result.returncode:>5}  {outcome}: {note}")
    print(f"  clean exit 2: {counts['clean']}, accepted: {counts['accepted']}, crashed: {counts['crashed']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50, help="kill -9 rounds per database")
    parser.add_argument("--clients", type=int, default=4, help="writer threads")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--only", default="kill,artifacts,files", help="sections, comma-separated")
    parser.add_argument("--cli-samples", type=int, default=5,
                        help="tampered folders also tried through the CLI")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sections = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="movierec-reliability-") as temp:
        root = Path(temp)
        if "artifacts" in sections:
            artifacts_section(root, args.cli_samples)
        if "files" in sections:
            files_section(root)
        if "kill" in sections:
            print()
            kill_section(root, args.rounds, args.clients, not args.no_postgres, args.seed)


if __name__ == "__main__":
    main()
