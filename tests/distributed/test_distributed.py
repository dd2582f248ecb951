"""Training across processes (torch.distributed, gloo): the shards, the solvers against the single
process, and two-process launches of the `movierec` command (quality, crashes, bad launches).

The launches start each rank as its own process with the variables torchrun sets (see `launch`);
each takes some seconds, most of it importing torch twice.
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from movierec import __version__
from movierec.artifacts import load_model
from movierec.cli import app
from movierec.data.download import load_dataset
from movierec.data.split import make_split
from movierec.data.synth import synthesize
from movierec.distributed import COVERED, check_covered, join_group
from movierec.distributed.data_parallel import cut_ratings
from movierec.distributed.group import Group
from movierec.distributed.shard import all_gather_rows, padded_rows, rating_blocks, shard_bounds
from movierec.distributed.sharded import (
    TrainSummary,
    cut_shards,
    fit_sharded,
    share_training_data,
    write_training_data,
)
from movierec.distributed.solvers import ShardedExchange
from movierec.errors import ConfigError, DataError
from movierec.eval.protocol import evaluate
from movierec.models.core.exchange import LOCAL
from movierec.models.core.interactions import interaction_matrix, session_rows
from movierec.models.ranking.ials import ImplicitALS
from movierec.models.rating.als import BiasedMFALS

from .launch import SRC, data_args, launch, single


def one_error_line(rank_err: str, *fragments: str) -> str:
    lines = rank_err.strip().splitlines()
    assert len(lines) == 1, rank_err
    assert lines[0].startswith("error: ") and "Traceback" not in rank_err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# -- shards ------------------------------------------------------------------------------------
@given(st.integers(0, 1000), st.integers(1, 9))
def test_row_blocks_cover_every_row_once_in_order_and_differ_by_at_most_one(n, world):
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


@given(st.lists(st.integers(0, 40), max_size=60), st.integers(1, 7))
def test_user_blocks_cut_at_the_user_boundary_nearest_each_share_of_the_ratings(counts, world):
    bounds = rating_blocks(np.array(counts, dtype=np.int64), world)
    assert len(bounds) == world + 1 and bounds[0] == 0 and bounds[-1] == len(counts)
    assert (np.diff(bounds) >= 0).all()
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(starts[-1])
    for r in range(1, world):
        target = r * total // world
        if target >= total:
            continue
        holder = int(np.searchsorted(starts, target, side="right")) - 1  # the user holding it
        assert starts[holder] <= target < starts[holder + 1]
        assert abs(int(starts[bounds[r]]) - target) * 2 <= starts[holder + 1] - starts[holder]


def test_user_blocks_and_padding_by_hand():
    # 8 ratings: users 0-1 hold ratings 0..3, users 2-4 ratings 4..7 (rating 4 starts user 2)
    assert rating_blocks(np.array([3, 1, 1, 1, 2]), 2).tolist() == [0, 2, 5]
    # one heavy user: the nearest boundaries to ratings 4 and 8 are 0 and 10 (an empty block)
    assert rating_blocks(np.array([10, 1, 1]), 3).tolist() == [0, 0, 1, 3]
    assert padded_rows(3, 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert padded_rows(4, 4).tolist() == [0, 1, 2, 3]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_rating_shards_hold_every_rating_of_their_users_once_in_file_order(seed, world):
    train = synthesize(40, 30, 500, seed=seed).ratings
    shards = list(cut_ratings(train, world))
    assert len(shards) == world and sum(len(s) for s in shards) == len(train)
    owner = np.full(train.n_users, -1)
    for rank, shard in enumerate(shards):
        assert shard.users == train.users and shard.items == train.items and len(shard) > 0
        users = np.unique(shard.user_index)
        assert (owner[users] == -1).all()  # no user in two shards
        owner[users] = rank
        rows = np.flatnonzero(np.isin(train.user_index, users))  # all their ratings, file order
        for name in ("user_index", "item_index", "rating", "timestamp"):
            assert np.array_equal(getattr(shard, name), getattr(train, name)[rows]), name
    assert (np.diff(owner[owner >= 0]) >= 0).all()  # contiguous blocks, in rank order


def test_ratings_too_few_for_the_ranks_are_refused_in_one_line():
    train = synthesize(3, 5, 12, seed=0).ratings
    with pytest.raises(DataError, match=r"cannot be cut into 9 shards .*; use fewer processes"):
        cut_ratings(train, 9)


def test_each_rank_gets_only_its_blocks_of_the_single_process_matrices(tmp_path):
    train = synthesize(120, 80, 3000, seed=1).ratings
    model = ImplicitALS(alpha=3.0, weighting="centered", min_rating=2.0, session_weight=0.5)
    whole = interaction_matrix(train.csr, model.min_rating, model.weighting)
    sessions = session_rows(train, model.session_gap, model.min_rating, model.weighting)
    whole = sp.vstack([whole, (0.5 * sessions).astype(np.float32)]).tocsr()
    whole.data *= np.float32(3.0)
    assert abs(model.confidence_matrix(train) - whole).max() == 0
    world = 3
    maps, meta = write_training_data(model, train, tmp_path)
    shards = [cut_shards(maps, meta, rank, world) for rank in range(world)]
    assert abs(sp.vstack([s.user_rows for s in shards]) - whole).max() == 0
    assert abs(sp.vstack([s.item_rows for s in shards]).T - whole).max() == 0
    assert abs(sp.vstack([s.seen_rows for s in shards]) - train.csr).max() == 0
    for rank, shard in enumerate(shards):  # each rank's arrays are its blocks' and no more
        rows = shard_bounds(whole.shape[0], rank, world)
        cols = shard_bounds(whole.shape[1], rank, world)
        users = shard_bounds(train.n_users, rank, world)
        assert shard.user_rows.shape == (rows[1] - rows[0], whole.shape[1])
        assert len(shard.user_rows.data) == whole.indptr[rows[1]] - whole.indptr[rows[0]]
        assert len(shard.item_rows.data) == (whole.indices >= cols[0]).sum() - (
            whole.indices >= cols[1]).sum()
        assert len(shard.seen_rows.indices) == train.csr[users[0]:users[1]].nnz
        assert shard.user_rows.nnz + shard.item_rows.nnz < 0.8 * whole.nnz
        assert (shard.n_users, shard.n_items, shard.n_ratings) == (120, 80, len(train))
    # rank 0's whole ratings matrix is a view of the memory maps, not a copy in memory
    for part in ("indptr", "indices", "data"):
        assert isinstance(_base(getattr(maps["seen"], part)), mmap.mmap), part
    assert abs(maps["seen"] - train.csr).max() == 0


def _base(array: Any) -> Any:
    while getattr(array, "base", None) is not None:
        array = array.base
    return array


@pytest.fixture
def group_of_one() -> Iterator[Group]:
    """A real gloo group of one process (the collectives run, trivially)."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield Group(0, 1, 0, "gloo", torch.device("cpu"), 30.0)
    finally:
        dist.destroy_process_group()


