"""Data-parallel training of the models that step sparse embedding tables or run their own loops:
the tower presets, dot-bias-sigmoid and BPR.

The arithmetic of putting row-sparse gradients together is checked against autograd on the global
batch; the collective around it on two real gloo processes; the models by two-process launches of
the `movierec` command against one process at the same seed (see `launch`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from movierec.artifacts import load_model
from movierec.cli import app
from movierec.data.download import load_dataset
from movierec.data.split import make_split
from movierec.distributed import COVERED, check_covered
from movierec.distributed.data_parallel import combine_parts
from movierec.errors import ConfigError

from .launch import SRC, data_args, free_port, launch, single


def two_processes(*args: str) -> dict[str, Any]:
    ranks = launch(["--threads", "1", *args, "--distributed", "--json"])
    assert [r.code for r in ranks] == [0, 0], [r.err for r in ranks]
    assert ranks[1].out == ""
    return json.loads(ranks[0].out)


# -- the arithmetic ------------------------------------------------------------------------------
def table_gradient(table: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, *, sparse: bool
                   ) -> torch.Tensor:
    """Gradient of mean((sum of the looked-up row - target)^2) over a batch, as autograd gives it."""
    weight = table.clone().requires_grad_(True)
    loss = (F.embedding(rows, weight, sparse=sparse).sum(1) - targets).square().mean()
    loss.backward()
    assert weight.grad is not None
    return weight.grad


def test_weighted_pieces_summed_per_row_are_the_gradient_of_the_global_batch_mean():
    torch.manual_seed(0)
    table = torch.randn(6, 3)
    rows = torch.tensor([0, 2, 2, 5, 1, 2])  # row 2 three times, across both pieces
    targets = torch.randn(6)
    pieces = [(rows[:4], targets[:4]), (rows[4:], targets[4:])]  # unequal shares: 4 and 2 rows
    parts = []
    for piece_rows, piece_targets in pieces:
        grad = table_gradient(table, piece_rows, piece_targets, sparse=True)
        parts.append((grad._indices()[0], grad._values(), len(piece_rows)))
    indices, values = combine_parts(parts, weighted=True)
    assert indices.tolist() == rows.tolist()  # concatenated in rank order, repeats kept
    combined = torch.zeros_like(table).index_add_(0, indices, values)
    expected = table_gradient(table, rows, targets, sparse=False)
    torch.testing.assert_close(combined, expected, rtol=1e-6, atol=1e-6)
    # by hand for one entry: rank 1's only row-1 entry is its mean over 2 rows, weighted 2 / 6
    assert values[4].tolist() == pytest.approx((parts[1][1][0] * 2 / 6).tolist())


def test_unweighted_pieces_are_summed_as_given():
    parts = [(torch.tensor([1, 3]), torch.tensor([[1.0], [2.0]]), 2),
             (torch.tensor([3]), torch.tensor([[5.0]]), 7),
             (torch.tensor([], dtype=torch.int64), torch.zeros((0, 1)), 0)]
    indices, values = combine_parts(parts, weighted=False)
    assert indices.tolist() == [1, 3, 3] and values[:, 0].tolist() == [1.0, 2.0, 5.0]
    weighted = combine_parts(parts, weighted=True)[1]
    assert weighted[:, 0].tolist() == pytest.approx([2 / 9, 4 / 9, 35 / 9])


# The collective itself, on two gloo processes: rank 0 holds 3 entries, rank 1 one (the gather pads).
RANKS = """
import json, os, torch, torch.distributed as dist
from movierec.distributed.group import Group, leave_group
from movierec.distributed.data_parallel import GradientReplicas
rank = int(os.environ["RANK"])
dist.init_process_group("gloo", rank=rank, world_size=2)
replicas = GradientReplicas(Group(rank, 2, rank, "gloo", torch.device("cpu"), 30.0))
if rank == 0:
    indices, values, rows = torch.tensor([4, 0, 4]), torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), 3
else:
    indices, values, rows = torch.tensor([7]), torch.tensor([[10.0, 20.0]]), 1
weighted = replicas.combine_sparse(indices, values, rows)
summed = replicas.combine_sparse(indices, values, None)
import numpy as np
shard = replicas.shard((torch.arange(10 * rank, 10 * rank + 3 + 2 * rank),))[0]
print(json.dumps({"indices": weighted[0].tolist(), "dtype": str(weighted[0].dtype),
                  "weighted": weighted[1].tolist(), "summed": summed[1].tolist(),
                  "agree": [replicas.agree(rank == 0), replicas.agree(rank == 1)],
                  "shard": shard.tolist(),
                  "total": replicas.total(np.array([1.5, rank])).tolist(),
                  "gather": replicas.gather(np.arange(rank + 1)).tolist()}))
