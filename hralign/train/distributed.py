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
from torch import nn
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


def global_batchnorm(model: nn.Module, gather: Gather | None) -> list:
    """Make every BatchNorm of ``model`` normalise training batches with the global batch's statistics.

    What one process does on the whole batch, so several processes train the same weights (R3M's
    BatchNorm MLP of the policies, a ResNet being pretrained or fully fine-tuned). On CUDA this is
    what ``torch.nn.SyncBatchNorm`` does, but SyncBatchNorm refuses CPU tensors; here each BatchNorm
    gets hooks that gather its input from every process with gradients (:func:`gather_with_grad`)
    and keep this process's rows of the output. Running statistics come out the same everywhere.
    Returns the hook handles (``handle.remove()`` undoes it); alone (``gather`` None) nothing is done.
    """
    if gather is None:
        return []
    handles = []
    for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        rows: dict[str, tuple[int, int]] = {}

        def before(module: nn.Module, args: tuple, rows=rows):
            if not module.training:
                return None
            full, offset = gather(args[0])
            rows["span"] = (offset, args[0].shape[0])
            return (full,)

        def after(module: nn.Module, args: tuple, out: torch.Tensor, rows=rows):
            if "span" not in rows:
                return None
            offset, n = rows.pop("span")
            return out[offset:offset + n]

        handles += [bn.register_forward_pre_hook(before), bn.register_forward_hook(after)]
    return handles