def test_all_gather_of_one_block_is_the_block(group_of_one):
    block = torch.arange(12.0).view(4, 3)
    assert torch.equal(all_gather_rows(block, 4, 1), block)


_GATHER_RANK = """
import sys, torch, torch.distributed as dist
from movierec.distributed.shard import all_gather_rows, shard_bounds
rank, world, store = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=world)
for n in (1, 2, 5, 6, 7):
    whole = torch.arange(n * 3, dtype=torch.float32).view(n, 3) + 0.5
    start, stop = shard_bounds(n, rank, world)
    out = torch.full((n, 3), -1.0)
    block = out[start:stop]
    block.copy_(whole[start:stop])  # the rank's solved rows, as the ALS exchange holds them
    got = all_gather_rows(block.clone(), n, world, out=out)
    assert got is out and torch.equal(out, whole), (n, out)
    assert torch.equal(all_gather_rows(whole[start:stop].clone(), n, world), whole), n
    wide = torch.full((n, 5), -1.0)  # an output whose rows are not contiguous: every block buffered
    got = all_gather_rows(whole[start:stop].clone(), n, world, out=wide[:, 1:4])
    assert torch.equal(wide[:, 1:4], whole) and bool((wide[:, [0, 4]] == -1).all()), (n, wide)
dist.destroy_process_group()
"""


