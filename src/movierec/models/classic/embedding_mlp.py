"""Rating regression through the embedding tower: ``embedding-mlp`` (`EmbeddingMLP`, the ml-100k design)
and ``embedding-regressor`` (`EmbeddingRegressor`, smaller, with early stopping on a carve-out)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError, DataError
from movierec.models.classic.tower import TowerRecommender
from movierec.models.core.checks import check_fraction, check_int

__all__ = ["EmbeddingMLP", "EmbeddingRegressor"]


class EmbeddingMLP(TowerRecommender):
    """The ml-100k embedding MLP: [user emb | movie emb] -> ReLU layers with dropout -> linear, MSE.

    Args:
        factors: embedding size of users and movies.
        hidden: ReLU layer sizes, ``"64,32"`` or a tuple.
        dropout: dropout rate after each ReLU layer (training only).
        epochs, batch_size, learning_rate: minibatch Adam; a fixed number of epochs.
        reg: L2 penalty ``reg * (|e_u|^2 + |e_i|^2)`` per example on the looked-up embeddings.
        weight_decay: L2 on the dense layers (Adam's weight decay). Without it the layers grow as
            the embeddings shrink, and ``reg`` alone does not regularise.
        random_state: seed of initial weights, batch order and dropout.
        device: ``"auto"`` (the CPU: these small steps are slower on a GPU, see
            `movierec.models.classic.shared`), ``"cpu"`` or ``"cuda[:N]"``.
        threads: torch CPU threads while fitting (None: leave torch's setting).

    The output layer's bias starts at the training mean, so the network learns deviations from it.
    Validation data, when given, is only monitored (``valid_loss``, ``valid_rmse`` in ``history_``).
    Unknown ids: the average user / movie embedding through the network.
    """

    name = "embedding-mlp"

    def __init__(self, factors: int = 32, hidden: str | Sequence[int] = "64,32", dropout: float = 0.2,
                 epochs: int = 8, batch_size: int = 1024, learning_rate: float = 3e-3,
                 reg: float = 1e-3, weight_decay: float = 1e-3, random_state: int = 0,
                 device: str = "auto", threads: int | None = 1) -> None:
        self.factors = factors
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.reg = reg
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.device = device
        self.threads = threads


# -- 2. dot-bias-sigmoid ----------------------------------------------------------------------------


class EmbeddingRegressor(EmbeddingMLP):
    """A smaller embedding MLP (MSE, Adam) with early stopping on a validation part.

    The validation part is always carved out of train (``valid`` passed to `fit` is ignored: it
    may be a test set, and early stopping chooses weights): ``valid_fraction`` of the training rows,
    random (seeded by ``random_state``), or with ``temporal_valid=True`` the latest ratings by
    timestamp (a time-ordered split: the model is stopped on the future, as it will be used).
    Training stops after ``patience`` epochs without a lower validation MSE and keeps the best
    epoch's weights. ``valid_fraction=0``: a fixed ``epochs`` on all of train.

    Args:
        valid_fraction: share of train held out for early stopping.
        temporal_valid: hold out the latest ratings instead of random ones (needs timestamps).
        patience: epochs without improvement before stopping.
        Others: as `EmbeddingMLP`.

    Raises (from fit): DataError if ``temporal_valid`` is set and train has no timestamps.
    """

    name = "embedding-regressor"

    def __init__(self, factors: int = 16, hidden: str | Sequence[int] = "32", dropout: float = 0.0,
                 epochs: int = 30, batch_size: int = 1024, learning_rate: float = 3e-3,
                 reg: float = 1e-3, weight_decay: float = 1e-3, valid_fraction: float = 0.1,
                 temporal_valid: bool = False, patience: int = 2, random_state: int = 0,
                 device: str = "auto", threads: int | None = 1) -> None:
        super().__init__(factors=factors, hidden=hidden, dropout=dropout, epochs=epochs,
                         batch_size=batch_size, learning_rate=learning_rate, reg=reg,
                         weight_decay=weight_decay, random_state=random_state, device=device,
                         threads=threads)
        self.valid_fraction = valid_fraction
        self.temporal_valid = temporal_valid
        self.patience = patience

    def _check_params(self) -> None:
        super()._check_params()
        check_fraction("valid_fraction", self.valid_fraction)
        if not isinstance(self.temporal_valid, bool | np.bool_):
            raise ConfigError(f"temporal_valid must be true or false, got {self.temporal_valid!r}")
        check_int("patience", self.patience, 1)

    def _patience(self) -> int | None:
        return int(self.patience)

    def _split_valid(self, train: Ratings, valid: Ratings | None) -> tuple[np.ndarray, Ratings | None]:
        # Early stopping chooses weights, so it watches a part carved out of train and never the
        # caller's `valid`, which may be a test set (see Recommender.fit).
        n = len(train)
        held = math.floor(n * self.valid_fraction)
        if held == 0:
            return np.arange(n), None
        if self.temporal_valid:
            if train.timestamp is None:
                raise DataError("temporal_valid needs timestamps, and these ratings have none")
            order = np.argsort(train.timestamp, kind="stable")
        else:
            order = np.random.default_rng(self.random_state).permutation(n)
        keep = np.sort(order[: n - held])
        return keep, train.take(np.sort(order[n - held :]), reindex=False)
