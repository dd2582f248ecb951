"""How much memory a fit will take, checked before it allocates anything.

Every model answers `Recommender.estimate_fit_bytes(n_users, n_items, n_ratings)`: the peak bytes its
`fit` allocates on top of the training ratings the caller already holds, from the sizes alone. The
estimates are deliberately simple formulas over the largest buffers (dense items x items matrices are
quadratic in movies; factor models linear in users, movies and ratings; neural models hold their
embeddings, the optimizer's state and a batch), checked against measured peaks by
``benchmarks/memory.py``: they aim at the right order of magnitude (within about 2x), leaning high.

`check_fit_memory` refuses a fit whose estimate exceeds a limit with a `MemoryLimitError` that names
the model, the estimate, the limit and what to use instead; the default limit is the memory the
machine has available now (`available_memory`).
"""

from __future__ import annotations

import os
import re
from typing import Any

from movierec.errors import ConfigError, MemoryLimitError

__all__ = [
    "AUTOGRAD_BYTES",
    "JIT_BYTES",
    "TORCH_BYTES",
    "available_memory",
    "check_fit_memory",
    "cooccurrence_pairs",
    "csr_bytes",
    "factor_fit_bytes",
    "format_bytes",
    "parse_memory",
    "trained_table_bytes",
]

_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9, "GB": 10**9,
          "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_MEMORY = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*")

#: What a torch fit touches before its own tensors: kernels' first use, thread pools, allocator
#: pools (measured 45-55 MB above the pre-fit RSS for the ALS models on ml-latest-small).
TORCH_BYTES = 50 * 10**6
#: What compiling a numba kernel takes on its first use in a process (LLVM): iALS's CPU solver
#: measured 140 MB above the pre-fit RSS on ml-latest-small, against 56 MB before it was compiled.
JIT_BYTES = 80 * 10**6


def parse_memory(text: str) -> int:
    """Bytes in a size such as ``"4GB"``, ``"512MB"``, ``"1.5G"``, ``"2GiB"`` or ``"1000000"``
    (decimal units; ``KiB``/``MiB``/``GiB`` binary).

    Raises:
        ConfigError: for anything else, or a size of 0.
    """
    match = _MEMORY.fullmatch(str(text))
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise ConfigError(f"memory must be a positive size such as 4GB, 512MB or 2GiB, got {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(n: float) -> str:
    """``30.2 GB``, ``512.0 MB``, ``12.0 kB`` (decimal units)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def available_memory() -> int:
    """Bytes the machine can give now: ``MemAvailable`` from /proc/meminfo, else free physical pages
    (``os.sysconf``), else total physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            pages = os.sysconf(name)
        except (AttributeError, ValueError, OSError):
            continue
        if pages > 0 and page > 0:
            return int(pages * page)
    return 1 << 62  # unknown: no limit rather than a refusal on a guess


def csr_bytes(n_rows: int, nnz: float, value_bytes: int = 8, index_bytes: int = 4) -> int:
    """A CSR matrix: values and column indices per stored entry, plus the row pointer."""
    return int(nnz * (value_bytes + index_bytes) + (n_rows + 1) * 8)


def cooccurrence_pairs(n_users: int, n_items: int, n_ratings: int) -> int:
    """Distinct (movie, movie) pairs rated by a common user, at most: the stored entries of X^T X,
    bounded by n_items^2 and by the pairs the users make (n_ratings^2 / n_users for even users)."""
    return int(min(float(n_items) ** 2, float(n_ratings) ** 2 / max(n_users, 1)))


def factor_fit_bytes(n_users: int, n_items: int, n_ratings: int, factors: int = 64,
                     sessions: bool = True) -> int:
    """An iALS fit (`movierec.models.ranking.ials`), linear in everything: the confidences (with
    session rows, at most one entry a rating and ~8 ratings a session) by user and by movie as CSR
    (an int32 index and a float32 value each way, 16 bytes an entry, with 8 more for the build's
    temporaries), float32 factors, and the compiler of the CPU solver on its first use (`JIT_BYTES`).

    Fitted to what fits add (`benchmarks/memory.py --synth`, peak RSS above the RSS before the fit):
    2M / 8M / 16M / 32M ratings measured 179 / 384 / 665 / 1,700 MB against estimates of 297 / 788 /
    1,446 / 2,763 MB, so it leans high by 1.6-2.2x (it charged 56 bytes an entry and two copies of
    the factors until the fit stopped copying them: 2.1-3.8x high). The 8 bytes of temporaries are
    kept though the interaction rows are now built CSR to CSR (187 / 456 / 800 / 2,000 MB before):
    real sessions may outnumber the synthetic ones, and an estimate must not fall under."""
    entries = n_ratings * (2 if sessions else 1)
    rows = n_users + (n_ratings // 8 if sessions else 0)
    return int(TORCH_BYTES + JIT_BYTES + 24 * entries + 4 * int(factors) * (rows + n_items))


def check_fit_memory(model: Any, n_users: int, n_items: int, n_ratings: int,
                     limit: int | None = None) -> int:
    """The estimate of ``model.estimate_fit_bytes`` for these sizes, refused above ``limit`` bytes.

    Args:
        model: a `Recommender` (its registry ``name`` and hyperparameters shape the message).
        n_users, n_items, n_ratings: the training data's sizes.
        limit: bytes allowed; None: `available_memory`.

    Raises:
        MemoryLimitError: the estimate exceeds the limit (one line: model, estimate, limit, what to
            use instead).
        ConfigError: ``limit`` is not a positive int.
    """
    if limit is None:
        limit = available_memory()
    elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"max_memory must be a positive number of bytes, got {limit!r}")
    need = int(model.estimate_fit_bytes(n_users, n_items, n_ratings))
    if need <= limit:
        return need
    name = getattr(model, "name", "") or type(model).__name__
    raise MemoryLimitError(
        f"{name} needs ~{format_bytes(need)} to fit {n_ratings:,} ratings of {n_users:,} users on "
        f"{n_items:,} movies, above the {format_bytes(limit)} memory limit; "
        f"{_advice(model, n_users, n_items, n_ratings, limit)}"
    )


def _advice(model: Any, n_users: int, n_items: int, n_ratings: int, limit: int) -> str:
    """What fits instead: a ``max_items`` small enough, if the model has one, then iALS (linear)."""
    options = []
    params = model.get_params() if hasattr(model, "get_params") else {}
    if "max_items" in params and n_items > 1:
        low, high = 0, min(int(params["max_items"]), n_items)  # the largest catalog that fits
        while low < high:
            middle = (low + high + 1) // 2
            trial = type(model)(**{**params, "max_items": middle})
            if trial.estimate_fit_bytes(n_users, n_items, n_ratings) <= limit:
                low = middle
            else:
                high = middle - 1
        if low >= 1:
            options.append(f"max_items={low:,}")
    ials = factor_fit_bytes(n_users, n_items, n_ratings)  # ials' defaults
    if getattr(model, "name", "") != "ials" and ials <= limit:
        options.append(f"ials (~{format_bytes(ials)})")
    if not options:
        return ("use a smaller data set (fewer users, movies or ratings) or raise the limit "
                "(--max-memory)")
    return "use " + " or ".join(options) + ", or raise the limit (--max-memory)"



def trained_table_bytes(rows: int, width: int, copies: int = 4) -> int:
    """float32 tables trained by gradient: parameters, gradients and two optimizer moments
    (``copies=4``, Adam or Adagrad keeping two)."""
    return int(4 * rows * width * copies)

#: What autograd adds on the first backward pass (its engine, saved tensors' pools).
AUTOGRAD_BYTES = 50 * 10**6
