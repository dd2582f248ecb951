"""What the people who run the service watch: a structured access log and Prometheus metrics.

`Observe` (pure ASGI, outermost) times every request and, when it has been answered, counts it in
`Metrics` by method, route template and status, observes its latency, and writes one JSON line to
the ``movierec.access`` logger (when that logger is enabled for INFO)::

    {"ts": "2026-12-05T07:30:00.123Z", "method": "PUT",
     "route": "/api/profiles/{profile_id}/ratings/{movie_id}", "status": 200, "ms": 1.92,
     "client": "127.0.0.1", "pid": 4242}

The route is the template, never the path: no profile id, movie id, token, rating or query string
reaches the log or the metrics (and the label values stay a small fixed set whatever clients send;
a path no route matches counts as ``unmatched``).

Several worker processes: each writes its metrics to its own file (``<pid>.json``) in the folder
they share (``Settings.metrics_dir``, which ``serve`` creates) about once a second, and ``/metrics``
from any worker adds up every file (those of workers that have since exited too, so the counters
never go back), with this worker's own figures fresh. ``movierec_model_version`` has one series per
running worker (label ``worker``: its pid), so a roll-out shows as versions converging.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from movierec._files import pid_alive

__all__ = ["BUCKETS", "Metrics", "Observe", "access_log"]

access_log = logging.getLogger("movierec.access")

#: Latency histogram bucket bounds, seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class Metrics:
    """Request counts and latency histograms of this process; `render` adds those of the other
    workers sharing ``folder``.

    ``model`` returns (model name, model version) of what this process serves, or None before it
    serves anything.
    """

    def __init__(self, folder: Path | None = None, model: Callable[[], tuple[str, int] | None] | None = None
                 ) -> None:
        self.folder = folder
        self.model = model or (lambda: None)
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}  # (method, route, status) -> requests
        # (method, route) -> [count per bucket (not cumulative) + overflow, sum of seconds]
        self._latency: dict[tuple[str, str], list[float]] = {}
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            row = self._latency.get(key[:2])
            if row is None:
                row = self._latency[key[:2]] = [0.0] * (len(BUCKETS) + 2)
            row[bisect.bisect_left(BUCKETS, seconds)] += 1
            row[-1] += seconds

    def snapshot(self) -> dict[str, Any]:
        """This process's figures as JSON-ready data."""
        with self._lock:
            counts = [[*key, value] for key, value in self._counts.items()]
            latency = [[*key, list(row)] for key, row in self._latency.items()]
        return {"pid": self.pid, "counts": counts, "latency": latency, "model": self.model()}

    # -- several workers ------------------------------------------------------------------------
    def start(self, interval: float = 1.0) -> Metrics:
        """Write this process's snapshot to the shared folder every ``interval`` seconds (no-op
        without a folder)."""
        if self.folder is None or self._flusher is not None:
            return self
        self.pid = os.getpid()
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval):
                self.flush()

        self._flusher = threading.Thread(target=run, name="movierec-metrics", daemon=True)
        self._flusher.start()
        return self

    def stop(self) -> None:
        if self._flusher is not None:
            self._stop.set()
            self._flusher.join(timeout=5)
            self._flusher = None
        self.flush()

    def flush(self) -> None:
        """Write the snapshot atomically (a reader never sees half a file)."""
        if self.folder is None:
            return
        path = self.folder / f"{self.pid}.json"
        temporary = path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(self.snapshot()))
            os.replace(temporary, path)
        except OSError as exc:  # the folder went away (the supervisor is stopping): nothing to keep
            logging.getLogger(__name__).debug("cannot write metrics to %s: %s", path, exc)

    def _snapshots(self) -> list[dict[str, Any]]:
        mine = self.snapshot()
        if self.folder is None:
            return [mine]
        found = [mine]
        for path in sorted(self.folder.glob("*.json")):
            if path.stem == str(self.pid):
                continue
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError):  # removed or being replaced: its next flush counts
                continue
        return found

    # -- exposition -----------------------------------------------------------------------------
    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4) of every worker's figures."""
        counts: dict[tuple[str, str, str], int] = {}
        latency: dict[tuple[str, str], list[float]] = {}
        models: list[tuple[int, str, int]] = []
        for snapshot in self._snapshots():
            for method, route, status, value in snapshot["counts"]:
                counts[method, route, status] = counts.get((method, route, status), 0) + int(value)
            for method, route, row in snapshot["latency"]:
                total = latency.setdefault((method, route), [0.0] * len(row))
                for index, value in enumerate(row):
                    total[index] += value
            pid = int(snapshot["pid"])
            if snapshot.get("model") and (pid == self.pid or pid_alive(pid)):
                name, version = snapshot["model"]
                models.append((pid, str(name), int(version)))
        lines = ["# HELP movierec_http_requests_total Requests answered, by method, route template "
                 "and status.",
                 "# TYPE movierec_http_requests_total counter"]
        for (method, route, status), value in sorted(counts.items()):
            lines.append(f"movierec_http_requests_total{{method={_q(method)},route={_q(route)},"
                         f"status={_q(status)}}} {value}")
        lines += ["# HELP movierec_http_request_duration_seconds Time from a request's arrival to the "
                  "end of its answer, by method and route template.",
                  "# TYPE movierec_http_request_duration_seconds histogram"]
        for (method, route), row in sorted(latency.items()):
            labels = f"method={_q(method)},route={_q(route)}"
            cumulative = 0.0
            for bound, value in zip(BUCKETS, row, strict=False):
                cumulative += value
                lines.append(f"movierec_http_request_duration_seconds_bucket{{{labels},le=\"{bound:g}\"}} "
                             f"{cumulative:g}")
            cumulative += row[len(BUCKETS)]
            lines.append(f"movierec_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} "
                         f"{cumulative:g}")
            lines.append(f"movierec_http_request_duration_seconds_sum{{{labels}}} {row[-1]:.6f}")
            lines.append(f"movierec_http_request_duration_seconds_count{{{labels}}} {cumulative:g}")
        lines += ["# HELP movierec_model_version Version of the published model each running worker "
                  "serves (the model's name as a label).",
                  "# TYPE movierec_model_version gauge"]
        for pid, name, version in sorted(models):
            lines.append(f"movierec_model_version{{model={_q(name)},worker=\"{pid}\"}} {version}")
        return "\n".join(lines) + "\n"


