"""Start the `movierec` command as the ranks of a torch.distributed launch, the way torchrun sets them
up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), without torchrun's own agent, so a test
sees each rank's exit code and stderr.

``die_after``: rank -> "NAME:n" makes that rank's process exit abruptly (os._exit, as a killed process)
at its n-th call of the named solver function (or ``Class.method`` of
`movierec.distributed.data_parallel`), i.e. in the middle of training. ``record_shards``: a path;
every rank writes the sizes of the shards it trains on to PATH.RANK (JSON), and a rank that loads
the data set touches PATH.RANK.loaded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from movierec.cli import app

SRC = Path(__file__).resolve().parents[2] / "src"

# The command as `python -m movierec` runs it, with an optional injected crash.
BOOT = """
import os, sys
die = os.environ.get("TEST_DIE_AFTER")
if die:
    import movierec.distributed.data_parallel as data_parallel
    import movierec.distributed.solvers as solvers
    name, count = die.split(":")
    owner = solvers
    if "." in name:  # a method of a data_parallel class, e.g. GradientReplicas.reduce_gradients
        klass, name = name.split(".")
        owner = getattr(data_parallel, klass)
    original, calls = getattr(owner, name), [0]
    def dying(*args, **kwargs):
        calls[0] += 1
        if calls[0] >= int(count):
            os._exit(17)
        return original(*args, **kwargs)
    setattr(owner, name, dying)
record = os.environ.get("TEST_RECORD_SHARDS")
if record:  # write the sizes of the arrays this rank trains on
    import json
    import movierec.distributed.sharded as sharded
    fit = sharded.fit_sharded
    def recording(model, shards, group, **kwargs):
        sizes = {name: [int(getattr(shards, name).shape[0]), int(getattr(shards, name).nnz)]
                 for name in ("user_rows", "item_rows", "seen_rows")}
        sizes["seen"] = None if kwargs.get("seen") is None else int(kwargs["seen"].nnz)
        with open(f"{record}.{group.rank}", "w") as out:
            json.dump(sizes, out)
        return fit(model, shards, group, **kwargs)
    sharded.fit_sharded = recording
    import movierec.distributed.data_parallel as data_parallel
    share = data_parallel.share_ratings
    def sharing(group, train):  # a data-parallel rank's shard of the ratings
        shard = share(group, train)
        with open(f"{record}.{group.rank}", "w") as out:
            json.dump({"ratings": len(shard), "users": int((shard.user_counts > 0).sum()),
                       "given": None if train is None else len(train)}, out)
        return shard
    data_parallel.share_ratings = sharing
    import movierec.cli as cli
    load = cli._load
    def loading(*args, **kwargs):  # which ranks read the data set
        open(f"{record}.{os.environ['RANK']}.loaded", "w").close()
        return load(*args, **kwargs)
    cli._load = loading
from movierec.cli import main
sys.argv = ["movierec", *sys.argv[1:]]
main()
"""


@dataclass
class Rank:
    code: int
    out: str
    err: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(args: list[str], world: int = 2, *, ranks: list[int] | None = None,
           world_of: dict[int, int] | None = None, die_after: dict[int, str] | None = None,
           port: int | None = None, timeout: float = 120, record_shards: Path | None = None
           ) -> list[Rank]:
    """Run ``movierec ARGS`` as ranks ``ranks`` (default all) of a ``world``-process launch."""
    port = port or free_port()
    procs = []
    for rank in ranks if ranks is not None else range(world):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str((world_of or {}).get(rank, world)), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        env.pop("TEST_DIE_AFTER", None)
        env.pop("TEST_RECORD_SHARDS", None)
        if record_shards is not None:
            env["TEST_RECORD_SHARDS"] = str(record_shards)
        if die_after and rank in die_after:
            env["TEST_DIE_AFTER"] = die_after[rank]
        procs.append(subprocess.Popen([sys.executable, "-c", BOOT, "--threads", "1", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append(Rank(proc.returncode, out, err))
    return results


def data_args(folder: Path) -> list[str]:
    """The data arguments of a command on the synthetic set in ``folder``."""
    return [str(folder / "ratings.parquet"), "--movies", str(folder / "movies.csv")]


def single(*args: str) -> dict[str, Any]:
    """The command's JSON answer, run as one process in this one."""
    result = CliRunner().invoke(app, ["--threads", "1", *args, "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)