leave_group()
"""


def two_ranks(script: str, timeout: float = 180) -> list[Any]:
    """Run ``script`` as ranks 0 and 1 of a gloo launch; each rank's printed JSON, in rank order."""
    port = str(free_port())
    procs = [subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": port, "OMP_NUM_THREADS": "1",
             "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])})
        for rank in range(2)]
    outs = [proc.communicate(timeout=timeout) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in outs]
    return [json.loads(out) for out, _ in outs]


def test_the_combine_collective_on_two_processes_gives_every_rank_the_same_pieces():
    for rank, result in enumerate(two_ranks(RANKS)):
        assert result["indices"] == [4, 0, 4, 7] and result["dtype"] == "torch.int64"
        # rank 0's values x 3/4, rank 1's x 1/4 (exact in binary)
        assert result["weighted"] == [[0.75, 1.5], [2.25, 3.0], [3.75, 4.5], [2.5, 5.0]]
        assert result["summed"] == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [10.0, 20.0]]
        assert result["agree"] == [True, False]  # rank 0's decision, on both ranks
        # rank 0's 3 rows padded to rank 1's 5 by repeating its first ones
        assert result["shard"] == [[0, 1, 2, 0, 1], [10, 11, 12, 13, 14]][rank]
        assert result["total"] == [3.0, 1.0] and result["gather"] == [0, 0, 1]


# -- refusals ------------------------------------------------------------------------------------
def test_the_remaining_models_are_refused_in_one_line_and_the_new_ones_covered():
    assert set(COVERED) >= {"embedding-mlp", "embedding-regressor", "rating-classifier",
                            "dot-bias-sigmoid", "bpr"}
    for name in ("bayesian-mf", "ease", "item-knn", "blend"):
        with pytest.raises(ConfigError, match=f"does not cover model '{name}'; it covers ials, ") as err:
            check_covered(name)
        assert "\n" not in str(err.value) and "dot-bias-sigmoid" in str(err.value)


