"""Mult-VAE: a variational autoencoder over users' interaction rows (Liang et al. 2018,
"Variational Autoencoders for Collaborative Filtering").

Notation: x_u is user u's row of the interaction matrix (items as columns; `interaction_matrix` with
``min_rating`` and ``weighting``), I the number of movies in training.

Network (``hidden`` = "600", ``latent`` = 200 gives the paper's I -> 600 -> 200 -> 600 -> I)::

    encoder:  x_u / |x_u|_2  -> dropout -> (Linear -> tanh) per hidden size -> Linear -> (mu_u, logvar_u)
    sample:   z_u = mu_u + exp(logvar_u / 2) * eps,  eps ~ N(0, I)       (training only; z_u = mu_u after)
    decoder:  z_u -> (Linear -> tanh) per hidden size, reversed -> Linear -> logits_u (I,)

Loss per user, averaged over a minibatch of users (the negative ELBO, with the KL term weighted)::

    L_u = - sum_i x_ui log softmax(logits_u)_i  +  beta_t * KL(N(mu_u, diag exp(logvar_u)) || N(0, I))

where the multinomial term uses the interaction values themselves (not the normalised input) and
beta_t = beta * min(1, t / anneal_steps) rises linearly over the first ``anneal_steps`` updates
(``anneal_steps = 0``: beta throughout). Adam with ``reg`` as weight decay, minibatches of
``batch_size`` users, a fixed number of ``epochs`` (no early stopping, so no part of train is held out;
the ``valid`` passed to `fit` only adds ``valid_ndcg@10`` to each epoch's record).

Scores (`predict`, `recommend`) are log softmax(logits_u): the log-probability that the user's next
interaction is with each movie (ranking scores, not ratings; comparable across users). Inference runs
in numpy (float32) on the CPU whatever ``device`` trained the network, with the mean mu_u as the code.

- Fold-in (a new user described by ratings): the ratings become an interaction row exactly as a
  training row is built (ratings below ``min_rating`` dropped, ``"centered"`` using the mean of all the
  given ratings) and go through the encoder and decoder: no training, well under a millisecond of
  arithmetic on MovieLens sizes.
- Unknown ids in `predict`: an unknown user is scored from an empty row (the network's answer for
  "nothing known"); an unknown movie gets the lowest score of that user's row (ranked last).
- No interactions at all (`_cold_start`): popularity, the number of interactions per movie.
- `_item_vectors`: the rows of the decoder's output weight (I, hidden[0]): each movie's direction in
  the last hidden layer, so movies the decoder scores alike lie close.

Defaults were chosen by NDCG@10 on a validation carve-out of the ml100k-strat75 train part
(``user-ratio:0.8:0`` of it; `benchmarks/selection/vae.py --valid`), never its test part: the paper's network
(600, 200), input dropout 0.7 rather than 0.5, ``"centered"`` weighting (favourites weigh more, in the
input and in the multinomial target: +0.008 NDCG over binary, on two seeds), beta reaching 0.2 after
200 updates (beta and the annealing length barely moved the result). Validation NDCG is flat from
about epoch 25 to 40 there; 64-user batches and 40 epochs rather than 128 and 30 because a dataset
with fewer users gets fewer updates per epoch: on the same carve-out of mlsmall-strat80 they lift
validation NDCG@10 from 0.169 to 0.197 (still rising), at no cost on ml-100k.

Randomness comes only from ``random_state``: a `torch.Generator` draws the initial weights, the order
of users, the input dropout and the reparameterisation noise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from movierec import metrics
from movierec.data.dataset import Ratings
from movierec.models.core.checks import check_fraction, check_int, check_number, parse_hidden
from movierec.models.core.interactions import (
    check_interaction_params,
    interaction_matrix,
    user_interactions,
)
from movierec.models.core.memory import AUTOGRAD_BYTES, TORCH_BYTES, csr_bytes, trained_table_bytes
from movierec.models.core.recommender import Callback, Recommender
from movierec.models.core.topk import top_k
from movierec.models.core.train import (
    current_replicas,
    load_module_arrays,
    module_arrays,
    replica_generator,
    resolve_device,
    torch_threads,
    train_minibatch,
)

__all__ = ["MultVAE"]

# Interaction matrices up to this many cells (float32) are kept dense on the training device, so a
# minibatch is one gather; larger ones are densified a minibatch at a time from the sparse matrix.
_DENSE_CELLS = 1 << 25
# Users scored per block at inference (each block is users x movies float32).
_SCORE_USERS = 1024
_EPS = 1e-12  # as F.normalize: an empty row stays zero


def _linear(fan_in: int, fan_out: int, generator: torch.Generator) -> nn.Linear:
    """A Linear layer with Glorot-uniform weights drawn from ``generator`` and zero biases."""
    # skip_init: nn.Linear's own initialisation would draw from torch's global RNG
    layer = torch.nn.utils.skip_init(nn.Linear, fan_in, fan_out)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        layer.weight.copy_((torch.rand((fan_out, fan_in), generator=generator) * 2 - 1) * bound)
        layer.bias.zero_()
    return layer


class _VAENet(nn.Module):
    """Encoder I -> hidden... -> 2 * latent and decoder latent -> reversed(hidden)... -> I."""

    def __init__(self, n_items: int, hidden: tuple[int, ...], latent: int, dropout: float,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.latent, self.dropout = latent, dropout
        encoder_sizes = [n_items, *hidden, 2 * latent]
        decoder_sizes = [latent, *reversed(hidden), n_items]
        self.encoder = nn.ModuleList(_linear(a, b, generator) for a, b in itertools.pairwise(encoder_sizes))
        self.decoder = nn.ModuleList(_linear(a, b, generator) for a, b in itertools.pairwise(decoder_sizes))

    @staticmethod
    def _stack(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        for layer in layers[:-1]:
            x = torch.tanh(layer(x))
        return layers[-1](x)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (n, I) interaction rows -> (logits (n, I), mu (n, latent), logvar (n, latent)).

        Training mode drops input cells and samples z; eval mode decodes the mean."""
        h = F.normalize(x, dim=1, eps=_EPS)
        if self.training and self.dropout > 0:
            keep = torch.rand(h.shape, generator=generator, device=h.device) >= self.dropout
            h = h * keep / (1 - self.dropout)
        code = self._stack(self.encoder, h)
        mu, logvar = code[:, : self.latent], code[:, self.latent :]
        z = mu
        if self.training:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device)
            z = mu + torch.exp(0.5 * logvar) * noise
        return self._stack(self.decoder, z), mu, logvar


