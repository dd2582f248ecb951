"""The app factory and the server entry point.

`create_app(settings)` builds a FastAPI app whose lifespan opens the store, loads the model the store
says every replica serves (publishing ``settings.model_dir`` when none is published yet) and starts the
`ModelWatcher`; nothing happens at import. `serve(model_dir, ...)` opens the store and loads the model
first, so an unreachable database or a missing or corrupt folder stops start-up with one line before
any socket is opened; with ``workers`` > 1 it starts that many server processes, each a replica.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from movierec import __version__
from movierec.artifacts import Artifact, load_model
from movierec.errors import ConfigError
from movierec.service import errors
from movierec.service.metrics import CONTENT_TYPE, Metrics, Observe
from movierec.service.routes import admin, meta, movies, profiles, users
from movierec.service.security import Guard
from movierec.service.settings import Settings
from movierec.service.state import Loaded, ModelWatcher, ServiceState
from movierec.service.store import Store

__all__ = ["build_server", "create_app", "serve", "static_dir"]

log = logging.getLogger(__name__)


def static_dir() -> Path:
    """The web page's files (shipped inside the package)."""
    return Path(str(resources.files("movierec.service") / "static"))


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether announced by Content-Length or
    streamed in chunks, before any route reads them (pure ASGI: no per-request task overhead)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = -1
                if size < 0 or size > self.limit:
                    await self._refuse(send, size)
                    return
        seen = 0
        refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # answer now and tell the app the client left: whatever it then sends is dropped
                    refused = True
                    await self._refuse(send, seen)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, guarded)

    async def _refuse(self, send: Send, size: int) -> None:
        message = (f"request body must be at most {self.limit} bytes" +
                   (f", got {size}" if size >= 0 else ", got an invalid Content-Length"))
        response = errors.error_response(413 if size >= 0 else 400, message)
        await response({"type": "http"}, _no_receive, send)


class TakeTurns:
    """Let the event loop read the sockets that became ready before a request is handled.

    The handlers compute without awaiting (a millisecond or two each), so the loop runs every
    request it read in one poll as one batch, then polls again. A client whose answer goes out at
    the end of a batch sends its next request a moment after that poll and waits out a whole second
    batch: under uvloop the same two of 50 clients did so every time, at twice everyone else's
    latency (fold-in p99 230 ms at p50 117 ms). One yield per request lets the next poll come
    between requests: p99 152 ms at the same throughput.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(0)
        await self.app(scope, receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(settings: Settings, *, artifact: Artifact | None = None, store: Store | None = None,
               freeze_gc: bool = False) -> FastAPI:
    """The service as an ASGI app.

    Args:
        settings: see `Settings`.
        artifact: the already-loaded artifact of ``settings.model_dir`` (``serve`` and tests pass one),
            used when that folder is the published one; else the lifespan loads what it serves.
        store: an open store to use; else the lifespan opens ``settings.database_url``.
        freeze_gc: after start-up, exempt everything then alive from garbage-collector scans
            (`gc.freeze`); for a process that only serves (``serve`` sets it), not for tests.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        opened = store if store is not None else Store(settings.resolved_database_url())
        try:
            loaded = _first_model(settings, opened, artifact)
        except BaseException:
            if own_store:
                opened.close()
            raise
        app.state.service = state = ServiceState(settings, loaded, opened)
        watcher = ModelWatcher(state).start()
        metrics.start()
        if freeze_gc:
            # the model, catalog lookups and search index live as long as the process: keep the
            # collector from re-scanning them on every full collection (latency spikes under load)
            gc.collect()
            gc.freeze()
        log.info("serving %s (%d movies, %d users)", loaded.model.name, len(loaded.model.items_),
                 len(loaded.model.users_))
        try:
            yield
        finally:
            watcher.stop()
            metrics.stop()
            if own_store:
                opened.close()

    app = FastAPI(
        title="movierec",
        version=__version__,
        description="Movie recommendations for MovieLens users and for new people who rate a few movies.",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (profiles, users, movies, meta, admin):
        app.include_router(module.router)
    static = static_dir()

    def serving() -> tuple[str, int] | None:
        state = getattr(app.state, "service", None)
        return None if state is None else (state.loaded.model.name, state.loaded.version)

    metrics = app.state.metrics = Metrics(settings.metrics_dir, serving)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse,
             summary="Prometheus metrics: requests by route and status, latencies, the model version "
                     "each worker serves (all workers of this `movierec serve`)")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.mount("/static", StaticFiles(directory=static), name="static")
    # the outermost layer comes last: TakeTurns, Observe (times and logs everything, refusals too),
    # CORS (only when origins are configured), Guard (query limit, rate limits, headers), BodyLimit
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Guard, settings=settings)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    app.add_middleware(Observe, metrics=metrics, routes=app.router.routes)
    app.add_middleware(TakeTurns)
    return app


_NOTHING_TO_SERVE = ("no model to serve: the database has none published yet; give a model folder "
                     "(movierec serve --model-dir DIR)")


def _first_model(settings: Settings, store: Store, artifact: Artifact | None) -> Loaded:
    """What a replica serves when it starts: the store's published model; ``settings.model_dir``
    (published now) when the store has none yet.

    Raises:
        ConfigError: nothing is published and no model folder was given.
        DataError: the folder is not a loadable artifact.
    """
    published = store.served_model()
    if published is None:
        if settings.model_dir is None:
            raise ConfigError(_NOTHING_TO_SERVE)
        folder = settings.model_dir.resolve()
        loaded_artifact = artifact if artifact is not None else load_model(folder)
        return Loaded(loaded_artifact, folder, settings.cache_size, store.publish_model(str(folder)))
    version, folder_text = published
    folder = Path(folder_text)
    ours = artifact is not None and settings.model_dir is not None and settings.model_dir.resolve() == folder
    return Loaded(artifact if ours else load_model(folder), folder, settings.cache_size, version)


