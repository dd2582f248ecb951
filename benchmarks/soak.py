"""Soak: many clients reading and writing against a real `movierec serve` process for minutes; prints
requests, server errors (5xx), lost writes and the server's memory at the start and the end.

    python benchmarks/soak.py                      # 50 clients, 3 minutes, SQLite, one worker
    python benchmarks/soak.py --minutes 7 --workers 2
    python benchmarks/soak.py --database-url postgresql+psycopg://USER@HOST/DB --minutes 5

Each client is one person on the web page: it creates a profile, then over and over rates a movie
(PUT, half the requests), removes one of its ratings (DELETE), reads its live recommendations, reads
its profile, a known user's recommendations or searches titles. Every write the service acknowledged
(2xx) is remembered: the last acknowledged state of each (profile, movie). At the end the server is
stopped (SIGTERM) and started again on the same database, and every profile is read back: a rating
acknowledged and not since removed that is missing or different, or a removed one that is back,
counts as a lost write.

The model is trained here on synthetic data (600 users, 1,500 movies, 60,000 ratings) unless
``--model-dir`` names one. The server runs with the rate limits off (``MOVIEREC_RATE_LIMITS=off``:
every client comes from one address; ``--with-limits`` keeps the defaults, and 429s are then
expected and counted). Memory: the resident set of the server (all its processes) after a warm-up,
then every 10 s; "end" is the last sample before the stop. Figures from a shared, loaded 2-core
machine say little about speed: this measures errors, durability and memory growth.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _train(folder: Path) -> None:
    from movierec.artifacts import save_model
    from movierec.data.synth import synthesize
    from movierec.models.registry import create_model

    data = synthesize(600, 1500, 60_000, seed=7)
    model = create_model("biased-mf-als", factors=16, epochs=5).fit(data.ratings)
    save_model(model, folder, catalog=data.catalog, data={"dataset": "synthetic", "split": "none"})


class Server:
    """`movierec serve` in its own process group (the CLI, as a user starts it)."""

    def __init__(self, model_dir: Path, database_url: str, workers: int, limits: bool, log: Path) -> None:
        self.port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        if not limits:
            env["MOVIEREC_RATE_LIMITS"] = "off"
        command = [sys.executable, "-c", "from movierec.cli import main; main()", "serve", "--model-dir",
                   str(model_dir), "--port", str(self.port), "--database-url", database_url,
                   "--workers", str(workers)]
        self.log = log.open("ab")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=self.log,
                                        start_new_session=True)
        self.workers = workers

    def wait_ready(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with code {self.process.returncode}: "
                                 + Path(self.log.name).read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/api/health", timeout=2).status_code == 200:
                    if self.workers > 1:
                        time.sleep(5)  # the other workers load the model too
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit("the server did not start in time")

    def rss(self) -> int:
        """Bytes resident in the server and its worker processes."""
        try:
            main = psutil.Process(self.process.pid)
            return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)])
        except psutil.Error:
            return 0

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


class Tally:
    def __init__(self) -> None:
        self.requests = 0
        self.statuses: dict[int, int] = {}
        self.failures = 0  # no answer at all (connection reset, timeout)
        self.acknowledged = 0
        # profile id -> {movie: rating (None: removed)}: the last acknowledged state
        self.expected: dict[str, dict[int, float | None]] = {}
        self.tokens: dict[str, str] = {}

    def count(self, status: int) -> None:
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def _client(base: str, number: int, movies: list[int], users: list[str], stop_at: float,
                  tally: Tally) -> None:
    rng = random.Random(number)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        made = await http.post("/api/profiles", json={"name": f"soak {number}"})
        tally.count(made.status_code)
        if made.status_code != 201:
            return
        profile, token = made.json()["id"], made.json()["token"]
        tally.tokens[profile] = token
        mine = tally.expected[profile] = {}
        auth = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < stop_at:
            roll = rng.random()
            try:
                if roll < 0.5:
                    movie, value = rng.choice(movies), rng.randint(1, 10) / 2
                    answer = await http.put(f"/api/profiles/{profile}/ratings/{movie}",
                                            json={"rating": value}, headers=auth)
                    if answer.status_code == 200:
                        mine[movie] = value
                        tally.acknowledged += 1
                elif roll < 0.6:
                    rated = [m for m, v in mine.items() if v is not None]
                    if not rated:
                        continue
                    movie = rng.choice(rated)
                    answer = await http.delete(f"/api/profiles/{profile}/ratings/{movie}", headers=auth)
                    if answer.status_code == 204:
                        mine[movie] = None
                        tally.acknowledged += 1
                elif roll < 0.8:
                    answer = await http.get(f"/api/profiles/{profile}/recommendations?k=10", headers=auth)
                elif roll < 0.85:
                    answer = await http.get(f"/api/profiles/{profile}", headers=auth)
                elif roll < 0.95:
                    answer = await http.get(f"/api/users/{rng.choice(users)}/recommendations?k=10")
                else:
                    answer = await http.get("/api/movies", params={"q": rng.choice(["the", "love", "night"])})
                tally.count(answer.status_code)
            except httpx.HTTPError:
                tally.failures += 1
                tally.requests += 1


async def _soak(base: str, clients: int, seconds: float, tally: Tally, server: Server,
                memory: list[tuple[float, int]]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        movies = [m["item"] for m in (await http.get("/api/movies", params={"limit": 100})).json()["movies"]]
        users = [str(u) for u in (await http.get("/api/users", params={"limit": 1000})).json()["sample"]]
    start = time.monotonic()
    stop_at = start + seconds
    tasks = [asyncio.create_task(_client(base, n, movies, users, stop_at, tally)) for n in range(clients)]
    warm = False
    while not all(task.done() for task in tasks):
        await asyncio.sleep(1)
        elapsed = time.monotonic() - start
        if not warm and elapsed >= min(20.0, seconds / 4):
            memory.append((elapsed, server.rss()))  # after the warm-up: caches and pools have grown
            warm = True
        elif warm and elapsed - memory[-1][0] >= 10:
            memory.append((elapsed, server.rss()))
    await asyncio.gather(*tasks)


def _lost(base: str, tally: Tally) -> tuple[int, int]:
    """(lost writes, ratings checked) against what the service acknowledged."""
    lost = checked = 0
    with httpx.Client(base_url=base, timeout=30) as http:
        for profile, expected in tally.expected.items():
            auth = {"Authorization": f"Bearer {tally.tokens[profile]}"}
            answer = http.get(f"/api/profiles/{profile}", headers=auth)
            if answer.status_code != 200:
                lost += sum(v is not None for v in expected.values())
                continue
            stored = {row["movie"]["item"]: row["rating"] for row in answer.json()["ratings"]}
            for movie, value in expected.items():
                checked += 1
                if stored.get(movie) != value:
                    lost += 1
    return lost, checked


def _counted(base: str) -> dict[str, int]:
    """Requests by status class in the server's /metrics (all workers), /metrics itself left out."""
    text = httpx.get(base + "/metrics", timeout=30).text
    counted: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("movierec_http_requests_total{") and 'route="/metrics"' not in line:
            status = line.split('status="', 1)[1][0] + "xx"
            counted[status] = counted.get(status, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--model-dir", type=Path, help="serve this model instead of training one")
    parser.add_argument("--database-url", help="the store (default: a fresh SQLite file)")
    parser.add_argument("--with-limits", action="store_true", help="keep the default rate limits on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="movierec-soak-") as temp:
        folder = args.model_dir or Path(temp) / "model"
        if args.model_dir is None:
            _train(folder)
        database_url = args.database_url or f"sqlite:///{Path(temp) / 'soak.sqlite3'}"
        log = Path(temp) / "server.log"
        server = Server(folder, database_url, args.workers, args.with_limits, log)
        tally, memory = Tally(), []
        try:
            server.wait_ready()
            base = f"http://127.0.0.1:{server.port}"
            began = time.monotonic()
            asyncio.run(_soak(base, args.clients, args.minutes * 60, tally, server, memory))
            elapsed = time.monotonic() - began
            time.sleep(1.5)  # every worker has written its metrics since the last request
            counted = _counted(base)
        finally:
            server.stop()
        # the same database through a freshly started server: what was acknowledged must be there
        again = Server(folder, database_url, 1, args.with_limits, log)
        try:
            again.wait_ready()
            lost, checked = _lost(f"http://127.0.0.1:{again.port}", tally)
        finally:
            again.stop()
        errors = sum(n for status, n in tally.statuses.items() if status >= 500)
        refused = tally.statuses.get(429, 0)
        mib = [rss / 2**20 for _, rss in memory]
        print(f"soak: {args.clients} clients, {args.workers} worker(s), {elapsed:.0f} s, "
              f"{database_url.split(':')[0]}, rate limits {'on' if args.with_limits else 'off'}")
        print(f"requests {tally.requests:,} ({tally.requests / elapsed:,.0f}/s); statuses "
              + ", ".join(f"{s}: {n:,}" for s, n in sorted(tally.statuses.items()))
              + f"; no answer: {tally.failures}")
        print(f"5xx: {errors}; 429: {refused}; the server's /metrics counted "
              + ", ".join(f"{k}: {v:,}" for k, v in sorted(counted.items()))
              + " (the soak's requests, and the health checks and 2 look-ups that set it up)")
        print(f"writes acknowledged {tally.acknowledged:,}; (profile, movie) states checked after a restart "
              f"{checked:,}; lost {lost}")
        if mib:
            print(f"server RSS MiB: start {mib[0]:.0f} (at {memory[0][0]:.0f} s), max {max(mib):.0f}, "
                  f"end {mib[-1]:.0f} (at {memory[-1][0]:.0f} s); every sample: "
                  + " ".join(f"{m:.0f}" for m in mib))
        if errors or lost or tally.failures:
            print("the server's log ends:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
            raise SystemExit(1)


if __name__ == "__main__":
    main()
