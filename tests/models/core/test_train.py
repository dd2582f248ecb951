"""The minibatch trainer: it learns, is seeded, schedules, stops early and restores the best weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from movierec.errors import ConfigError
from movierec.models.core.train import (
    check_schedule,
    load_module_arrays,
    module_arrays,
    pooled,
    resolve_device,
    train_minibatch,
    training_replicas,
)


def regression(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(600, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.05 * torch.randn(600, generator=generator)
    return x, y


def fit(seed: int = 1, **options: object) -> tuple[torch.nn.Linear, list[dict[str, float]]]:
    torch.manual_seed(0)  # the module's initial weights; batch order comes from the generator
    x, y = regression()
    layer = torch.nn.Linear(3, 1)

    def loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return ((layer(batch[0]).squeeze(-1) - batch[1]) ** 2).mean()

    settings = {"epochs": 20, "batch_size": 32, "learning_rate": 0.05} | options
    history = train_minibatch(layer, loss, (x[:500], y[:500]), valid=(x[500:], y[500:]),
                              generator=torch.Generator().manual_seed(seed), **settings)
    return layer, history


def test_learns_the_weights() -> None:
    layer, history = fit()
    np.testing.assert_allclose(layer.weight.detach().numpy().ravel(), [1.0, -2.0, 0.5], atol=0.03)
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 5
    assert [r["epoch"] for r in history] == list(range(1, 21))
    assert {"train_loss", "valid_loss", "lr", "seconds", "epochs"} <= set(history[0])


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "adagrad"])
def test_every_optimizer_learns(optimizer: str) -> None:
    _, history = fit(optimizer=optimizer, learning_rate=0.05 if optimizer != "adagrad" else 0.3)
    assert history[-1]["valid_loss"] < 0.1


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, _ = fit(seed=3, epochs=2)
    b, _ = fit(seed=3, epochs=2)
    c, _ = fit(seed=4, epochs=2)
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, c.weight)


def test_schedules_change_the_learning_rate() -> None:
    _, cosine = fit(epochs=4, lr_schedule="cosine")
    assert cosine[0]["lr"] == pytest.approx(0.05) and cosine[-1]["lr"] < 0.05
    _, step = fit(epochs=4, lr_schedule="step:0.5:2")
    assert [r["lr"] for r in step] == pytest.approx([0.05, 0.05, 0.025, 0.025])
    _, expo = fit(epochs=3, lr_schedule="exponential:0.1")
    assert [r["lr"] for r in expo] == pytest.approx([0.05, 0.005, 0.0005])


@pytest.mark.parametrize("spec", ["linear", "step:2:1", "step:0.5", "exponential:x", "cosine:1"])
def test_bad_schedules(spec: str) -> None:
    with pytest.raises(ConfigError, match="lr_schedule"):
        check_schedule(spec)


def test_early_stopping_restores_the_best_epoch() -> None:
    # A learning rate this large makes the loss blow up after a good start; the best epoch wins.
    layer, history = fit(epochs=30, learning_rate=1.2, optimizer="sgd", early_stopping=2)
    assert len(history) < 30
    best = min(r["valid_loss"] for r in history)
    x, y = regression()
    with torch.no_grad():
        restored = float(((layer(x[500:]).squeeze(-1) - y[500:]) ** 2).mean())
    assert restored == pytest.approx(best, rel=1e-5)


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        fit(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="batch_size and epochs"):
        fit(batch_size=0)
    layer = torch.nn.Linear(1, 1)
    with pytest.raises(ConfigError, match="early_stopping needs validation"):
        train_minibatch(layer, lambda b: layer(b[0]).sum(), (torch.ones(2, 1),), epochs=1,
                        batch_size=1, learning_rate=0.1, generator=torch.Generator(),
                        early_stopping=1)


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device must be"):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_module_arrays_round_trip() -> None:
    source, _ = fit(epochs=1)
    target = torch.nn.Linear(3, 1)
    load_module_arrays(target, module_arrays(source, "net."), "net.")
    assert torch.equal(source.weight, target.weight) and torch.equal(source.bias, target.bias)


def test_auto_keeps_a_model_that_is_slower_on_a_gpu_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """device="auto" picks CUDA where present, except for models with auto_cuda False (measured
    slower there); an explicit "cuda" is honoured for every model."""
    from movierec.models.core.train import resolve_device
    from movierec.models.registry import get_model_class

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("auto", prefer_cuda=False).type == "cpu"
    assert resolve_device("cuda", prefer_cuda=False).type == "cuda"
    slower = {name for name in ("dot-bias-sigmoid", "embedding-mlp", "embedding-regressor",
                                "rating-classifier", "mean-normalized-mf", "ials", "mult-vae")
              if not get_model_class(name).auto_cuda}
    assert slower == {"dot-bias-sigmoid", "embedding-mlp", "embedding-regressor", "rating-classifier"}


class _OtherShard:
    """Replicas of two, the other one's sums given: `total` adds them to this one's."""

    rank = 0

    def __init__(self, other: list[float]) -> None:
        self.other = np.array(other)

    def total(self, values: np.ndarray) -> np.ndarray:
        return values + self.other


def test_pooled_figures_by_hand() -> None:
    """This shard: 2 rows, loss 0.5, rmse 1 (squared errors sum 2); the other: 6 rows, loss sum 1.5,
    squared errors sum 14 -> loss (1 + 1.5) / 8, rmse sqrt(16 / 8). In one process: as given."""
    figures = {"train_loss": 0.5, "train_rmse": 1.0}
    assert pooled(figures, 2) is figures
    with training_replicas(_OtherShard([1.5, 14.0, 6])):
        got = pooled(figures, 2)
        assert got == {"train_loss": 2.5 / 8, "train_rmse": math.sqrt(2.0)}
    with training_replicas(_OtherShard([0.0, 0.0, 0])):
        assert all(math.isnan(v) for v in pooled(figures, 0).values())
    # a replica without rows (NaN means) adds nothing to the others' figures
    with training_replicas(_OtherShard([1.5, 14.0, 6])):
        assert pooled({"train_loss": math.nan, "train_rmse": math.nan}, 0) == {
            "train_loss": 0.25, "train_rmse": math.sqrt(14.0 / 6)}
