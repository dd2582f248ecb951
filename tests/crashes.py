"""Killing things on purpose, for the durability tests and `benchmarks/reliability.py`.

- `crash_points`: run a function in a forked child that SIGKILLs itself just before the n-th call to
  one of the file-system steps of a write (a file written, an fsync, a rename, the folder exchange, a
  delete), for n = 1, 2, ... until the function completes: every step of the write protocol is a
  place where the process dies.
- `kill_after`: start a command and SIGKILL it after a delay (random moments, seeded by the caller).
- `kill_rounds`: a real `movierec serve` process, client threads writing ratings, one
  SIGKILL while they write; what each client had acknowledged (2xx), and what was in flight, for
  checking against the database after a restart.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "movierec.cli"]


def env_with_source(**extra: str) -> dict[str, str]:
    """The environment for a `movierec` subprocess: this checkout's ``src`` first on the path."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


# -- deterministic kill points ---------------------------------------------------------------------
def _steps() -> list[tuple[Any, str]]:
    """(owner, attribute) of every step where `crash_points` may kill: file writes, fsyncs,
    renames, the exchange, deletes."""
    import pathlib

    import pandas as pd

    import movierec._files as files
    import movierec.artifacts as artifacts

    return [(os, "fsync"), (os, "rename"), (os, "replace"), (shutil, "rmtree"), (files, "_exchange"),
            (artifacts, "save_file"), (pathlib.Path, "write_text"), (pd.DataFrame, "to_parquet")]


def _arm(n: int) -> None:
    """Make this process SIGKILL itself just before its n-th step (see `_steps`)."""
    count = [0]

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)
        return step

    for owner, name in _steps():
        setattr(owner, name, wrap(getattr(owner, name)))


def crash_points(action: Callable[[], None], check: Callable[[int], None], limit: int = 100) -> int:
    """Fork, and in the child kill the process (SIGKILL) just before the n-th step of ``action``
    (see `_steps`); then call ``check(n)`` in this process. For n = 1, 2, ... until ``action`` runs
    to its end without reaching step n. Returns how many kill points were tried (n - 1).

    POSIX only (fork). ``action`` must not need threads of this process (a forked child has one).
    """
    for n in range(1, limit + 1):
        pid = os.fork()
        if pid == 0:  # the child: count steps, die at the n-th
            try:
                signal.alarm(120)  # a child stuck on a lock another thread held at the fork dies
                _arm(n)
                action()
                os._exit(0)
            except BaseException:  # the child must never return into the caller (pytest)
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0, f"the action failed (exit {os.WEXITSTATUS(status)})"
            check(n)
            return n - 1
        assert os.WTERMSIG(status) == signal.SIGKILL
        check(n)
    raise AssertionError(f"the action took more than {limit} steps")


