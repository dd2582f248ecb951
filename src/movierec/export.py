"""Recommendations for every user at once, written to a Parquet file (`recommend_all`).

Users are taken a chunk at a time: each chunk's scores (chunk x movies) are the only dense block in
memory, its top-k goes to the file, and the next chunk reuses the room. Chunks run on several threads
(the scoring and selection are numpy and BLAS, which release the GIL), each limited to one math
thread so the threads do not fight over the cores. The file is written beside its target and moved
into place when complete: a failure or an interrupt leaves no partial file and any earlier one intact.

Columns: ``user`` and ``item`` (raw ids, as the model knows them), ``rank`` (1 = best), ``score`` (as
`Recommender.recommend` shows it). Rows come by user (in the model's user order), then by rank; a
user with fewer than ``k`` movies left to recommend has fewer rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from movierec._files import atomic_file
from movierec.errors import ConfigError
from movierec.models import Recommender
from movierec.models.core.checks import check_int, check_k
from movierec.models.core.recommender import one_math_thread_each

__all__ = ["recommend_all"]

#: ``progress(done_users, total_users)`` after each chunk is written.
Progress = Callable[[int, int], None]


def recommend_all(
    model: Recommender,
    path: str | Path,
    k: int = 100,
    *,
    exclude_seen: bool = True,
    chunk_users: int | None = None,
    workers: int = 2,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the top-``k`` movies of every user the model knows to the Parquet file ``path``.

    Args:
        model: a fitted model.
        path: the file to write (replaced if it exists; its folder is created).
        k: movies per user.
        exclude_seen: leave out the movies each user rated in training.
        chunk_users: users per chunk (default: `Recommender.batch_users`: as many as make about 16
            million scores, or 4,096 where an approximate retriever or the two-pass ranker bounds
            the scratch); memory grows with ``workers`` x ``chunk_users`` x the number of movies
            (with a retriever, x the movies it fetches; with the two-pass ranker, x its stages').
        workers: chunks computed at once, each on its own thread.
        progress: called after each chunk with (users written, users in all).

    Returns:
        ``{"users", "rows", "seconds", "path"}``.

    Raises:
        NotFittedError: the model is not fitted.
        ConfigError: a bad k, chunk size or worker count, or ``path`` is a folder.
    """
    check_k(k)
    check_int("workers", workers)
    if chunk_users is not None:
        check_int("chunk_users", chunk_users)
    model._require_fitted()
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the Parquet file to write, e.g. {path / 'top.parquet'}")
    n_users = len(model.users_)
    step = chunk_users or model.batch_users()
    starts = range(0, n_users, step)
    schema = pa.schema([("user", _arrow_type(model.users_.ids)), ("rank", pa.int32()),
                        ("item", _arrow_type(model.items_.ids)), ("score", pa.float64())])
    start_time = time.perf_counter()
    rows = 0

    def chunk(first: int) -> pa.Table:
        frame = model.recommend_batch(model.users_.ids[first : first + step], k, exclude_seen)
        return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)

    with ExitStack() as stack:
        temp = stack.enter_context(atomic_file(path))
        if workers > 1:
            stack.enter_context(one_math_thread_each())
        pool = stack.enter_context(ThreadPoolExecutor(workers, thread_name_prefix="recommend-all"))
        writer = stack.enter_context(pq.ParquetWriter(temp, schema))
        # at most `workers` chunks in flight beyond the one being written: memory stays bounded
        pending = [pool.submit(chunk, first) for first in starts[:workers]]
        for number in range(len(starts)):
            table = pending.pop(0).result()
            if number + workers < len(starts):
                pending.append(pool.submit(chunk, starts[number + workers]))
            writer.write_table(table)
            rows += table.num_rows
            if progress is not None:
                progress(min(starts[number] + step, n_users), n_users)
    return {"users": n_users, "rows": rows, "seconds": time.perf_counter() - start_time, "path": str(path)}


def _arrow_type(ids: np.ndarray) -> pa.DataType:
    return pa.int64() if np.issubdtype(ids.dtype, np.integer) else pa.string()