def _q(value: str) -> str:
    """A label value, quoted and escaped as the exposition format wants."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Observe:
    """Time, count and log every HTTP request (see the module docstring). ``routes`` is the app's
    route list, to name the route of a request refused before routing (413, 414, 429)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[Any]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self._flat: list[Any] | None = None

    def _candidates(self) -> list[Any]:
        """Every route, those of included routers too (FastAPI keeps them inside the router)."""
        if self._flat is None:
            try:
                from fastapi.routing import iter_route_contexts
            except ImportError:  # an older FastAPI: included routes are plain routes of the app
                self._flat = list(self.routes)
            else:
                self._flat = [context.route for context in iter_route_contexts(self.routes)]
        return self._flat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            seconds = time.perf_counter() - start
            route = self._route(scope)
            # a client may send any word as its method: counting each would grow the label set forever
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.observe(method, route, status, seconds)
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_log.info(json.dumps({
                    "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "method": method, "route": route, "status": status,
                    "ms": round(seconds * 1000, 2), "client": client[0] if client else None,
                    "pid": self.metrics.pid}))

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:  # answered before routing: find which route it was meant for
            partial = None
            for candidate in self._candidates():
                match, _ = candidate.matches({**scope, "path_params": {}})
                if match is Match.FULL:
                    route = candidate
                    break
                if match is Match.PARTIAL and partial is None:
                    partial = candidate
            route = route or partial
        path = getattr(route, "path", None)
        if path is None:
            return "unmatched"
        if not hasattr(route, "endpoint"):  # a mount (the static files)
            return path + "/{path}"
        return path
