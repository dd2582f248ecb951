"""The process group: joining a `torchrun` launch (or any launch that sets the torch.distributed
environment), checking that every rank runs the same job, and turning failures into one line.

torchrun (or a scheduler) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` in each process's environment; `join_group` reads them (``env://``), picks gloo on
CPUs and NCCL when CUDA is present, and waits at most ``timeout`` seconds for the others.
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from movierec.errors import ConfigError, MovieRecError

__all__ = ["DistributedError", "Group", "guarded", "join_group", "launched", "leave_group",
           "same_everywhere"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(MovieRecError, RuntimeError):
    """The process group failed: a rank died or hung, the rendezvous was not reached in time, or the
    ranks disagree on the job."""


@dataclass(frozen=True)
class Group:
    """This process's place in the launch.

    Attributes:
        rank, world_size, local_rank: as torchrun numbers them.
        backend: ``"gloo"`` or ``"nccl"``.
        device: where this rank computes (``cuda:LOCAL_RANK`` under NCCL, else the CPU).
        timeout: seconds any collective may wait for the other ranks.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    timeout: float

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that evaluates, reports and writes the artifact."""
        return self.rank == 0


def launched(environ: dict[str, str] | None = None) -> bool:
    """Whether this process was started by torchrun (or with the same environment variables)."""
    environ = dict(os.environ) if environ is None else environ
    return all(key in environ for key in _ENV)


def _env_int(environ: dict[str, str], key: str, minimum: int) -> int:
    value = environ.get(key, "")
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return number


def join_group(timeout: float, device: str = "auto", environ: dict[str, str] | None = None) -> Group:
    """Join the launch this process belongs to.

    Args:
        timeout: seconds to wait for every rank at the rendezvous, and at any later collective.
        device: "auto" (NCCL on ``cuda:LOCAL_RANK`` when CUDA is present, else gloo on the CPU),
            "cpu" (gloo) or "cuda" (NCCL).
        environ: the environment to read (default: this process's).

    Raises:
        ConfigError: not launched by torchrun (the variables are missing), or RANK/WORLD_SIZE out of
            range, or CUDA asked for where there is none.
        DistributedError: the rendezvous was not complete within ``timeout`` seconds.
    """
    environ = dict(os.environ) if environ is None else environ
    if not launched(environ):
        missing = [key for key in _ENV if key not in environ]
        raise ConfigError(f"--distributed needs a torchrun launch (missing {', '.join(missing)}); "
                          f"run e.g. torchrun --nproc-per-node 2 -m movierec train ... --distributed")
    if not timeout > 0:
        raise ConfigError(f"--dist-timeout must be > 0 seconds, got {timeout}")
    world = _env_int(environ, "WORLD_SIZE", 1)
    rank = _env_int(environ, "RANK", 0)
    if rank >= world:
        raise ConfigError(f"RANK must be < WORLD_SIZE ({world}), got {rank}: every process of a launch "
                          f"must be started with the same world size")
    local_rank = _env_int(environ, "LOCAL_RANK", 0) if "LOCAL_RANK" in environ else 0
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("device cuda asked for, but CUDA is not available here")
    if use_cuda:
        where = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(where)
    else:
        where = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    address = f"{environ['MASTER_ADDR']}:{environ['MASTER_PORT']}"
    if not dist.is_initialized():
        wait = datetime.timedelta(seconds=float(timeout))
        try:
            # torchrun's agent serves the store itself; a bare launch's rank 0 serves it
            agent = environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
            store = dist.TCPStore(environ["MASTER_ADDR"], _env_int(environ, "MASTER_PORT", 1),
                                  world_size=world, is_master=rank == 0 and not agent, timeout=wait,
                                  wait_for_workers=False)
            _same_world_size(store, rank, world, environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
            dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=wait)
        except MovieRecError:
            raise
        except (RuntimeError, ValueError, OSError) as exc:
            raise DistributedError(
                f"rendezvous at {address} not complete within {timeout:g} s as rank {rank} of {world} "
                f"({_first_line(exc)}); check that MASTER_ADDR:MASTER_PORT is reachable and that every "
                f"process was started with the same world size") from None
    group = Group(rank, world, local_rank, backend, where, float(timeout))
    log.info("joined %s as rank %d of %d (%s, %s)", address, rank, world, backend, where)
    return group


def _same_world_size(store: dist.Store, rank: int, world: int, attempt: str) -> None:
    """Compare world sizes through the store before the group forms (a group of mismatched sizes
    would wait for ranks that never come): rank 0 reads everyone's, the others read rank 0's."""
    prefix = f"movierec/{attempt}/world_size"
    store.set(f"{prefix}/{rank}", str(world))
    for other in range(1, world) if rank == 0 else (0,):
        theirs = int(store.get(f"{prefix}/{other}"))
        if theirs != world:
            raise ConfigError(f"rank {other} was started with WORLD_SIZE {theirs} and rank {rank} with "
                              f"{world}: start every process of a launch with the same world size")


def leave_group() -> None:
    """Leave the process group if this process joined one (safe to call twice)."""
    if dist.is_initialized():
        dist.destroy_process_group()
        # Free the group now, while the interpreter is whole: a gloo group still referenced from a
        # cycle was otherwise freed by the collection at exit, whose stopping of its worker threads
        # now and then aborted the process ("terminate called without an active exception",
        # about 1 exit in 10 after several models' training on two ranks).
        gc.collect()


def _first_line(exc: BaseException) -> str:
    """The gist of a torch.distributed error: its first line without the bracketed source
    locations and addresses gloo puts in (``[/path/pair.cc:537]``)."""
    lines = [re.sub(r"\[[^\]]*\]:?\s*", "", line).strip() for line in str(exc).strip().splitlines()]
    lines = [line for line in lines if line]
    first = re.split(r"(?<=\.)\s", lines[0])[0] if lines else type(exc).__name__
    return first[:200]


def guarded(group: Group, what: str, work: Callable[[], T]) -> T:
    """Run ``work`` (which calls collectives); a failure of the group becomes one `DistributedError`
    line naming ``what`` was running (a rank that died closes its connections, and the others'
    collectives fail; a rank that hangs makes them time out)."""
    try:
        return work()
    except MovieRecError:
        raise
    except (RuntimeError, OSError) as exc:
        if not _is_group_failure(exc):
            raise
        raise DistributedError(
            f"{what} failed on rank {group.rank} of {group.world_size}: another rank stopped or did "
            f"not answer within {group.timeout:g} s ({_first_line(exc)}); no model was written"
        ) from None


def _is_group_failure(exc: BaseException) -> bool:
    names = {type(exc).__name__, *(c.__name__ for c in type(exc).__mro__)}
    if names & {"DistBackendError", "DistNetworkError", "DistStoreError", "DistError"}:
        return True
    text = str(exc).lower()
    return any(word in text for word in ("gloo", "nccl", "connection", "timed out", "timeout",
                                         "peer", "socket"))


def same_everywhere(group: Group, what: str, value: Any) -> None:
    """Check that every rank passes the same ``value`` (e.g. the command it runs).

    Raises:
        DistributedError: naming ``what`` and the ranks that differ from rank 0.
    """
    digest = hashlib.sha256(repr(value).encode()).hexdigest()
    gathered: list[Any] = [None] * group.world_size
    guarded(group, f"checking the {what}", lambda: dist.all_gather_object(gathered, digest))
    differ = [rank for rank, other in enumerate(gathered) if other != gathered[0]]
    if differ:
        raise DistributedError(f"ranks {', '.join(map(str, differ))} run a different {what} than "
                               f"rank 0; start every process with the same command")
