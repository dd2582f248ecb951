"""What a running replica holds: the loaded model with its lookups, and the store it shares with the
other replicas.

A `Loaded` is immutable once built; reload, retrain and a model published through another replica build
a new one and swap a single reference, so a request in flight keeps the model it started with and no
request is dropped. What replicas must agree on lives in the store (`movierec.service.store`): which
model version every replica serves, and the retrain jobs with their progress. `ModelWatcher` looks
there every ``sync_interval`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec.artifacts import Artifact, load_model
from movierec.data.dataset import Catalog
from movierec.errors import UnknownIdError
from movierec.models.core.recommender import Recommender
from movierec.retrieval import attach
from movierec.service.settings import Settings
from movierec.service.store import Store, StoreUnavailable

__all__ = ["Loaded", "ModelWatcher", "ServiceState"]

log = logging.getLogger(__name__)

_INT64 = 2**63


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


class Loaded:
    """A model and everything derived from it that requests need, built once.

    Attributes:
        model, catalog, manifest: from the artifact (a catalog of bare ids if it had none).
        model_dir, version: the folder it came from, and the version under which the store
            published it (every replica serving one version serves the same model).
        movies: raw movie id -> plain dict (item, title, year, genres), every movie the model or
            catalog knows; movie_texts: ``str(raw)`` -> raw id for the same movies.
        details: raw movie id -> extra fields (ratings count, mean rating, links, tags).
        popular: raw movie ids, most rated first.
    """

    def __init__(self, artifact: Artifact, model_dir: Path, cache_size: int = 0, version: int = 0) -> None:
        self.cache = AnswerCache(cache_size)
        self.model: Recommender = artifact.model
        # catalogs of ANN_MIN_ITEMS+ movies: known users ranked through a faiss index, saved in the folder
        attach(self.model, model_dir)
        self.manifest = artifact.manifest
        self.model_dir = model_dir
        self.version = version
        items = self.model.items_
        catalog = artifact.catalog
        if catalog is None:  # a bare ratings file: movies are only ids
            catalog = Catalog(pd.DataFrame({"item": items.ids, "title": [f"Movie {i}" for i in items.ids],
                                            "year": pd.array([None] * len(items), dtype="Int64"),
                                            "genres": [[] for _ in range(len(items))]}))
        self.catalog = catalog
        self.integer_ids = items.is_integer
        # a set answers "is this a user?" in ~0.1 us; the vocabulary's pandas lookup takes ~0.5 ms
        self._users = set(self.model.users_.ids.tolist())
        frame = catalog.frame
        self.movies: dict[Any, dict[str, Any]] = {}
        for item, title, year, genres in zip(frame["item"], frame["title"], frame["year"], frame["genres"],
                                             strict=True):
            raw = _plain(item)
            self.movies[raw] = {"item": raw, "title": str(title), "year": _plain(year),
                                "genres": [str(g) for g in genres if g != "(no genres listed)"]}
        for raw in items.ids.tolist():  # rated movies missing from the catalog still get a name
            self.movies.setdefault(raw, {"item": raw, "title": f"Movie {raw}", "year": None, "genres": []})
        # the store keeps movie ids as text (str(raw)): one lookup per stored rating
        self.movie_texts: dict[str, Any] = {str(raw): raw for raw in self.movies}
        seen = self.model.seen_.tocsc()
        counts = np.diff(seen.indptr)
        sums = np.asarray(seen.sum(axis=0)).ravel()
        self._counts = dict(zip(items.ids.tolist(), counts.tolist(), strict=True))
        self._means = dict(zip(items.ids.tolist(),
                               np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).tolist(),
                               strict=True))
        self.popular = items.ids[np.argsort(-counts, kind="stable")].tolist()
        self.genres = [g for g in catalog.genres if g != "(no genres listed)"]
        self._build_search()

    # -- ids -------------------------------------------------------------------------------------
    def movie_id(self, text: str) -> Any:
        """The raw movie id a path segment names. Raises UnknownIdError."""
        raw = self._coerce(text, "movie")
        if raw not in self.movies:
            raise UnknownIdError(f"unknown movie id {text!r}")
        return raw

    def user_id(self, text: str) -> Any:
        """The raw id of a user in the training data. Raises UnknownIdError."""
        raw = self._coerce(text, "user", self.model.users_.is_integer)
        if raw not in self._users:
            raise UnknownIdError(f"unknown user id {text!r}")
        return raw

    def _coerce(self, text: str, kind: str, integer: bool | None = None) -> Any:
        integer = self.integer_ids if integer is None else integer
        if not integer:
            return text
        try:
            value = int(text.strip())
        except ValueError:
            raise UnknownIdError(f"unknown {kind} id {text!r} (ids are integers)") from None
        if not -_INT64 <= value < _INT64:
            raise UnknownIdError(f"unknown {kind} id {text!r}")
        return value

    # -- movies ----------------------------------------------------------------------------------
    def movie(self, raw: Any) -> dict[str, Any]:
        found = self.movies.get(raw)
        if found is None:
            return {"item": raw, "title": f"Movie {raw}", "year": None, "genres": []}
        return found

    def detail(self, raw: Any) -> dict[str, Any]:
        out = dict(self.movie(raw))
        count = self._counts.get(raw, 0)
        mean = self._means.get(raw)
        out["ratings"] = int(count)
        out["mean_rating"] = None if mean is None or np.isnan(mean) else round(float(mean), 4)
        if raw in self.catalog:
            record = self.catalog.get(raw)
            out["imdb_id"] = record.get("imdb_id") if isinstance(record.get("imdb_id"), str) else None
            tmdb = record.get("tmdb_id")
            out["tmdb_id"] = int(tmdb) if isinstance(tmdb, int | float) and tmdb == tmdb else None
            out["tags"] = [str(t) for t in (record.get("tags") or [])][:50]
        return out

    # -- search ----------------------------------------------------------------------------------
    def _build_search(self) -> None:
        """A titles x character-trigrams matrix, for typo-tolerant search by one sparse product."""
        self._titles = list(self.movies.values())
        grams: dict[str, int] = {}
        rows, cols = [], []
        for row, movie in enumerate(self._titles):
            for gram in _trigrams(movie["title"]):
                rows.append(row)
                cols.append(grams.setdefault(gram, len(grams)))
        self._grams = grams
        matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                               shape=(len(self._titles), max(len(grams), 1)))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        self._gram_matrix = matrix
        self._gram_counts = np.asarray(matrix.sum(axis=1)).ravel()

    def search(self, query: str, limit: int) -> list[dict[str, Any]]:
        """Exact word matches first (the catalog's search), then near misses by trigram overlap."""
        found = [self.movie(_plain(i)) for i in self.catalog.search(query, limit=limit)["item"]]
        if len(found) >= limit:
            return found
        wanted = _trigrams(re.sub(r"\b\d{4}\b", " ", query))
        columns = [self._grams[g] for g in wanted if g in self._grams]
        if not columns or not wanted:
            return found
        overlap = np.asarray(self._gram_matrix[:, columns].sum(axis=1)).ravel()
        share = overlap / len(wanted)  # how much of the query the title holds
        dice = 2 * overlap / (len(wanted) + self._gram_counts)  # how close the lengths are
        score = share + 0.25 * dice
        candidates = np.flatnonzero(share >= 0.3)
        order = candidates[np.lexsort((-dice[candidates], -score[candidates]))]
        have = {m["item"] for m in found}
        for position in order:
            movie = self._titles[position]
            if movie["item"] not in have:
                found.append(movie)
                have.add(movie["item"])
            if len(found) >= limit:
                break
        return found


class AnswerCache:
    """A bounded least-recently-used map of request key -> serialized answer (bytes), thread-safe.

    Lives in a `Loaded`, so answers never outlive the model that computed them.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        if not self.size:
            return None
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, value: bytes) -> None:
        if not self.size:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _trigrams(text: str) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    grams = set()
    for word in words:
        padded = f" {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


class ServiceState:
    """Everything a request may touch: settings, the store, and the `Loaded` model this replica serves.

    Every switch of model goes through the store: `reload` and a finished retrain publish the new
    folder (a new version) and serve it here at once; the other replicas find it through `sync`.
    An artifact that fails to load is never published, and a replica that cannot load a published
    one keeps serving what it has (and says so in its log).
    """

    def __init__(self, settings: Settings, loaded: Loaded, store: Store) -> None:
        self.settings = settings
        self.loaded = loaded
        self.store = store
        # SQLite on the event loop only when this is the one process writing the file (see in_store)
        self.inline_store = store.is_sqlite and settings.workers == 1
        # threads that may wait on the database at once (see in_store)
        self.store_limiter = anyio.CapacityLimiter(STORE_THREADS)
        self._switch = threading.Lock()  # one load-and-swap at a time in this process
        self._unloadable: dict[int, float] = {}  # version -> when loading it last failed here

    def sync(self) -> bool:
        """Serve the store's published model if it is not the one served here; True if it switched.

        Raises:
            StoreUnavailable: the database cannot be reached (the served model stays).
        """
        published = self.store.served_model()
        if published is None or published[0] == self.loaded.version:
            return False
        version, folder = published
        if time.monotonic() - self._unloadable.get(version, -_RETRY_UNLOADABLE) < _RETRY_UNLOADABLE:
            return False
        with self._switch:
            if self.loaded.version >= version:
                return False
            try:
                loaded = Loaded(load_model(folder), Path(folder), self.settings.cache_size, version)
            except Exception as exc:  # any failure leaves the served model in place
                self._unloadable[version] = time.monotonic()
                log.error("cannot serve model version %d from %s (%s); still serving version %d",
                          version, folder, exc, self.loaded.version)
                return False
            self.loaded = loaded
        log.info("serving model version %d: %s from %s", version, loaded.model.name, folder)
        return True

    def reload(self, model_dir: Path) -> Loaded:
        """Load an artifact, publish it to every replica and serve it here.

        Raises:
            DataError: the folder is not a loadable artifact (nothing is published; the model stays).
            StoreUnavailable: the database cannot be reached (nothing is published; the model stays).
        """
        folder = Path(model_dir).resolve()  # every replica reads the same path, whatever its folder
        with self._switch:
            artifact = load_model(folder)
            version = self.store.publish_model(str(folder))
            self.loaded = Loaded(artifact, folder, self.settings.cache_size, version)
        log.info("serving model version %d: %s from %s", version, self.loaded.model.name, folder)
        return self.loaded

    def start_retrain(self, params: dict[str, Any]) -> dict[str, Any]:
        """Refit the served model's class on its training ratings in a thread of this replica; publish
        and serve the result when done. Progress goes to the store, readable through any replica.

        Raises:
            RuntimeError: if a retrain is already running (on any replica).
            ConfigError: a bad hyperparameter (checked before the thread starts).
            MemoryLimitError: the fit would need more memory than the machine has available.
        """
        from movierec.models.core.memory import check_fit_memory
        from movierec.models.registry import create_model

        current = self.loaded
        merged = {**current.model.get_params(), **params}
        model = create_model(current.model.name, **merged)
        model._check_params()
        seen = current.model.seen_
        check_fit_memory(model, seen.shape[0], seen.shape[1], seen.nnz)  # before any job or thread
        job = self.store.start_job(uuid.uuid4().hex[:12], f"fitting {model.name}",
                                   stale_after=self.settings.job_stale_after)
        if job is None:
            raise RuntimeError("a retrain is already running")
        thread = threading.Thread(target=self._retrain, args=(job["id"], model, current), daemon=True,
                                  name=f"retrain-{job['id']}")
        thread.start()
        return job

    def _retrain(self, job_id: str, model: Recommender, current: Loaded) -> None:
        from movierec.artifacts import save_model
        from movierec.data.dataset import Ratings

        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, done), daemon=True)
        beat.start()
        try:
            old = current.model
            seen = old.seen_.tocoo()
            train = Ratings.from_arrays(old.users_.ids[seen.row], old.items_.ids[seen.col], seen.data,
                                        scale=old.scale_, users=old.users_, items=old.items_)

            def callback(event: str, info: dict[str, Any]) -> None:
                if event == "epoch":
                    epoch, epochs = info.get("epoch"), info.get("epochs")
                    progress = min(0.95, epoch / epochs) if epoch is not None and epochs else 0.0
                    self.store.update_job(job_id, epoch=epoch, epochs=epochs, progress=progress,
                                          message=f"epoch {epoch}/{epochs}")

            self.store.update_job(job_id, message=f"fitting {model.name} on {len(train):,} ratings")
            start = time.perf_counter()
            model.fit(train, callback=callback)
            seconds = time.perf_counter() - start
            self.store.update_job(job_id, message="saving", progress=0.97)
            target = self.settings.resolved_retrain_dir().resolve() / f"{model.name}-{job_id}"
            data = dict(current.manifest.get("data") or {})
            data.update({"retrained_from": str(current.model_dir), "fit_seconds": round(seconds, 4),
                         "train_ratings": len(train)})
            save_model(model, target, catalog=current.catalog, data=data)
            loaded = self.reload(target)  # loads it back (checksums) before any replica may serve it
            self.store.update_job(job_id, status="done", progress=1.0, model_dir=str(target),
                                  message=f"serving the retrained model as version {loaded.version} "
                                          f"({seconds:.1f} s)")
        except Exception as exc:  # reported through the job; the served model stays
            log.exception("retrain %s failed", job_id)
            try:
                self.store.update_job(job_id, status="failed", message=f"{type(exc).__name__}: {exc}")
            except StoreUnavailable:
                log.error("retrain %s failed and the database is unavailable to record it", job_id)
        finally:
            done.set()

    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        """Tell the store that this replica still runs the job, between progress reports (a long
        closed-form fit reports none), so that no other replica takes it for lost."""
        while not done.wait(self.settings.job_stale_after / 4):
            with contextlib.suppress(StoreUnavailable):  # the next beat or progress report tries again
                self.store.update_job(job_id)


class ModelWatcher:
    """Calls `ServiceState.sync` every ``sync_interval`` seconds on a daemon thread, so this replica
    serves what another one published. A database outage is logged once and outlived."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="model-watcher")

    def start(self) -> ModelWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        down = False
        while not self._stop.wait(self.state.settings.sync_interval):
            try:
                self.state.sync()
            except StoreUnavailable as exc:
                if not down:
                    log.warning("cannot read the published model version: %s", exc)
                down = True
                continue
            except Exception:  # a bug must not stop the watching
                log.exception("model sync failed")
            down = False


#: Store calls running at once in a replica's threads. Each releases and retakes the GIL around every
#: round trip, so more threads than this only fight the event loop for it: on one core, 40 threads
#: (anyio's default pool) made 950 profile reads per second at 0.48 ms of CPU each, 8 threads 4,200
#: at 0.21 ms (2: 3,100; 4: 3,500; 16: 2,100).
STORE_THREADS = 8

#: Seconds before a replica tries again to load a published model it could not load.
_RETRY_UNLOADABLE = 30.0
