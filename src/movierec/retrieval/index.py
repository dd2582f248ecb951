"""An approximate maximum-inner-product index over a model's `DotParts`, on faiss.

Scores are ``x_u · y_i + o_i`` (`movierec.models.core.recommender.DotParts`). The item side becomes
``[y_i, o_i]`` (the offset is one more column, the query's coefficient for it 1); item columns that
are the same for every movie (the ones that carry a per-user term such as mu + b_u) are dropped, since
they shift a user's scores alike. Maximum inner product is then turned into a search among vectors of
equal norm (Bachrach et al. 2014): each item gets one more column ``sqrt(M^2 - |row|^2)``, M the
largest row norm, and queries a 0 there, so inner products are unchanged while every item lies on one
sphere. On that sphere k-means (the IVF coarse quantizer) clusters by direction, and probing the lists
whose centroids best match the query finds the large inner products. Without it, on biased-MF factors
(biases of +-1 beside factors of norm 0.5) IVF needed 8x the probes and HNSW with inner product stopped
short of recall 0.97 at any effort (benchmarks/retrieval.py; docs/retrieval.md).

The index is `faiss.IndexIVFFlat` (METRIC_INNER_PRODUCT) with about 2 sqrt(n) lists: vectors are kept in
full, so the inner products it returns are exact (float32) and only the probing is approximate.
`calibrate` raises the number of lists probed (``nprobe``: 1, 2, 3, 4, 6, 8, ... up to all of them,
which is exhaustive) until a recall that the caller measures reaches a target (`movierec.retrieval.attach`:
recall@10 of the final lists, seen movies excluded, against exact lists on a sample of users).

faiss is optional (``pip install 'movierec[ann]'``): `load_faiss` returns None without it, and the
callers (`movierec.retrieval.attach`) fall back to exact scoring. With faiss-gpu and a GPU, `to_gpu`
puts a copy of the index on the GPU (float32 vectors, as on the CPU: the same products, within the
same error bound), which searches whatever its k-selection allows (fetches and probes of at most
`GPU_MAX_K`); deeper fetches search the CPU index, which stays, and is what `save` writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from movierec._arrays import run_positions
from movierec._files import atomic_file
from movierec.errors import ConfigError
from movierec.models.core.recommender import DotParts

__all__ = ["GPU_MAX_K", "INDEX_FILE", "META_FILE", "AnnIndex", "check_gpu", "faiss_gpus", "fingerprint",
           "load_faiss"]

log = logging.getLogger(__name__)

#: Files the index occupies in a model folder, beside the artifact's own (not in its manifest:
#: an artifact loads without them, and a stale pair is replaced, never trusted).
INDEX_FILE = "ann.faiss"
META_FILE = "ann.json"
_FORMAT = "movierec-ann"
_FORMAT_VERSION = 2  # 2: seen_ahead (1's indexes are rebuilt)
# Vectors per k-means training point below which faiss warns (and clusters poorly).
_POINTS_PER_LIST = 39
# Inverted lists per square root of the vectors held. Twice the textbook sqrt(n): the lists that queries
# probe hold the popular movies, dense in the directions users point to, and halving them cost fewer
# scanned vectors than the extra centroids (benchmarks/retrieval.py: biased-mf-als 21k -> 30-37k q/s).
_LISTS_PER_ROOT = 2.0


#: The largest k, and nprobe, that a faiss GPU index selects (its k-selection kernels).
GPU_MAX_K = 2048
_GPU_RESOURCES: list[Any] = []  # one faiss.StandardGpuResources for the process, made on first use
_GPU_RESOURCES_LOCK = threading.Lock()


def load_faiss() -> Any:
    """The faiss module, or None where it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def faiss_gpus() -> int:
    """How many GPUs faiss can use here: 0 without faiss, with a CPU-only build (faiss-cpu), or
    where CUDA finds none."""
    faiss = load_faiss()
    if faiss is None or not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return max(int(faiss.get_num_gpus()), 0)
    except RuntimeError:  # a CUDA set-up that cannot answer has no GPU to offer
        return 0


def check_gpu(device: int = 0) -> None:
    """Raise `ConfigError` (one line) unless faiss here can use GPU ``device``."""
    visible = faiss_gpus()
    if not 0 <= device < visible:
        raise ConfigError(
            f"faiss cannot use GPU {device} here ({visible} GPU(s) visible to faiss); a GPU index "
            f"needs faiss built with CUDA (pip install faiss-gpu-cu12, in place of faiss-cpu) and a GPU")