def multinomial_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """- sum_i x_ui log softmax(logits_u)_i per user: (n, I), (n, I) -> (n,)."""
    return -(F.log_softmax(logits, dim=1) * x).sum(dim=1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per user: (n, d), (n, d) -> (n,)."""
    return 0.5 * (torch.exp(logvar) + mu.square() - 1.0 - logvar).sum(dim=1)


def _affine(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x @ weight.T + bias for x (n, fan_in); one row (fold-in) as a matrix-vector product, which
    multi-threaded BLAS runs several times faster than a one-row matrix product."""
    if len(x) == 1:
        return (weight @ x[0] + bias)[None, :]
    return x @ weight.T + bias


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class MultVAE(Recommender):
    """Mult-VAE^PR (Liang et al. 2018): see the module docstring for the model and its fallbacks.

    Args:
        hidden: hidden layer sizes of the encoder (the decoder mirrors them), e.g. "600" or "600,300".
        latent: size of the latent code z.
        dropout: share of input cells dropped while training (0 <= dropout < 1).
        beta: the KL weight reached after annealing (the paper's anneal cap, 0.2).
        anneal_steps: updates over which the KL weight rises linearly from 0 to ``beta``; 0: no
            annealing.
        epochs: passes over the users.
        batch_size: users per minibatch.
        learning_rate: Adam's step size.
        reg: Adam's weight decay (L2 on every weight and bias).
        min_rating, weighting: the interaction matrix (see `movierec.models.core.interactions`).
        random_state: seed of the only generator used (weights, user order, dropout, noise).
        device: "auto", "cpu" or "cuda[:N]" for training; inference runs on the CPU.
        threads: torch CPU threads while fitting (restored after); None leaves torch's setting.

    Fitted attributes: ``interactions_`` (users x movies CSR, float32), ``history_`` (one record per
    epoch: ``epoch``, ``train_loss``, ``beta``, ``lr``, ``seconds`` and ``valid_ndcg@10`` with
    ``valid``), and the network's weights as numpy arrays.
    """

    name = "mult-vae"
    predicts_ratings = False

    def __init__(self, hidden: str | Sequence[int] = "600", latent: int = 200, dropout: float = 0.7,
                 beta: float = 0.2, anneal_steps: int = 200, epochs: int = 40, batch_size: int = 64,
                 learning_rate: float = 1e-3, reg: float = 0.0, min_rating: float = 0.0,
                 weighting: str = "centered", random_state: int = 0, device: str = "auto",
                 threads: int | None = 1) -> None:
        self.hidden = hidden
        self.latent = latent
        self.dropout = dropout
        self.beta = beta
        self.anneal_steps = anneal_steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.reg = reg
        self.min_rating = min_rating
        self.weighting = weighting
        self.random_state = random_state
        self.device = device
        self.threads = threads

    def _check_params(self) -> None:
        parse_hidden(self.hidden)
        for name in ("latent", "epochs", "batch_size"):
            check_int(name, getattr(self, name), 1)
        check_fraction("dropout", self.dropout)
        check_number("beta", self.beta)
        check_int("anneal_steps", self.anneal_steps, 0)
        check_number("learning_rate", self.learning_rate, strict=True)
        check_number("reg", self.reg)
        check_interaction_params(self.min_rating, self.weighting)
        check_int("random_state", self.random_state, 0)
        if self.threads is not None:
            check_int("threads", self.threads, 1)
        resolve_device(self.device)  # raises ConfigError naming the device

    # -- fitting ------------------------------------------------------------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        device = resolve_device(self.device)
        generator = torch.Generator().manual_seed(int(self.random_state))
        # dropout and noise are drawn where the tensors live; on a GPU that needs its own generator
        noise_generator = generator if device.type == "cpu" else torch.Generator(
            device=device).manual_seed(int(self.random_state) + 1)
        noise_generator = replica_generator(noise_generator)  # each replica its own masks and noise
        interactions = interaction_matrix(self.seen_, self.min_rating, self.weighting)
        n_users, n_items = interactions.shape
        with torch_threads(self.threads):
            net = _VAENet(n_items, parse_hidden(self.hidden), int(self.latent), float(self.dropout),
                          generator).to(device)
            sharded = current_replicas() is not None
            if sharded and n_users * n_items <= _DENSE_CELLS:
                # the rows of this replica's users only (the others' are empty here)
                own = np.flatnonzero(train.user_counts)
                dense = torch.as_tensor(interactions[own].toarray(), device=device)
                position = np.full(n_users, -1, dtype=np.int64)
                position[own] = np.arange(len(own))
                at = torch.as_tensor(position, device=device)

                def rows_of(users: torch.Tensor) -> torch.Tensor:
                    return dense.index_select(0, at.index_select(0, users))
            elif n_users * n_items <= _DENSE_CELLS:
                dense = torch.as_tensor(interactions.toarray(), device=device)

                def rows_of(users: torch.Tensor) -> torch.Tensor:
                    return dense.index_select(0, users)
            else:
                def rows_of(users: torch.Tensor) -> torch.Tensor:
                    block = interactions[users.cpu().numpy()].toarray()
                    return torch.as_tensor(block, device=device)

            beta, anneal = float(self.beta), int(self.anneal_steps)
            updates = [0]

            def batch_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
                x = rows_of(batch[0])
                logits, mu, logvar = net(x, noise_generator)
                weight = beta * min(1.0, updates[0] / anneal) if anneal else beta
                if net.training:
                    updates[0] += 1
                return (multinomial_nll(logits, x) + weight * gaussian_kl(mu, logvar)).mean()

            valid_rows = self._valid_relevant(valid, train)
            self.history_: list[dict[str, Any]] = []

            def on_epoch(event: str, record: dict[str, Any]) -> None:
                record["beta"] = beta * min(1.0, updates[0] / anneal) if anneal else beta
                if valid_rows is not None:
                    record["valid_ndcg@10"] = self._valid_ndcg(net, rows_of, *valid_rows, device)
                self.history_.append(record)
                if callback is not None:
                    callback(event, dict(record))

            # under data-parallel training, the users of this replica's shard
            users = torch.as_tensor(np.flatnonzero(train.user_counts), device=device) if sharded \
                else torch.arange(n_users, device=device)
            train_minibatch(net, batch_loss, (users,),
                            epochs=int(self.epochs), batch_size=int(self.batch_size),
                            learning_rate=float(self.learning_rate), generator=generator,
                            weight_decay=float(self.reg), callback=on_epoch)
        self.interactions_ = interactions
        self._use_weights(module_arrays(net.cpu()))

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """The encoder and decoder (n_items x hidden each) with gradients and Adam state, the dense
        users x movies matrix where it is small enough (else a batch's rows), and a batch's
        activations over every movie."""
        hidden = parse_hidden(self.hidden)
        widths = [*hidden, int(self.latent)]
        params = 2 * n_items * widths[0] + int(np.dot(widths[:-1], widths[1:]))
        dense = 4 * n_users * n_items if n_users * n_items <= _DENSE_CELLS else 0
        batch = 8 * 4 * int(self.batch_size) * n_items
        return int(TORCH_BYTES + AUTOGRAD_BYTES + trained_table_bytes(params, 2) + dense + batch
                   + 3 * csr_bytes(n_users, n_ratings))

    def _valid_relevant(self, valid: Ratings | None, train: Ratings
                        ) -> tuple[np.ndarray, sp.csr_matrix] | None:
        """(indices of the users with training ratings here, their valid movies as a users x movies
        CSR) for reporting; under data-parallel training, rank 0's users only."""
        if valid is None:
            return None
        users = self.users_.indices(valid.user_ids, missing="mask")
        items = self.items_.indices(valid.item_ids, missing="mask")
        keep = (users >= 0) & (items >= 0)
        if current_replicas() is not None:  # a replica's own users: the others' rows are not here
            keep[keep] = train.user_counts[users[keep]] > 0
        if not keep.any():
            return None
        known, row = np.unique(users[keep], return_inverse=True)
        relevant = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (row, items[keep])),
                                 shape=(len(known), len(self.items_)))
        return known, relevant

    def _valid_ndcg(self, net: _VAENet, rows_of: Any, users: np.ndarray, relevant: sp.csr_matrix,
                    device: torch.device) -> float:
        """NDCG@10 of the current network on validation movies, seen movies excluded (reporting)."""
        was_training = net.training
        net.eval()
        ndcg = []
        with torch.no_grad():
            for start in range(0, len(users), _SCORE_USERS):
                block = users[start : start + _SCORE_USERS]
                logits = net(rows_of(torch.as_tensor(block, device=device)))[0].cpu().numpy()
                top, _ = top_k(logits, min(10, logits.shape[1]), exclude=self.seen_[block])
                ndcg.append(metrics.ranking_metrics(top, relevant[start : start + len(block)])["ndcg"])
        net.train(was_training)
        return float(np.mean(np.concatenate(ndcg)))

    def _use_weights(self, arrays: dict[str, np.ndarray]) -> None:
        """Keep the network's weights (``encoder.K.weight`` ... as `module_arrays` names them) and
        numpy layer lists for inference: the first encoder weight transposed (I, hidden[0]) so a
        sparse row block multiplies it directly."""
        self.weights_ = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}

        def layers(part: str) -> list[tuple[np.ndarray, np.ndarray]]:
            count = sum(1 for k in self.weights_ if k.startswith(part + ".") and k.endswith(".weight"))
            return [(self.weights_[f"{part}.{j}.weight"], self.weights_[f"{part}.{j}.bias"])
                    for j in range(count)]

        self._encoder, self._decoder = layers("encoder"), layers("decoder")
        self._first_t = np.ascontiguousarray(self._encoder[0][0].T)
        self._latent = self._decoder[0][0].shape[1]

    # -- scoring ------------------------------------------------------------------------------------
    def _scores_for_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        """Log-probabilities (n, I) float64 for interaction rows (n, I), eval mode (z = mu)."""
        rows = sp.csr_matrix(rows, dtype=np.float32)
        norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1), dtype=np.float32)).ravel()
        h = sp.diags(1.0 / np.maximum(norms, _EPS)).astype(np.float32) @ rows
        x = np.asarray(h @ self._first_t) + self._encoder[0][1]
        for weight, bias in self._encoder[1:]:
            x = _affine(np.tanh(x), weight, bias)
        x = x[:, : self._latent]  # the mean
        for j, (weight, bias) in enumerate(self._decoder):
            x = _affine(x if j == 0 else np.tanh(x), weight, bias)
        return _log_softmax(x.astype(np.float64))

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        blocks = [self._scores_for_rows(self.interactions_[user_index[s : s + _SCORE_USERS]])
                  for s in range(0, len(user_index), _SCORE_USERS)]
        return np.concatenate(blocks) if blocks else np.empty((0, len(self.items_)))

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        user_index, item_index = np.asarray(user_index), np.asarray(item_index)
        out = np.empty(len(user_index), dtype=np.float64)
        # score each distinct user once: index -1 (unknown) maps to an empty row
        users, inverse = np.unique(user_index, return_inverse=True)
        for start in range(0, len(users), _SCORE_USERS):
            block = users[start : start + _SCORE_USERS]
            rows = sp.diags((block >= 0).astype(np.float32)) @ self.interactions_[np.maximum(block, 0)]
            scores = self._scores_for_rows(rows)
            pick = (inverse >= start) & (inverse < start + len(block))
            row, item = inverse[pick] - start, item_index[pick]
            out[pick] = np.where(item >= 0, scores[row, np.maximum(item, 0)], scores[row].min(axis=1))
        return out

    def _fold_in_row(self, item_index: np.ndarray, ratings: np.ndarray) -> sp.csr_matrix:
        """A new user's interaction row (1, I), built as `interaction_matrix` builds a training row."""
        ratings = np.asarray(ratings, dtype=np.float64)
        keep = ratings >= self.min_rating
        values = user_interactions(ratings, self.min_rating, self.weighting)[keep]
        columns = np.asarray(item_index, dtype=np.int64)[keep]
        order = np.argsort(columns)
        return sp.csr_matrix((values[order], columns[order], [0, len(columns)]),
                             shape=(1, len(self.items_)), dtype=np.float32)

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        if len(item_index) == 0:
            return self._cold_start()
        return self._scores_for_rows(self._fold_in_row(item_index, ratings))[0]

    def _cold_start(self) -> np.ndarray:
        return np.asarray((self.interactions_ != 0).sum(axis=0), dtype=np.float64).ravel()

    def _item_vectors(self) -> np.ndarray:
        return self._decoder[-1][0].astype(np.float64)

    # -- persistence --------------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return dict(self.weights_)

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        # The interactions follow from the saved training ratings (seen_) and the hyperparameters.
        self.interactions_ = interaction_matrix(self.seen_, self.min_rating, self.weighting)
        net = _VAENet(len(self.items_), parse_hidden(self.hidden), int(self.latent), 0.0,
                      torch.Generator().manual_seed(0))
        load_module_arrays(net, arrays)  # checks that the arrays fit these hyperparameters
        self._use_weights(module_arrays(net))
