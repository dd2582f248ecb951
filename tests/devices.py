"""What a test may expect of the device the models run on (``device="auto"`` picks CUDA when present).

On a CPU, the same seed gives the same model bit for bit. On CUDA, fits run with PyTorch's
deterministic algorithms (movierec.models.core.determinism), but cuBLAS picks its kernels by matrix
shape, and a few kernels have no deterministic form: there the promise is equality to float32
rounding, a relative 1e-5, which these helpers state once for every test.
"""

from __future__ import annotations

import numpy as np
import torch

CUDA = torch.cuda.is_available()
CUDA_RTOL = 1e-5  # float32 rounding of sums whose order a CUDA kernel may change


def assert_same_run(actual: np.ndarray, desired: np.ndarray) -> None:
    """Two runs that should agree: exactly on a CPU, to float32 rounding on CUDA."""
    if CUDA:
        np.testing.assert_allclose(actual, desired, rtol=CUDA_RTOL, atol=1e-6)
    else:
        np.testing.assert_array_equal(actual, desired)