def _gpu_resources() -> Any:
    with _GPU_RESOURCES_LOCK:
        if not _GPU_RESOURCES:
            _GPU_RESOURCES.append(load_faiss().StandardGpuResources())
        return _GPU_RESOURCES[0]


def fingerprint(parts: DotParts) -> str:
    """A digest of the item side of ``parts`` (what the index holds): another model, or the same model
    retrained, gives another fingerprint."""
    digest = hashlib.sha256()
    for array in (parts.items, parts.offsets):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    digest.update(b"exact" if parts.exact else b"monotone")
    return digest.hexdigest()[:32]


def _item_side(parts: DotParts) -> tuple[np.ndarray, np.ndarray]:
    """(the columns kept: a bool mask over the item columns, the augmented item matrix float32)."""
    items = np.asarray(parts.items)
    keep = np.ptp(items, axis=0) != 0 if len(items) else np.ones(items.shape[1], bool)
    rows = np.hstack([items[:, keep].astype(np.float64), np.asarray(parts.offsets, np.float64)[:, None]])
    norms = np.einsum("ij,ij->i", rows, rows)
    lift = np.sqrt(np.maximum(norms.max(initial=0.0) - norms, 0.0))
    return keep, np.ascontiguousarray(np.hstack([rows, lift[:, None]]), dtype=np.float32)