def build_server(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000,
                 artifact: Artifact | None = None, log_level: str = "info", freeze_gc: bool = False,
                 **uvicorn_options: Any) -> Any:
    """A configured `uvicorn.Server` (not started): ``server.run()`` blocks; tests run it in a thread."""
    import uvicorn

    app = create_app(settings, artifact=artifact, freeze_gc=freeze_gc)
    uvicorn_options.setdefault("log_config", log_config(log_level))
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="on", **uvicorn_options)
    return uvicorn.Server(config)


def log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging configuration plus the JSON access log (``movierec.access``, one JSON object
    a line on standard output), on at ``log_level`` info or lower, off above."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["json_lines"] = {"format": "%(message)s"}
    config["handlers"]["json_access"] = {"formatter": "json_lines", "class": "logging.StreamHandler",
                                         "stream": "ext://sys.stdout"}
    on = log_level.lower() in ("trace", "debug", "info")
    config["loggers"]["movierec.access"] = {"handlers": ["json_access"], "propagate": False,
                                            "level": "INFO" if on else "WARNING"}
    return config


def serve(model_dir: str | Path | None, host: str = "127.0.0.1", port: int = 8000, *,
          database_url: str | None = None, admin_token: str | None = None, log_level: str = "info",
          cache_size: int | None = None, workers: int = 1, sync_interval: float | None = None) -> None:
    """Serve until interrupted: ``model_dir`` (published to every replica of the store), or with None
    whatever model the store already publishes (a replica joining a running service).

    With ``workers`` > 1, that many server processes share the port, each a replica of the store.

    Raises:
        DataError: a missing or corrupt model folder (before anything listens).
        ConfigError: bad settings, an unreachable database, nothing to serve.
    """
    settings = Settings.from_env(model_dir, database_url=database_url, admin_token=admin_token,
                                 cache_size=cache_size, workers=workers, sync_interval=sync_interval)
    _one_math_thread()
    folder = None if settings.model_dir is None else settings.model_dir.resolve()
    artifact = None if folder is None else load_model(folder)  # a bad folder fails here, in one line
    store = Store(settings.resolved_database_url())  # so does an unusable database
    try:
        published = store.served_model()
        if folder is not None:
            if published is None or Path(published[1]) != folder:
                store.publish_model(str(folder))  # what the operator asked for, for every replica
        elif published is None:
            raise ConfigError(_NOTHING_TO_SERVE)
    finally:
        store.close()
    if settings.workers == 1:
        build_server(settings, host=host, port=port, artifact=artifact, log_level=log_level,
                     freeze_gc=True).run()
        return
    _listening_socket(host, port).close()  # a port in use fails here, in one line
    del artifact  # each worker loads what the store publishes
    metrics_dir = Path(tempfile.mkdtemp(prefix="movierec-metrics-"))  # /metrics adds up every worker's
    try:
        _supervise(settings.with_(metrics_dir=metrics_dir), host, port, log_level)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with SO_REUSEPORT: every worker binds its own, and the
    kernel spreads new connections evenly over them. (Workers sharing one listening socket, as a
    prefork server does, take turns badly: one process took 47 of 50 keep-alive connections, and two
    workers answered at 0.4x the throughput of one.)

    Raises:
        ConfigError: the address cannot be bound (in use, or not this machine's).
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _worker(settings_json: str, host: str, port: int, log_level: str) -> None:
    """One worker process: its own socket on the shared port, a server over the shared store."""
    settings = Settings.from_json(settings_json)
    _one_math_thread()
    sock = _listening_socket(host, port)
    sock.listen(2048)
    build_server(settings, host=host, port=port, log_level=log_level, freeze_gc=True).run(sockets=[sock])


def _supervise(settings: Settings, host: str, port: int, log_level: str) -> None:
    """Run ``settings.workers`` worker processes until interrupted (SIGINT or SIGTERM, passed on to
    them); a worker that dies is started again, so the service keeps its size."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked threads or pools
    arguments = (settings.to_json(), host, port, log_level)
    workers = [context.Process(target=_worker, args=arguments, daemon=False) for _ in range(settings.workers)]
    started = [0.0] * len(workers)
    early_exits = 0
    stopping = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index, worker in enumerate(workers):
            worker.start()
            started[index] = time.monotonic()
        log.info("%d workers on %s:%d", len(workers), host, port)
        while not stopping.wait(0.5):
            for index, worker in enumerate(workers):
                if worker.is_alive() or stopping.is_set():
                    continue
                early_exits = early_exits + 1 if time.monotonic() - started[index] < 30 else 0
                if early_exits >= 3:  # not a crash to outlive: they cannot start at all
                    raise RuntimeError(f"workers keep exiting at start-up (last exit code "
                                       f"{worker.exitcode}); their log says why")
                log.error("worker %d exited (code %s); starting another", worker.pid, worker.exitcode)
                workers[index] = context.Process(target=_worker, args=arguments, daemon=False)
                workers[index].start()
                started[index] = time.monotonic()
    finally:
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)  # uvicorn finishes what it has in flight
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _one_math_thread() -> None:
    """One BLAS / torch thread per process: requests already run concurrently, each on small
    arrays, and a pool of math threads per request only fights them for the cores (an explained
    recommendation took 5x longer with OpenBLAS's default threads on a busy 2-core machine)."""
    import torch

    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the environment (OPENBLAS_NUM_THREADS) decides
        return
    threadpool_limits(limits=1)