@pytest.mark.parametrize("world", [2, 3])
def test_all_gather_of_uneven_blocks_across_processes(tmp_path, world):
    """Blocks one row short (n not a multiple of the ranks) and full ones land in their rows, with
    and without ``out``, on every rank of a real gloo group."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    ranks = [subprocess.Popen([sys.executable, "-c", _GATHER_RANK, str(r), str(world),
                               str(tmp_path / "store")], env=env, stderr=subprocess.PIPE, text=True)
             for r in range(world)]
    errors = [rank.communicate(timeout=120)[1] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0] * world, errors


def _resident_kib(array: np.ndarray) -> int:
    """Resident KiB of the mapping that holds ``array``'s first byte (/proc/self/smaps)."""
    address, inside = array.ctypes.data, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and all(c in "0123456789abcdef-" for c in head[0]):
            low, high = (int(x, 16) for x in head[0].split("-"))
            inside = low <= address < high
        elif inside and head[0] == "Rss:":
            return int(head[1])
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs /proc/self/smaps (Linux)")
def test_rank_zeros_ratings_map_reads_the_same_after_its_pages_are_dropped(group_of_one):
    """Cutting the shards reads the whole ratings map; its pages are then given back (madvise: not
    resident any more), and the map still reads as the ratings matrix (the artifact saves it from
    there)."""
    train = synthesize(120, 80, 2000, seed=4).ratings
    shards, seen = share_training_data(group_of_one, ImplicitALS(epochs=1), train)
    assert isinstance(_base(seen.indices), mmap.mmap)
    assert _resident_kib(seen.indices) == 0 and _resident_kib(seen.data) == 0
    assert abs(seen - train.csr).max() == 0 and seen.nnz == len(train)
    assert _resident_kib(seen.indices) > 0  # read again, from the page cache
    assert abs(shards.seen_rows - train.csr).max() == 0  # one rank: its block is every user


def _one_rank_fit(model, train, group):
    shards, seen = share_training_data(group, model, train)
    return fit_sharded(model, shards, group, summary=TrainSummary.of(train), seen=seen)


def test_the_sharded_exchange_on_one_rank_gives_the_models_own_training(group_of_one):
    train = synthesize(150, 90, 4000, seed=2).ratings
    for fused in (False, True):
        ials = ImplicitALS(factors=8, epochs=3, device="cpu")
        ials._alternate(ials.confidence_matrix(train), ials.confidence_matrix(train).T.tocsr(),
                        train.n_users, LOCAL, None, torch.device("cpu"))
        sharded = ImplicitALS(factors=8, epochs=3, device="cpu")
        sharded._alternate(sharded.confidence_matrix(train),
                           sharded.confidence_matrix(train).T.tocsr(), train.n_users,
                           ShardedExchange(group_of_one), None, torch.device("cpu"))
        if not fused:  # the unfused solve is deterministic: the same factors to the bit
            assert np.array_equal(sharded.user_factors_, ials.user_factors_)
            assert np.array_equal(sharded.item_factors_, ials.item_factors_)
    ials = ImplicitALS(factors=8, epochs=3, device="cpu").fit(train)
    state = _one_rank_fit(ImplicitALS(factors=8, epochs=3), train, group_of_one)
    np.testing.assert_allclose(state.user_factors_, ials.user_factors_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(state.item_factors_, ials.item_factors_, rtol=0, atol=1e-6)
    assert state.users_ is train.users and abs(state.seen_ - train.csr).max() == 0
    als = BiasedMFALS(factors=6, epochs=3, device="cpu").fit(train)
    state = _one_rank_fit(BiasedMFALS(factors=6, epochs=3), train, group_of_one)
    np.testing.assert_allclose(state.user_factors_, als.user_factors_, rtol=0, atol=1e-5)
    np.testing.assert_allclose(state.item_bias_, als.item_bias_, rtol=0, atol=1e-5)
    assert state.global_mean_ == als.global_mean_
    assert [round(h["train_rmse"], 5) for h in state.history_] == [
        round(h["train_rmse"], 5) for h in als.history_]


def test_biased_als_through_the_sharded_exchange_is_the_single_process_fit_to_the_bit(group_of_one):
    train = synthesize(150, 90, 4000, seed=2).ratings
    als = BiasedMFALS(factors=6, epochs=3, device="cpu").fit(train)
    mu = float(train.rating.astype(np.float64).mean())
    residual = torch.as_tensor(train.rating.astype(np.float32) - np.float32(mu))
    sharded = BiasedMFALS(factors=6, epochs=3, device="cpu")
    sharded._alternate((train.user_index, train.item_index, residual),
                       (train.item_index, train.user_index, residual), train.n_users, train.n_items,
                       len(train), mu, ShardedExchange(group_of_one), None, None, torch.device("cpu"))
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        assert np.array_equal(getattr(sharded, name), getattr(als, name)), name
    assert [h["train_rmse"] for h in sharded.history_] == [h["train_rmse"] for h in als.history_]


# -- refusals without a launch -------------------------------------------------------------------
def test_models_not_covered_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="does not cover model 'ease'; it covers ials"):
        check_covered("ease")
    assert set(COVERED) >= {"ials", "biased-mf-als", "mult-vae", "mean-normalized-mf"}