def _groups(rows: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Distinct rows (in `np.unique` order) and their movies (`AnnIndex.groups`)."""
    unique, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    if len(unique) == len(rows):  # all distinct: store them in movie order
        n = len(rows)
        return rows, (np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64), np.ones(n, np.int64))
    members = np.argsort(inverse.ravel(), kind="stable").astype(np.int64)
    starts = (np.cumsum(counts) - counts).astype(np.int64)
    return np.ascontiguousarray(unique), (members, starts, counts.astype(np.int64))


@dataclass
class AnnIndex:
    """A calibrated IVF inner-product index over one set of `DotParts`.

    Attributes:
        index: the faiss index (item rows in item-index order).
        keep: bool mask over the parts' columns that the index holds.
        nprobe: lists probed per query, as calibrated.
        recall: recall@``k`` of the calibration at ``nprobe`` (tie-tolerant: a returned movie counts
            when its exact score reaches the k-th best exact score).
        fingerprint: `fingerprint` of the parts it was built from.
        n_items, nlist: movies held, inverted lists.
        groups: movies with identical rows (e.g. all the movies without training ratings, whose
            vectors are zero) are stored once: (members, starts, counts) list, per stored row, its
            movies in ascending index order (``members[starts[r] : starts[r] + counts[r]]``).
        radius: the largest norm of a stored row (every row lies on that sphere, up to rounding):
            with a query's norm it bounds how far the index's float32 products can be from exact
            ones (`AnnRetriever` uses it to skip re-scoring candidates that cannot enter a list).
        seen_ahead: the share of a user's seen movies that the model ranks above the user's 10th
            best unseen one (the 90th percentile over the calibration users; 1.0 until calibrated):
            `AnnRetriever` fetches that many more candidates first, since seen movies are dropped
            from the fetched ones. A rating model rarely ranks seen movies first (biased-mf-als on
            80k movies: 0.03), an implicit one often does (ials: 0.55).
        gpu, gpu_device: the copy of ``index`` on a GPU that `to_gpu` made, and that GPU's number
            (None, None: searches run on the CPU).
    """

    index: Any
    keep: np.ndarray
    nprobe: int
    recall: float
    fingerprint: str
    n_items: int
    nlist: int
    groups: tuple[np.ndarray, np.ndarray, np.ndarray]
    radius: float = float("nan")
    seen_ahead: float = 1.0
    gpu: Any = field(default=None, repr=False, compare=False)
    gpu_device: int | None = None
    _params: dict[int, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    # faiss' GPU indexes are not safe to search from several threads at once (the service's are)
    _gpu_lock: Any = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @classmethod
    def build(cls, parts: DotParts, *, seed: int = 0) -> AnnIndex:
        """Index ``parts``' items (``nprobe`` 1 until `calibrate` sets it).

        Raises:
            ImportError: faiss is not installed.
        """
        faiss = load_faiss()
        if faiss is None:
            raise ImportError("faiss is not installed (pip install 'movierec[ann]')")
        keep, rows = _item_side(parts)
        unique, groups = _groups(rows)
        n_rows, d = unique.shape
        nlist = int(max(1, min(round(_LISTS_PER_ROOT * np.sqrt(n_rows)), n_rows // _POINTS_PER_LIST)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(unique)
        index.add(unique)
        return cls(index, keep, 1, float("nan"), fingerprint(parts), len(rows), nlist, groups,
                   _radius(unique))

    def to_gpu(self, device: int = 0) -> None:
        """Search a copy of the index on GPU ``device`` from now on, wherever its limits allow
        (fetches and probes of at most `GPU_MAX_K`; deeper ones search the CPU index).

        Raises:
            ConfigError: faiss here cannot use GPU ``device`` (faiss-cpu, or no such GPU).
        """
        check_gpu(device)
        faiss = load_faiss()
        options = faiss.GpuClonerOptions()
        options.useFloat16 = False  # full float32 vectors: the CPU index's products and error bound
        if hasattr(options, "use_cuvs"):  # faiss' own GPU IVF, whose k-selection limit is GPU_MAX_K
            options.use_cuvs = False
        self.gpu = faiss.index_cpu_to_gpu(_gpu_resources(), device, self.index, options)
        self.gpu_device = device

    def calibrate(self, recall_at: Callable[[int], float], target: float) -> None:
        """Set ``nprobe`` to the first of 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, ... (powers
        of two and the quarter steps between them, up to every list: exhaustive) whose recall, as
        ``recall_at(nprobe)`` measures it, reaches ``target``. The fine steps matter: search time
        grows with the lists probed, and a step 25% wide costs at most 25% more than the count
        that just reaches the target (halfway steps put iALS on 80k movies at 24 lists where 20
        reach 0.98; doubling, at 32)."""
        for nprobe in _probe_steps(self.nlist):
            recall = recall_at(nprobe)
            if recall >= target:
                break
        self.nprobe, self.recall = nprobe, recall
        log.info("ann index: %d movies, %d lists, nprobe %d, recall@10 %.4f", self.n_items, self.nlist,
                 self.nprobe, self.recall)

    def queries(self, user_vectors: np.ndarray) -> np.ndarray:
        """Query rows for users' vectors (rows of ``DotParts.users``): the kept columns, 1 for the
        offset, 0 for the lift."""
        vectors = np.asarray(user_vectors)
        kept = int(np.count_nonzero(self.keep))
        out = np.zeros((len(vectors), kept + 2), dtype=np.float32)
        out[:, :kept] = vectors[:, self.keep]
        out[:, kept] = 1.0
        return out

    def search(self, user_vectors: np.ndarray, m: int, nprobe: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(item indices (n, m) int64, their inner products (n, m) float32 without the per-user terms),
        best first; index -1 and -inf where the probed lists ran out."""
        faiss = load_faiss()
        if len(user_vectors) == 0:
            return np.empty((0, m), dtype=np.int64), np.empty((0, m), dtype=np.float32)
        nprobe = int(nprobe or self.nprobe)
        params = self._params.get(nprobe)
        if params is None:  # made once per nprobe: building one costs as much as a small search
            params = self._params[nprobe] = faiss.SearchParametersIVF(nprobe=nprobe)
        queries = self.queries(user_vectors)
        if self.gpu is not None and m <= GPU_MAX_K and nprobe <= GPU_MAX_K:
            with self._gpu_lock:
                inner, found = self.gpu.search(queries, int(m), params=params)
        else:
            inner, found = self.index.search(queries, int(m), params=params)
        members, starts, counts = self.groups
        if len(counts) == self.n_items:  # no duplicates: stored rows are the movies
            inner[found < 0] = -np.inf
            return found.astype(np.int64), inner
        # expand each stored row to (at most m of) its movies, keeping the order; then cut to m
        size = np.where(found >= 0, np.minimum(counts[np.maximum(found, 0)], m), 0)
        flat = size.ravel()
        rows = np.repeat(np.arange(len(found)), size.sum(axis=1))
        within = run_positions(flat)
        movie = members[np.repeat(starts[np.maximum(found, 0)].ravel(), flat) + within]
        score = np.repeat(inner.ravel(), flat)
        per_row = np.bincount(rows, minlength=len(found))
        rank = run_positions(per_row)
        take = rank < m
        out = np.full(found.shape, -1, dtype=np.int64)
        out_inner = np.full(found.shape, -np.inf, dtype=np.float32)
        out[rows[take], rank[take]] = movie[take]
        out_inner[rows[take], rank[take]] = score[take]
        return out, out_inner

    # -- files -----------------------------------------------------------------------------------
    def save(self, folder: Path, model: str) -> None:
        """Write `INDEX_FILE` then `META_FILE` into ``folder``, each atomically (a reader that finds
        the metadata finds the index it describes)."""
        faiss = load_faiss()
        data = faiss.serialize_index(self.index).tobytes()
        with atomic_file(folder / INDEX_FILE) as temp:
            temp.write_bytes(data)
        meta = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "model": model,
                "fingerprint": self.fingerprint, "index_sha256": hashlib.sha256(data).hexdigest(),
                "faiss": getattr(faiss, "__version__", "?"), "kind": "ivf-flat-ip", "nlist": self.nlist,
                "nprobe": self.nprobe, "recall_at_10": self.recall, "seen_ahead": self.seen_ahead,
                "n_items": self.n_items,
                "keep": self.keep.astype(int).tolist()}
        with atomic_file(folder / META_FILE) as temp:
            temp.write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path, model: str, parts: DotParts) -> AnnIndex | None:
        """The index saved in ``folder`` if it was built for exactly ``parts`` of ``model``; None
        (with a logged reason) when there is none, or it is stale, foreign or damaged."""
        meta_path, index_path = folder / META_FILE, folder / INDEX_FILE
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            data = index_path.read_bytes()
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("ann index in %s is unreadable (%s); rebuilding it", folder, exc)
            return None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT \
                or meta.get("format_version") != _FORMAT_VERSION:
            log.warning("ann index in %s has an unknown format; rebuilding it", folder)
            return None
        if meta.get("model") != model or meta.get("fingerprint") != fingerprint(parts):
            log.warning("ann index in %s was built for another model version; rebuilding it", folder)
            return None
        if meta.get("index_sha256") != hashlib.sha256(data).hexdigest():
            log.warning("ann index in %s is corrupt (checksum mismatch); rebuilding it", folder)
            return None
        try:
            nprobe = int(meta["nprobe"])
            recall, seen_ahead = float(meta["recall_at_10"]), float(meta["seen_ahead"])
            n_items, nlist = int(meta["n_items"]), int(meta["nlist"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ann index in %s has incomplete metadata (%s); rebuilding it", folder, exc)
            return None
        if not 0.0 <= seen_ahead <= 1.0 or nprobe < 1:
            log.warning("ann index in %s has invalid metadata (seen_ahead %r, nprobe %r); rebuilding it",
                        folder, seen_ahead, nprobe)
            return None
        faiss = load_faiss()
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        keep, rows = _item_side(parts)  # the same parts: the same columns, rows and grouping
        return cls(index, keep, nprobe, recall, str(meta["fingerprint"]), n_items, nlist, _groups(rows)[1],
                   _radius(rows), seen_ahead)


def _radius(rows: np.ndarray) -> float:
    """The largest norm among float32 ``rows`` (computed in float64)."""
    if not len(rows):
        return 0.0
    wide = rows.astype(np.float64)
    return float(np.sqrt(np.einsum("ij,ij->i", wide, wide).max()))


def _probe_steps(nlist: int) -> list[int]:
    """1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, ... below ``nlist``, then ``nlist``: each power
    of two p and p 5/4, p 3/2, p 7/4."""
    steps, power = {nlist}, 1
    while power < nlist:
        steps |= {power, power * 5 // 4, power * 3 // 2, power * 7 // 4}
        power *= 2
    return sorted(step for step in steps if step <= nlist)


def exact_scores(parts: DotParts, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
    """Float64 ``x_u · y_i + o_i``: (len(users), n_items), or with ``items`` (len(users), m) for
    each user's own row of item indices (entries < 0 score -inf)."""
    x = np.asarray(parts.users[users], dtype=np.float64)
    if items is None:
        return x @ np.asarray(parts.items, dtype=np.float64).T + np.asarray(parts.offsets, np.float64)
    safe = np.maximum(items, 0)
    y = np.asarray(parts.items[safe], dtype=np.float64)
    out = np.einsum("nd,nmd->nm", x, y) + np.asarray(parts.offsets, np.float64)[safe]
    out[items < 0] = -np.inf
    return out
