"""README's service tables: req/s and p50/p99 ms per scenario (known user, fold-in, rating writes), for
1 and 2 worker processes over SQLite and over PostgreSQL, with the 2-worker / 1-worker ratios.

README records, for ials at 50 clients on the shared 2-core VM at full speed: known users 3,930-4,980
req/s, p99 17-23 ms; fold-in 470-529 pairs/s, p99 70-95 ms; writes 2,190-2,420 req/s, p99 31-36 ms.

    python benchmarks/service.py --model ials        # README's table: ials on ml-latest-small, 50 clients
    python benchmarks/service.py --model ials --workers 1,2 --database-url sqlite \
        --database-url postgresql+psycopg://USER@HOST:PORT/postgres   # README's replicas table
    python benchmarks/service.py                     # the default model, biased-mf-als
    python benchmarks/service.py --clients 50 --seconds 10 --model biased-mf-als

``--database-url sqlite`` (the default) is a fresh SQLite file per run; a PostgreSQL URL names a
server on which each run creates a database of its own (``movierec_bench_...``, dropped afterwards;
the URL's user needs CREATEDB). One worker runs pinned to one core and the load generator to the
other; several workers run unpinned (the scheduler shares both cores between them and the load
generator).

Trains the model on all of ml-latest-small (mirror: $MOVIEREC_MIRROR), saves it, and starts
`movierec.service.serve` in its own process (uvicorn, one worker: what `movierec serve` runs). The
load generator is a second process: asyncio with raw keep-alive HTTP/1.1 connections (a full HTTP
client library would cost more CPU than the server on a 2-core machine), each client sending its next
request when the previous answer arrives (closed loop). Scenarios, each after a short warm-up:

- known: ``GET /api/users/{random user}/recommendations?k=10`` (with "because you rated");
  known-plain: the same with ``explain=false``;
- live: each client is one person on the web page with a profile of 20 stored ratings: it rates a
  random movie (``PUT /api/profiles/{id}/ratings/{movie}``, row live-rate) and then reads its
  recommendations (``GET /api/profiles/{id}/recommendations?k=10``, row fold-in), over and over
  (half the clients start with the read).
  Every fold-in answer is computed (the ratings just changed: SQLite read, fold-in, explanations);
- rate: ``PUT`` only, clients sharing the 50 profiles; afterwards a check that no answered write is
  missing from the store.

The service runs with its rate limits off (``MOVIEREC_RATE_LIMITS=off``: every client comes from
one address) and everything else as ``movierec serve`` has it: the query and body limits, the
security headers and the metrics (the JSON access log is off at log level warning).

The service caches answers per model (an answer depends only on the model and the request): with
610 users the known rows measure the warm path after the two-second warm-up; ``--no-cache``
computes every request. The fold-in row is computed with or without the cache.

Targets (issue 5): known-user p99 < 50 ms and fold-in p99 < 100 ms at 50 clients on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "benchmark-admin-token"


# -- the server process -----------------------------------------------------------------------------
def _serve(model_dir: str, port: int, database_url: str, cache_size: int, workers: int) -> None:
    import torch

    torch.set_num_threads(1)
    from movierec.service import serve

    serve(model_dir, port=port, database_url=database_url, admin_token=ADMIN, log_level="warning",
          cache_size=cache_size, workers=workers)


class _Database:
    """A fresh store database for one run: a SQLite file in ``temp``, or a new database on the
    PostgreSQL server of ``url`` (dropped on exit)."""

    def __init__(self, url: str, temp: Path, run: int) -> None:
        self.base, self.temp, self.run = url, temp, run
        self.name: str | None = None

    def __enter__(self) -> str:
        if self.base == "sqlite":
            return f"sqlite:///{self.temp / f'store-{self.run}.sqlite3'}"
        import sqlalchemy as sa

        self.name = f"movierec_bench_{os.getpid()}_{self.run}"
        self._admin(f'CREATE DATABASE "{self.name}"')
        return sa.engine.make_url(self.base).set(database=self.name).render_as_string(hide_password=False)

    def __exit__(self, *exc: object) -> None:
        if self.name is not None:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(self.base, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(statement))
        finally:
            engine.dispose()


def _pin(server_pid: int, cores: list[int]) -> bool:
    """Server on one core, this load generator on another (where there are two): otherwise the
    scheduler often wakes both on one core and each waits for the other's time slice. The server
    then has one core, as a single uvicorn worker can use no more."""
    if len(cores) < 2:
        return False
    os.sched_setaffinity(server_pid, {cores[0]})
    os.sched_setaffinity(0, set(cores[1:]))
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _train(model_name: str, folder: Path) -> dict:
    from movierec.artifacts import save_model
    from movierec.data.download import load_dataset
    from movierec.models.registry import create_model

    dataset = load_dataset("ml-latest-small", mirror=os.environ.get("MOVIEREC_MIRROR"))
    start = time.perf_counter()
    model = create_model(model_name).fit(dataset.ratings, catalog=dataset.catalog)
    seconds = time.perf_counter() - start
    save_model(model, folder, catalog=dataset.catalog, data={"dataset": "ml-latest-small", "split": "none"})
    return {"users": [int(u) for u in model.users_.ids], "movies": [int(m) for m in model.items_.ids],
            "fit_seconds": seconds, "ratings": len(dataset.ratings)}


# -- a minimal HTTP/1.1 client ----------------------------------------------------------------------
class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("PUT", "POST"):
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    def close(self) -> None:
        self.writer.close()


async def _load(port: int, clients: int, seconds: float, make_request, warmup: float = 2.0) -> dict:
    """Closed loop: each client sends, waits for the answer, sends the next. ``make_request(rng,
    client, step)`` returns (label, method, path, headers, body, on_success); latencies after the
    warm-up, per label."""
    connections = [await Connection.open(port) for _ in range(clients)]
    latencies: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + seconds

    async def client(connection: Connection, index: int) -> None:
        rng = random.Random(index)
        step = 0
        while True:
            label, method, path, headers, body, answered = make_request(rng, index, step)
            step += 1
            sent = time.perf_counter()
            if sent >= stop:
                return
            status, _ = await connection.request(method, path, headers, body)
            done = time.perf_counter()
            if status < 400 and answered is not None:
                answered()
            if sent >= measure_from:
                latencies.setdefault(label, []).append(done - sent)
                errors[label] = errors.get(label, 0) + (status >= 400)

    await asyncio.gather(*(client(c, i) for i, c in enumerate(connections)))
    for connection in connections:
        connection.close()
    out = {}
    for label, values in latencies.items():
        ms = np.array(values) * 1000
        out[label] = {"requests": len(ms), "errors": errors[label], "throughput": len(ms) / seconds,
                      "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                      "max_ms": float(ms.max())}
    return out


async def _scenarios(port: int, info: dict, clients: int, seconds: float) -> dict:
    setup = await Connection.open(port)
    rng = random.Random(0)
    profiles = []
    for _ in range(50):
        _, body = await setup.request("POST", "/api/profiles", body=b"{}")
        made = json.loads(body)
        auth = {"Authorization": f"Bearer {made['token']}"}
        for movie in rng.sample(info["movies"][:2000], 20):
            rating = json.dumps({"rating": rng.choice([1, 2, 3, 3.5, 4, 4, 4.5, 5])}).encode()
            await setup.request("PUT", f"/api/profiles/{made['id']}/ratings/{movie}", auth, rating)
        profiles.append((made["id"], auth))
    setup.close()
    users = info["users"]

    written: dict[tuple[str, int], float] = {}

    def rating_request(profile: str, auth: dict[str, str], r: random.Random, label: str):  # type: ignore[no-untyped-def]
        movie = r.choice(info["movies"])
        value = r.choice([0.5, 1.0, 2.5, 3.0, 4.0, 5.0])

        def answered() -> None:  # stored once the server says so
            written[(profile, movie)] = value

        body = json.dumps({"rating": value}).encode()
        return label, "PUT", f"/api/profiles/{profile}/ratings/{movie}", auth, body, answered

    def known(r: random.Random, client: int, step: int):  # type: ignore[no-untyped-def]
        return "known", "GET", f"/api/users/{r.choice(users)}/recommendations?k=10", None, b"", None

    def known_plain(r: random.Random, client: int, step: int):  # type: ignore[no-untyped-def]
        return ("known-plain", "GET", f"/api/users/{r.choice(users)}/recommendations?k=10&explain=false",
                None, b"", None)

    def live(r: random.Random, client: int, step: int):  # type: ignore[no-untyped-def]
        # one person per client on the web page: rate a movie, then read the updated recommendations
        # (folded in from the changed ratings: never an answer seen before)
        profile, auth = profiles[client % len(profiles)]
        # half the clients start with a read: people do not act in lockstep, and clients that all
        # start on the same step stay in phase (a burst of writes, then a burst of fold-ins)
        if (step + client) % 2 == 0:
            return rating_request(profile, auth, r, "live-rate")
        return "fold-in", "GET", f"/api/profiles/{profile}/recommendations?k=10", auth, b"", None

    def rate(r: random.Random, client: int, step: int):  # type: ignore[no-untyped-def]
        profile, auth = r.choice(profiles)  # clients share profiles: concurrent writes to one profile
        return rating_request(profile, auth, r, "rate")

    results = {}
    for scenario in (known, known_plain, live, rate):
        results.update(await _load(port, clients, seconds, scenario))
    # every write that was answered is in the store (pairs written by two clients: either value)
    check = await Connection.open(port)
    lost = 0
    for profile, auth in profiles:
        _, body = await check.request("GET", f"/api/profiles/{profile}", auth)
        stored = {r["movie"]["item"]: r["rating"] for r in json.loads(body)["ratings"]}
        lost += sum(1 for (p, movie) in written if p == profile and movie not in stored)
    check.close()
    results["lost"] = lost
    return results


def _run(folder: Path, info: dict, database_url: str, workers: int, args: argparse.Namespace,
         cores: list[int]) -> tuple[dict, str]:
    """Start the server, run every scenario against it, stop it; (results, where it ran)."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           # 50 clients on one address are the point here: the per-address limit would answer 429s
           "MOVIEREC_RATE_LIMITS": "off"}
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))  # a previous run's pinning must not pass on to this server
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(folder), str(port), database_url,
                               "0" if args.no_cache else "10000", str(workers)], env=env)
    pinned = workers == 1 and _pin(server.pid, cores)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        if workers > 1:
            time.sleep(3)  # the other workers load the model too
        results = asyncio.run(_scenarios(port, info, args.clients, args.seconds))
        if shutil.which("wrk"):
            results["known-wrk"] = _wrk(port, info, args.clients, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    placement = ("server and clients on separate cores" if pinned
                 else "server processes and clients sharing the cores")
    return results, placement


def _wrk(port: int, info: dict, clients: int, seconds: float) -> dict:
    """The known scenario driven by wrk (C, one thread): a load generator that costs the machine far
    less than this script's asyncio one, so more of the two cores is left to the server processes."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        users = ",".join(str(u) for u in info["users"])
        script.write(f"local users = {{{users}}}\nmath.randomseed(7)\nrequest = function()\n"
                     f"  return wrk.format('GET', '/api/users/' .. users[math.random(#users)] .. "
                     f"'/recommendations?k=10')\nend\n")
    try:
        command = ["wrk", "-t1", f"-c{clients}", "-s", script.name, f"http://127.0.0.1:{port}"]
        subprocess.run([*command[:2], "-d2s", *command[2:]], capture_output=True, check=True)  # warm-up
        out = subprocess.run([*command[:2], f"-d{seconds:g}s", "--latency", *command[2:]],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)

    def ms(text: str) -> float:
        value, unit = float(text[:-2] if text.endswith(("ms", "us")) else text[:-1]), text[-2:]
        return value / 1000 if unit == "us" else value if unit == "ms" else value * 1000

    lines = out.splitlines()
    fields = {line.split()[0]: line.split()[1] for line in lines if line.strip()[:3] in ("50%", "99%")}
    latency = next(line.split() for line in lines if line.strip().startswith("Latency"))
    requests = int(next(line.split()[0] for line in lines if "requests in" in line))
    errors = sum(int(line.split(":")[1]) for line in lines if "Non-2xx" in line)
    return {"requests": requests, "errors": errors, "throughput": requests / seconds,
            "p50_ms": ms(fields["50%"]), "p99_ms": ms(fields["99%"]), "max_ms": ms(latency[3])}


def _print(results: dict) -> None:
    print(f"{'scenario':<12} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'errors':>7}")
    for name, row in results.items():
        if name == "lost":
            continue
        print(f"{name:<12} {row['requests']:>9,} {row['throughput']:>8.0f} {row['p50_ms']:>8.1f} "
              f"{row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} {row['errors']:>7}")
    print(f"ratings lost under concurrent writes: {results['lost']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="biased-mf-als")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--model-dir", type=Path, help="serve this artifact instead of training one "
                        "(its movies and users are read from it)")
    parser.add_argument("--no-cache", action="store_true",
                        help="serve with the answer cache off (every request computed)")
    parser.add_argument("--workers", default="1",
                        help="worker processes, comma-separated for several runs (e.g. 1,2)")
    parser.add_argument("--database-url", action="append",
                        help="the store: 'sqlite' (a fresh file, the default) or a PostgreSQL server's "
                        "SQLAlchemy URL; repeat for several")
    parser.add_argument("--serve", nargs=5, help=argparse.SUPPRESS)  # child: dir port url cache workers
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve[0], int(args.serve[1]), args.serve[2], int(args.serve[3]), int(args.serve[4]))
        return
    workers_list = [int(w) for w in args.workers.split(",")]
    databases = args.database_url or ["sqlite"]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

    with tempfile.TemporaryDirectory() as temp:
        if args.model_dir is not None:
            from movierec.artifacts import load_model

            folder = args.model_dir
            model = load_model(folder).model
            info = {"users": model.users_.ids.tolist(), "movies": model.items_.ids.tolist()}
            print(f"{model.name} from {folder}; {len(info['users'])} users, {len(info['movies'])} movies")
        else:
            folder = Path(temp) / "model"
            info = _train(args.model, folder)
            print(f"{args.model} on ml-latest-small ({info['ratings']:,} ratings) fitted in "
                  f"{info['fit_seconds']:.1f} s; {len(info['users'])} users, {len(info['movies'])} movies")
        runs: dict[tuple[str, int], dict] = {}
        cache = "answer cache off" if args.no_cache else "answer cache on (warm after the warm-up)"
        for number, base in enumerate(databases):
            kind = "sqlite" if base == "sqlite" else "postgresql"
            for workers in workers_list:
                with _Database(base, Path(temp), len(runs)) as database_url:
                    results, placement = _run(folder, info, database_url, workers, args, cores)
                runs[(kind if databases.count(base) == 1 else f"{kind}#{number}", workers)] = results
                print(f"\n{kind}, {workers} worker{'s' if workers > 1 else ''}: {args.clients} concurrent "
                      f"clients on loopback, {args.seconds:g} s each, {os.cpu_count()} cores ({placement}), "
                      f"{cache}")
                _print(results)

    print()
    for (kind, workers), results in runs.items():
        targets = [("known-user p99 < 50 ms", results["known"]["p99_ms"] < 50),
                   ("fold-in p99 < 100 ms", results["fold-in"]["p99_ms"] < 100),
                   ("zero lost ratings", results["lost"] == 0)]
        for label, ok in targets:
            print(f"  {'met' if ok else 'MISSED':<6} {label} ({kind}, {workers} worker(s))")
    one = min(workers_list)
    for (kind, workers), results in runs.items():
        if workers == one or (kind, one) not in runs:
            continue
        base = runs[(kind, one)]
        ratios = ", ".join(f"{name} x{results[name]['throughput'] / base[name]['throughput']:.2f}"
                           for name in ("known", "known-wrk", "fold-in", "rate") if name in results)
        print(f"  {kind}: {workers} workers / {one}: throughput {ratios}")
        for name in ("known", "known-wrk"):
            if name in results:
                ok = results[name]["throughput"] >= 1.6 * base[name]["throughput"]
                print(f"  {'met' if ok else 'MISSED':<6} {workers} workers >= 1.6x {one} for known users, "
                      f"{name} ({kind})")


if __name__ == "__main__":
    main()
