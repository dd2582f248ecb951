"""Training across processes and machines on torch.distributed (launched by ``torchrun``).

- `join_group` / `leave_group`: this process's place in the launch (gloo on CPUs, NCCL on GPUs).
- `fit_distributed`: fit a covered model (`COVERED`) across the group; rank 0 ends with the model.
- The pieces: `movierec.distributed.shard` (who owns which rows), `movierec.distributed.sharded`
  (rank 0 shares out the training matrix; the evaluation spread over the ranks),
  `movierec.distributed.solvers` (the sharded row exchange of iALS and ALS),
  `movierec.distributed.data_parallel` (the ratings cut by blocks of users, the gradient
  all-reduce).

See docs/distributed.md for launching on one machine or several.
"""

from movierec.distributed.group import (
    DistributedError,
    Group,
    guarded,
    join_group,
    launched,
    leave_group,
    same_everywhere,
)
from movierec.distributed.run import COVERED, check_covered, fit_distributed

__all__ = ["COVERED", "DistributedError", "Group", "check_covered", "fit_distributed", "guarded",
           "join_group", "launched", "leave_group", "same_everywhere"]
