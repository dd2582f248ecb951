"""Same seed, same model on a GPU too.

On a CPU every torch kernel movierec uses is deterministic. On CUDA several are not by default: an
embedding's backward pass and ``index_add_`` accumulate with atomics, whose order varies from run to
run, so two fits with the same seed drifted apart by ~1e-7. `cuda_determinism` turns on PyTorch's
deterministic algorithms (and the cuBLAS workspace setting they need) for the duration of a fit on
CUDA, and restores the caller's settings afterwards.

What it cannot promise: cuBLAS chooses kernels by matrix shape, so scores of the same users computed
in blocks of different sizes may differ in the last bit of a float32 (about 1e-7 relative); tests
that compare across block sizes on CUDA state that tolerance.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["cuda_determinism", "wants_cuda"]

# cuBLAS needs a fixed workspace to be deterministic; this is the smallest of the two settings
# NVIDIA documents (":16:8" saves memory but is slower). It is read when cuBLAS first runs.
_CUBLAS_WORKSPACE = ":4096:8"


def wants_cuda(device: Any) -> bool:
    """Whether a model's ``device`` hyperparameter may resolve to CUDA ("auto", "cuda", "cuda:N" or
    a torch device of type cuda). CPU-only models have no ``device`` (None): False."""
    if device is None:
        return False
    text = str(getattr(device, "type", device))
    return text == "auto" or text.startswith("cuda")


@contextlib.contextmanager
def cuda_determinism(device: Any) -> Iterator[None]:
    """Run the block with deterministic torch algorithms when ``device`` may be CUDA and CUDA is
    present; a no-op otherwise (torch is not even imported for a CPU-only model).

    Operations without a deterministic CUDA implementation warn rather than fail (``warn_only``), so
    a fit never stops for it. The caller's global setting is restored on exit.
    """
    if not wants_cuda(device):
        yield
        return
    import torch

    if not torch.cuda.is_available():
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", _CUBLAS_WORKSPACE)
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