# -- killing a command at a moment ---------------------------------------------------------------
def kill_after(command: list[str], delay: float, *, env: dict[str, str], cwd: Path | None = None
               ) -> int | None:
    """Run ``command``; SIGKILL it after ``delay`` seconds if still running. Its exit code, or None
    if it was killed."""
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        return process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def timed(command: list[str], *, env: dict[str, str], cwd: Path | None = None) -> float:
    """Seconds ``command`` takes to succeed (it must)."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return time.perf_counter() - start


# -- a service under kill -9 -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(*args: str, port: int, env: dict[str, str], timeout: float = 120) -> subprocess.Popen:
    """`movierec serve --port PORT ARGS`, once it answers ``/api/health``."""
    import httpx

    process = subprocess.Popen([*COMMAND, "serve", "--port", str(port), *args], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return process
        if process.poll() is not None:
            raise AssertionError(f"the server stopped: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the server did not start within {timeout} s")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Client:
    """One writer: its profile, the last acknowledged rating of every movie it wrote, and the writes
    that may or may not have been applied."""

    profile: str
    token: str
    acked: dict[str, float] = field(default_factory=dict)
    # writes sent but not acknowledged (killed in flight, or a non-2xx answer) since the movie's last
    # acknowledged one: any of them may be what the database holds
    pending: dict[str, set[float]] = field(default_factory=dict)
    writes: int = 0

    def explains(self, movie: str, rating: float) -> bool:
        return rating in self.pending.get(movie, ()) or (
            movie in self.acked and self.acked[movie] == rating)


@dataclass
class RoundResult:
    acknowledged: int  # 2xx answers to writes, in this round
    lost: int  # acknowledged writes (last value of a movie) missing or changed after the restart
    half: int  # rows that no acknowledged or in-flight write explains, or orphaned ratings


def write_until_killed(base: str, clients: list[Client], movies: list[int], stop: threading.Event,
                       seed: int) -> list[threading.Thread]:
    """One thread per client, each putting ratings (one request at a time) until ``stop`` is set or
    the server stops answering. Returns the started threads."""
    import httpx

    def run(client: Client, rng: random.Random) -> None:
        with httpx.Client(base_url=base, timeout=10,
                          headers={"Authorization": f"Bearer {client.token}"}) as http:
            while not stop.is_set():
                movie = str(rng.choice(movies))
                rating = rng.randint(1, 10) / 2
                client.pending.setdefault(movie, set()).add(rating)
                try:
                    answer = http.put(f"/api/profiles/{client.profile}/ratings/{movie}",
                                      json={"rating": rating})
                except httpx.TransportError:
                    return  # the server died: this write may or may not have been applied
                if answer.status_code // 100 == 2:
                    client.acked[movie] = rating
                    client.pending.pop(movie, None)
                    client.writes += 1
                elif answer.status_code == 429:
                    time.sleep(float(answer.headers.get("Retry-After", "0.1")))

    threads = [threading.Thread(target=run, args=(client, random.Random(seed * 1000 + n)), daemon=True)
               for n, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    return threads


def check_clients(base: str, clients: list[Client]) -> tuple[int, int]:
    """After a restart: (lost, half) over ``clients`` (see `RoundResult`), read through the API."""
    import httpx

    lost = half = 0
    for client in clients:
        answer = httpx.get(f"{base}/api/profiles/{client.profile}",
                           headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
        answer.raise_for_status()
        stored = {str(r["movie"]["item"]): float(r["rating"]) for r in answer.json()["ratings"]}
        for movie in client.acked:
            if movie not in stored or not client.explains(movie, stored[movie]):
                lost += 1  # gone, or an older value came back
        for movie, rating in stored.items():
            if movie not in client.acked and not client.explains(movie, rating):
                half += 1  # a row no acknowledged or unacknowledged write explains
    return lost, half


def orphans(database_url: str) -> int:
    """Ratings whose profile does not exist: what a half-applied profile delete would leave."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM ratings r LEFT JOIN profiles p ON p.id = r.profile_id "
                "WHERE p.id IS NULL")).scalar_one())
    finally:
        engine.dispose()


def kill_rounds(model_dir: Path, database_url: str, rounds: int, *, env: dict[str, str], seed: int,
                clients: int = 4, movies: list[int] | None = None,
                write_seconds: tuple[float, float] = (0.3, 1.5)) -> Iterator[RoundResult]:
    """Start `movierec serve`, create ``clients`` profiles; then ``rounds`` times: write ratings
    from one thread per client for a random time, SIGKILL the server mid-write, restart it on the
    same database and check every write acknowledged so far, this round's and earlier ones'.
    Yields one `RoundResult` per round."""
    import httpx

    rng = random.Random(seed)
    movies = movies or list(range(1, 81))
    args = ("--model-dir", str(model_dir), "--database-url", database_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(*args, port=port, env=env)
    try:
        profiles = []
        for _ in range(clients):
            created = httpx.post(f"{base}/api/profiles", timeout=30).json()
            profiles.append(Client(created["id"], created["token"]))
        for number in range(rounds):
            for client in profiles:
                client.writes = 0
            stop = threading.Event()
            threads = write_until_killed(base, profiles, movies, stop, seed * 10_000 + number)
            time.sleep(rng.uniform(*write_seconds))
            server.kill()  # SIGKILL, mid-write
            server.wait()
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            server = start_server(*args, port=port, env=env)
            lost, half = check_clients(base, profiles)
            yield RoundResult(sum(client.writes for client in profiles), lost,
                              half + orphans(database_url))
    finally:
        if server.poll() is None:
            stop_server(server)