def assert_cli_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    one_error_line(result.stderr, *fragments)
    assert result.stdout == ""


def test_the_command_refuses_an_uncovered_model_and_a_missing_launch(small):
    runner = CliRunner()
    result = runner.invoke(app, ["train", *data_args(small), "-m", "ease", "--distributed"])
    assert_cli_error(result, "does not cover model 'ease'")
    env = {k: None for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    result = runner.invoke(app, ["evaluate", *data_args(small), "-m", "ials", "--distributed"], env=env)
    assert_cli_error(result, "needs a torchrun launch", "MASTER_ADDR")


def test_a_rank_out_of_range_is_refused():
    env = {"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    with pytest.raises(ConfigError, match=r"RANK must be < WORLD_SIZE \(2\), got 2"):
        join_group(5.0, environ=env)


# -- two processes -------------------------------------------------------------------------------
def test_two_process_ials_ranks_as_well_as_one_process(small):
    args = ["evaluate", *data_args(small), "-m", "ials", "-p", "epochs=4", "-p", "factors=16"]
    ranks = launch(["--threads", "1", *args, "--distributed", "--json"])
    assert [r.code for r in ranks] == [0, 0], [r.err for r in ranks]
    assert ranks[1].out == ""  # only rank 0 reports
    two = json.loads(ranks[0].out)["metrics"]
    one = single(*args)["metrics"]
    assert abs(two["ndcg@10"] - one["ndcg@10"]) <= 0.002
    assert two["ndcg@10"] > 0.05  # it learned something: popularity-free ranking of a learnable set


def test_two_process_sharded_training_holds_blocks_and_evaluates_as_one_process(small, tmp_path,
                                                                              monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # where rank 0 writes the shared matrices
    args = ["train", *data_args(small), "-m", "ials", "-p", "epochs=3", "-p", "factors=8"]
    ranks = launch(["--threads", "1", *args, "--distributed", "--json", "-o", str(tmp_path / "m")],
                   record_shards=tmp_path / "shards")
    assert [r.code for r in ranks] == [0, 0], [r.err for r in ranks]
    two = json.loads(ranks[0].out)["metrics"]
    # the metrics of the ranks' blocks put together are the single-process evaluation of the model
    dataset = load_dataset(str(small / "ratings.parquet"), movies=small / "movies.csv")
    split = make_split(dataset, "random:0.9:42")
    one = evaluate(load_model(tmp_path / "m").model, split, k=10, catalog=dataset.catalog).metrics
    assert two.keys() == one.keys()
    for key, value in one.items():
        assert two[key] == pytest.approx(value, abs=1e-12, rel=0), key
    # each rank trained on its blocks only: half the users' rows and half the movies' columns
    sizes = [json.loads((tmp_path / f"shards.{rank}").read_text()) for rank in (0, 1)]
    train = split.train
    assert [s["seen_rows"][0] for s in sizes] == [150, 150]
    assert [s["item_rows"][0] for s in sizes] == [
        b - a for a, b in (shard_bounds(train.n_items, r, 2) for r in (0, 1))]
    assert sum(s["seen_rows"][1] for s in sizes) == len(train)
    assert all(s["seen_rows"][1] < 0.6 * len(train) for s in sizes)
    assert sizes[0]["seen"] == len(train) and sizes[1]["seen"] is None  # rank 0's mapped whole
    # rank 0 alone read the data set
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "shards.0", "shards.0.loaded",
                                                          "shards.1", "tmp"]
    assert list((tmp_path / "tmp").iterdir()) == []  # the files went once mapped


def test_two_process_training_writes_one_artifact_as_good_as_one_process(small, tmp_path):
    args = ["train", *data_args(small), "-m", "mean-normalized-mf", "-p", "epochs=25"]
    ranks = launch(["--threads", "1", *args, "--distributed", "--json", "-o", str(tmp_path / "two")])
    assert [r.code for r in ranks] == [0, 0], [r.err for r in ranks]
    two = json.loads(ranks[0].out)
    one = single(*args, "-o", str(tmp_path / "one"))
    assert abs(two["metrics"]["rmse"] - one["metrics"]["rmse"]) <= 0.005
    artifact = load_model(tmp_path / "two")
    assert artifact.manifest["metrics"]["rmse"] == pytest.approx(two["metrics"]["rmse"])
    assert artifact.model.get_params()["device"] == "auto"  # the launch left the model's settings
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]


def test_two_process_als_matches_one_process(small):
    args = ["evaluate", *data_args(small), "-m", "biased-mf-als", "-p", "epochs=3"]
    ranks = launch(["--threads", "1", *args, "--distributed", "--json"])
    assert [r.code for r in ranks] == [0, 0], [r.err for r in ranks]
    assert json.loads(ranks[0].out)["metrics"]["rmse"] == pytest.approx(
        single(*args)["metrics"]["rmse"], abs=1e-5)


def test_a_rank_that_dies_mid_training_fails_the_run_in_one_line_and_writes_nothing(small, tmp_path,
                                                                                   monkeypatch):
    target = tmp_path / "model"
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    ranks = launch(["train", *data_args(small), "-m", "ials", "-p", "epochs=30", "--distributed",
                    "--dist-timeout", "20", "--json", "-o", str(target)],
                   die_after={1: "all_gather_rows:3"})  # rank 1 vanishes in its second epoch
    assert ranks[1].code == 17
    assert ranks[0].code == 2
    one_error_line(ranks[0].err, "training ials failed on rank 0 of 2", "no model was written")
    assert ranks[0].out == ""
    assert list(tmp_path.iterdir()) == []  # no artifact, no temporary folder


def test_mismatched_world_sizes_stop_in_one_line(small):
    args = ["evaluate", *data_args(small), "-m", "ials", "--distributed", "--dist-timeout", "3"]
    ranks = launch(args, world_of={1: 3})
    assert [r.code for r in ranks] == [2, 2]
    one_error_line(ranks[0].err, "rank 1 was started with WORLD_SIZE 3 and rank 0 with 2")
    one_error_line(ranks[1].err, "rank 0 was started with WORLD_SIZE 2 and rank 1 with 3")


def test_an_unreachable_rendezvous_stops_in_one_line_after_the_timeout(small):
    args = ["evaluate", *data_args(small), "-m", "ials", "--distributed", "--dist-timeout", "3"]
    alone = launch(args, ranks=[1])  # rank 0 never comes: nothing listens at MASTER_PORT
    assert alone[0].code == 2
    one_error_line(alone[0].err, "rendezvous at 127.0.0.1:", "not complete within 3 s as rank 1 of 2")


def test_python_dash_m_movierec_is_the_command():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "movierec", "--version"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, f"movierec {__version__}")
