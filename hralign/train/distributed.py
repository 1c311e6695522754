"""Gathering rows from every process *with* gradients, for losses over the global batch.

Accelerate's ``gather`` is for logging (no gradient); contrastive negatives (adapt), R3M's
in-batch negatives (pretrain), global BatchNorm statistics (policy) and codebook statistics (LAM)
need every process's rows inside the graph: ``torch.distributed.nn.functional.all_gather``, whose
backward sums each process's gradient into the rows it owns. Under DDP (which averages over the
W processes) a loss computed on the gathered rows then has the gradient of the one-process loss on
the global batch.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather

Gather = Callable[[torch.Tensor], tuple[torch.Tensor, int]]


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(every process's rows concatenated in rank order, offset of this process's rows).

    Every process must pass the same shape. Alone (no process group) it returns ``(x, 0)``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    parts = all_gather(x.contiguous())
    return torch.cat(parts, dim=0), dist.get_rank() * x.shape[0]
