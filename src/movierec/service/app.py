"""The app factory and the server entry point.

`create_app(settings)` builds a FastAPI app whose lifespan loads the model (once) and opens the store;
nothing happens at import. `serve(model_dir, ...)` loads the model first, so a missing or corrupt
folder stops start-up with the artifact loader's one-line `DataError` before any socket is opened.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from movierec import __version__
from movierec.artifacts import Artifact, load_model
from movierec.service import errors
from movierec.service.routes import admin, meta, movies, profiles, users
from movierec.service.settings import Settings
from movierec.service.state import Loaded, ServiceState
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
        artifact: an already-loaded model (``serve`` and tests pass one); else the lifespan loads
            ``settings.model_dir``.
        store: an open store to use; else the lifespan opens ``settings.database_url``.
        freeze_gc: after start-up, exempt everything then alive from garbage-collector scans
            (`gc.freeze`); for a process that only serves (``serve`` sets it), not for tests.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = Loaded(artifact if artifact is not None else load_model(settings.model_dir),
                        settings.model_dir, settings.cache_size)
        own_store = store is None
        opened = store if store is not None else Store(settings.resolved_database_url())
        app.state.service = ServiceState(settings, loaded, opened)
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

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static), name="static")
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(TakeTurns)
    return app


def build_server(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000,
                 artifact: Artifact | None = None, log_level: str = "info", freeze_gc: bool = False,
                 **uvicorn_options: Any) -> Any:
    """A configured `uvicorn.Server` (not started): ``server.run()`` blocks; tests run it in a thread."""
    import uvicorn

    app = create_app(settings, artifact=artifact, freeze_gc=freeze_gc)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="on", **uvicorn_options)
    return uvicorn.Server(config)


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *,
          database_url: str | None = None, admin_token: str | None = None, log_level: str = "info",
          cache_size: int | None = None) -> None:
    """Load the model in ``model_dir`` and serve it until interrupted.

    Raises:
        DataError: a missing or corrupt model folder (before anything listens).
        ConfigError: bad settings.
    """
    settings = Settings.from_env(model_dir, database_url=database_url, admin_token=admin_token,
                                 cache_size=cache_size)
    _one_math_thread()
    artifact = load_model(settings.model_dir)
    Store(settings.resolved_database_url()).close()  # an unusable database fails here, clearly
    build_server(settings, host=host, port=port, artifact=artifact, log_level=log_level, freeze_gc=True).run()


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

