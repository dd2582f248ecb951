"""The device ranker for inner-product models (used on CUDA) against the CPU's `top_k`, run here on
torch's CPU device: same items, same order, ties by item index, same -1 / -inf padding."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from movierec.data.synth import synthesize
from movierec.models.core import device_topk
from movierec.models.core.device_topk import DotTopK
from movierec.models.core.topk import top_k
from movierec.models.registry import create_model


def _case(seed: int, n_users: int = 40, n_items: int = 30, f: int = 3):
    rng = np.random.default_rng(seed)
    # small integers: many exact ties, inside lists and at their edges
    users = rng.integers(-2, 3, size=(n_users, f)).astype(np.float32)
    items = rng.integers(-2, 3, size=(n_items, f)).astype(np.float32)
    bias = rng.integers(0, 2, size=n_items).astype(np.float32)
    seen = sp.random(n_users, n_items, density=0.3, format="csr", random_state=seed)
    return users, items, bias, seen


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 5, 30, 50])
def test_device_ranker_equals_top_k_ties_included(seed: int, k: int) -> None:
    users, items, bias, seen = _case(seed)
    candidates = np.random.default_rng(seed + 100).random(items.shape[0]) < 0.8 if seed % 2 else None
    scores = users.astype(np.float64) @ items.astype(np.float64).T + bias[None, :]
    chosen = np.array([0, 5, 7, 39, 5, 12])
    want_items, want_scores = top_k(scores[chosen], k, exclude=seen[chosen], candidates=candidates)
    got_items, got_scores = DotTopK(users, items, bias, torch.device("cpu")).top_k(
        chosen, k, seen, candidates)
    np.testing.assert_array_equal(got_items, want_items)
    np.testing.assert_array_equal(got_scores, want_scores)


def test_a_user_with_everything_seen_gets_padding() -> None:
    users, items, bias, _ = _case(0, n_users=2, n_items=4)
    seen = sp.csr_matrix(np.array([[1, 1, 1, 1], [1, 0, 1, 0]]))
    got_items, got_scores = DotTopK(users, items, bias, torch.device("cpu")).top_k(
        np.array([0, 1]), 3, seen, np.array([True, True, True, False]))
    assert got_items[0].tolist() == [-1, -1, -1] and np.all(np.isneginf(got_scores[0]))
    assert got_items[1, 0] == 1 and got_items[1, 1:].tolist() == [-1, -1]  # item 3 is no candidate


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: where there is none, the CPU ranks")
def test_on_cuda_ials_ranks_on_the_device_like_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    data = synthesize(300, 200, 6000, seed=1).ratings
    model = create_model("ials", factors=8, epochs=3, device="auto").fit(data)
    users = np.arange(len(model.users_))
    monkeypatch.setattr(device_topk, "MIN_DEVICE_SCORES", 1)
    assert model._device_top_k(len(users)) is not None
    on_device = model.recommend_indices(users, 10)
    monkeypatch.setattr(device_topk, "MIN_DEVICE_SCORES", 1 << 62)
    on_cpu = model.recommend_indices(users, 10)
    # float64 sums in another order may swap two movies a last bit apart: allow a few
    assert (on_device[0] == on_cpu[0]).mean() > 0.999
    np.testing.assert_allclose(on_device[1], on_cpu[1], rtol=1e-12)