def test_the_command_refuses_bayesian_mf_before_a_launch(small):
    result = CliRunner().invoke(app, ["train", *data_args(small), "-m", "bayesian-mf",
                                      "--distributed"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --distributed does not cover model "
                                                   "'bayesian-mf'"), result.stderr


# -- two processes against one -------------------------------------------------------------------
def test_two_process_embedding_regressor_with_early_stopping_within_0005_rmse(small):
    # the regressor stops early on the ranks' carve-outs (12 of 30 epochs here), their losses summed
    # so both stop together. Patience 3: on this small set the carve-out's loss bumps up at epoch 4
    # for some seeds, in one process too (seed 3: 0.859, 0.867), and with the default 2 a bump decides
    # the stop (two processes at seeds 0..3: 0.902, 0.886, 0.891, 0.901 against one process's 0.889,
    # 0.887, 0.884, 0.890); with 3, measured 0.8899 against 0.8885 (seed 3: 0.8925 against 0.8900)
    args = ["evaluate", *data_args(small), "-m", "embedding-regressor", "-p", "patience=3"]
    two, one = two_processes(*args)["metrics"], single(*args)["metrics"]
    assert abs(two["rmse"] - one["rmse"]) <= 0.005
    assert two["rmse"] < 0.95  # learned: the ratings' standard deviation is 1.04 here


def test_two_process_dot_bias_sigmoid_within_0005_rmse(small):
    # each rank steps on its users' ratings in half of every batch: other batches than one
    # process's, as another seed's (measured: 1.1546 against 1.1543)
    args = ["evaluate", *data_args(small), "-m", "dot-bias-sigmoid", "-p", "epochs=2"]
    two, one = two_processes(*args)["metrics"], single(*args)["metrics"]
    assert abs(two["rmse"] - one["rmse"]) <= 0.005


def test_two_process_bpr_ranks_as_one_process(small):
    # each rank draws its users' triples (order and negatives from a stream of its own): other
    # batches than one process's, as another seed's (measured 0.1962 against 0.1999); 0.01 NDCG@10
    # is under half of what the seed moves it here (0.186 to 0.209 over seeds 0..2). Drawn in
    # lockstep (the same stream on both ranks) the negatives of the two halves of every batch were
    # the same movies, and the figure fell to 0.184.
    args = ["evaluate", *data_args(small), "-m", "bpr", "-p", "epochs=10"]
    two, one = two_processes(*args)["metrics"], single(*args)["metrics"]
    assert abs(two["ndcg@10"] - one["ndcg@10"]) <= 0.01
    assert two["ndcg@10"] > 0.1


def test_two_process_ranks_hold_their_users_ratings_only_and_rank_0_saves_the_whole_model(small, tmp_path):
    args = ["train", *data_args(small), "-m", "mean-normalized-mf", "-p", "epochs=20"]
    ranks = launch(["--threads", "1", *args, "--distributed", "--json", "-o", str(tmp_path / "m")],
                   record_shards=tmp_path / "shards")
    assert [r.code for r in ranks] == [0, 0], [r.err for r in ranks]
    # rank 0 alone read the data set; each rank trained on the ratings of its block of users
    assert (tmp_path / "shards.0.loaded").exists() and not (tmp_path / "shards.1.loaded").exists()
    sizes = [json.loads((tmp_path / f"shards.{rank}").read_text()) for rank in (0, 1)]
    dataset = load_dataset(str(small / "ratings.parquet"), movies=small / "movies.csv")
    train = make_split(dataset, "random:0.9:42").train
    assert sizes[0]["given"] == len(train) and sizes[1]["given"] is None
    assert sizes[0]["ratings"] + sizes[1]["ratings"] == len(train)
    assert sizes[0]["users"] + sizes[1]["users"] == train.n_users
    assert all(abs(s["ratings"] - len(train) / 2) <= 100 for s in sizes)  # halves, to a user's ratings
    # the artifact knows every user's seen movies, not rank 0's share of them
    model = load_model(tmp_path / "m").model
    assert abs(model.seen_ - train.csr).max() == 0
    # full batch: the two ranks' step is the single-process step, up to float sums
    one = single("evaluate", *data_args(small), "-m", "mean-normalized-mf", "-p", "epochs=20")
    assert json.loads(ranks[0].out)["metrics"]["rmse"] == pytest.approx(one["metrics"]["rmse"], abs=1e-5)


def test_ratings_that_cannot_be_cut_for_every_rank_stop_every_rank_in_one_line(tmp_path):
    folder = tmp_path / "tiny"
    result = CliRunner().invoke(app, ["data", "synth", "--users", "2", "--items", "30",
                                      "--ratings", "40", "--seed", "1", "--out", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    ranks = launch(["train", *data_args(folder), "-m", "biased-mf-sgd", "--split", "none",
                    "--distributed", "-o", str(tmp_path / "m")], world=3)
    assert [r.code for r in ranks] == [2, 2, 2], [r.err for r in ranks]
    for rank in ranks:
        lines = rank.err.strip().splitlines()
        assert len(lines) == 1 and "cannot be cut into 3 shards" in lines[0], rank.err
    assert not (tmp_path / "m").exists()


# Shards that differ in kind, on two gloo processes through `fit_distributed`: rank 0's users rate in
# whole stars and rank 1's in half stars (rank 0 alone lacks half the rating-classifier's levels), and
# rank 1's users rate below 3 only (BPR with min_rating 3 has no interactions there).
SHARDS = """
import json, os, sys, numpy as np, torch, torch.distributed as dist
from movierec.data.dataset import Ratings, Vocabulary
from movierec.distributed.group import join_group, leave_group
from movierec.distributed.run import fit_distributed
from movierec.errors import DataError
from movierec.models.registry import create_model
rank = int(os.environ["RANK"])
group = join_group(60.0, device="cpu")
train = None
if rank == 0:
    rng = np.random.default_rng(0)
    users, items = np.divmod(np.arange(40 * 30), 30)
    keep = rng.random(len(users)) < 0.5
    users, items = users[keep], items[keep]
    whole = rng.integers(1, 6, len(users)).astype(np.float32)
    low = rng.choice([1.0, 1.5, 2.0, 2.5], len(users)).astype(np.float32)
    rating = np.where(users < 20, whole, low)
    train = Ratings(Vocabulary(np.arange(40)), Vocabulary(np.arange(30)), users, items, rating,
                    scale=(0.5, 5.0))
out = {"train_rmse": {}, "whole_rmse": {}}
for name, params in (("rating-classifier", {"epochs": 2}), ("biased-mf-sgd", {"epochs": 2}),
                     ("mean-normalized-mf", {"epochs": 3}), ("embedding-regressor", {"epochs": 2}),
                     ("dot-bias-sigmoid", {"epochs": 2}), ("bpr", {"epochs": 2, "min_rating": 3.0})):
    model = create_model(name, **params)
    try:
        fit_distributed(model, train, group)
    except DataError as exc:
        out[name] = "error: " + str(exc)
        continue
    if rank == 0 and name == "rating-classifier":
        bias = model._state()
        out[name] = {"levels": model.levels_.tolist(), "history": len(model.history_),
                     "finite": bool(all(np.isfinite(v).all() for v in bias.values()))}
    elif rank == 0:
        out[name] = {"history": len(model.history_),
                     "seen": int(model.seen_.nnz) == len(train)}
    # every rank's record of the epochs' training error
    out["train_rmse"][name] = [record["train_rmse"] for record in model.history_]
    if rank == 0 and name in ("rating-classifier", "dot-bias-sigmoid"):
        # the model after its last epoch, over all the training ratings (both shards)
        error = model.predict(train.user_ids, train.item_ids) - train.rating
        out["whole_rmse"][name] = float(np.sqrt(np.mean(error ** 2)))
print(json.dumps(out))
leave_group()
"""


def test_global_figures_come_from_every_shard_and_an_empty_shard_stops_every_rank():
    first, second = two_ranks(SHARDS)
    # the levels of both shards, and rank 0's start is finite (a level it lacks is not log(0))
    classifier = first["rating-classifier"]
    assert classifier["levels"] == [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0]
    assert classifier["finite"] and classifier["history"] == 2
    # rank 0 ends with its history and the whole ratings' seen matrix; the epochs' training error
    # is summed over both shards (the same figure on both ranks, not each rank's own)
    assert first["biased-mf-sgd"] == {"history": 2, "seen": True}
    for name in ("rating-classifier", "biased-mf-sgd", "mean-normalized-mf", "embedding-regressor",
                 "dot-bias-sigmoid"):
        rmses = first["train_rmse"][name]
        assert rmses == second["train_rmse"][name] and 0 < rmses[-1] < 3, name
    # and it is the error over both shards: the last epoch's is the final model's on all of them
    for name, whole in first["whole_rmse"].items():
        assert first["train_rmse"][name][-1] == pytest.approx(whole, rel=1e-5), name
    # rank 1 has no interaction of 3 stars or more: both ranks stop with the same line
    assert first["bpr"] == second["bpr"]
    assert first["bpr"].startswith("error: a shard of the 2 ranks holds no training rows")


def test_two_process_mult_vae_ranks_as_one_process(small):
    # each rank encodes the rows of its own users (its shard holds all their ratings): other
    # batches than one process's, as another seed's (measured 0.1916 against 0.1899; one process
    # at seeds 0..2: 0.190, 0.170, 0.177)
    args = ["evaluate", *data_args(small), "-m", "mult-vae", "-p", "epochs=5"]
    two, one = two_processes(*args)["metrics"], single(*args)["metrics"]
    assert abs(two["ndcg@10"] - one["ndcg@10"]) <= 0.01, (two["ndcg@10"], one["ndcg@10"])
    assert two["ndcg@10"] > 0.05


def test_two_process_svdpp_within_0005_rmse(small):
    # each rank holds all the ratings of its users, so their implicit sums N(u) are whole there;
    # default epochs (20): measured 0.8554 against 0.8569 (after 5 epochs the seed alone spreads
    # one process over 0.873-0.886)
    args = ["evaluate", *data_args(small), "-m", "svdpp"]
    two, one = two_processes(*args)["metrics"], single(*args)["metrics"]
    assert abs(two["rmse"] - one["rmse"]) <= 0.005, (two["rmse"], one["rmse"])


def test_a_data_parallel_rank_that_dies_mid_epoch_fails_the_run_in_one_line_and_writes_nothing(
        small, tmp_path, monkeypatch):
    target = tmp_path / "model"
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    ranks = launch(["train", *data_args(small), "-m", "biased-mf-sgd", "-p", "epochs=5",
                    "--distributed", "--dist-timeout", "20", "--json", "-o", str(target)],
                   die_after={1: "GradientReplicas.reduce_gradients:3"})  # in its first epoch
    assert ranks[1].code == 17
    assert ranks[0].code == 2, ranks[0].err
    lines = ranks[0].err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: training biased-mf-sgd failed on rank 0 of 2: another rank stopped"), ranks[0].err
    assert "no model was written" in lines[0] and ranks[0].out == ""
    # no artifact, no temporary folder or map of ours (torch keeps its compile cache there)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("torchinductor")] == []
