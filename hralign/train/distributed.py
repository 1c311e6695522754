"""Losses over the global batch under several processes: rows gathered *with* gradients, masked means.

Accelerate's ``gather`` is for logging (no gradient); contrastive negatives (adapt), R3M's
in-batch negatives (pretrain), global BatchNorm statistics (policy) and codebook statistics (LAM)
need every process's rows inside the graph: ``torch.distributed.nn.functional.all_gather``, whose
backward sums each process's gradient into the rows it owns. Under DDP (which averages over the
W processes) a loss computed on the gathered rows then has the gradient of the one-process loss on
the global batch.

A mean over the *counted* positions of a batch (GR-1's non-padded action steps, valid future
frames) is the other case: each share has its own count, so DDP's average of share means is not
the mean of the global batch. :func:`global_mean` divides each share's sum by the global count.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_gather

Gather = Callable[[torch.Tensor], tuple[torch.Tensor, int]]
# (sum over this share's counted positions, their count) -> this share's term of the loss
MaskedMean = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(every process's rows concatenated in rank order, offset of this process's rows).

    Every process must pass the same shape. Alone (no process group) it returns ``(x, 0)``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    parts = [_ContiguousGrad.apply(p) for p in all_gather(x.contiguous())]
    full = torch.cat(parts, dim=0)
    # The same memory layout as the one-process tensor: CPU kernels (BatchNorm's statistics) choose
    # their reduction order by layout, and a conv on channels-last frames gives a channels-last
    # output. In the layout all_gather returns (contiguous), BatchNorm's output differed from the
    # one-process run by ~1e-6, enough to flip max-pooling's choice in near-tied windows and move
    # whole gradients (pretrain's ResNet stem: 6e-4 relative after one step).
    layout = _memory_format(x)
    return (full if layout is None else full.contiguous(memory_format=layout)), dist.get_rank() * x.shape[0]


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous.

    Written here because torch's ``all_gather`` backward on gloo receives each process's gradient
    into ``empty_like(grad)``: for a channels-last gradient (what BatchNorm's backward gives on
    channels-last input) the collective fills that buffer as if it were contiguous and the rows
    come back scrambled (measured: pretrain's stem gradients off by 120%).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad.contiguous()


def _memory_format(x: torch.Tensor) -> torch.memory_format | None:
    """Channels-last (2D or 3D) when ``x`` is stored so and not also plainly contiguous, else None."""
    if x.is_contiguous():
        return None
    for layout, ndim in ((torch.channels_last, 4), (torch.channels_last_3d, 5)):
        if x.dim() == ndim and x.is_contiguous(memory_format=layout):
            return layout
    return None


def global_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """This process's term of a mean over the counted positions of the global batch.

    ``total`` is the sum of a loss over this process's counted positions (with gradients), ``count``
    their number. Returns ``total * W / (count summed over the W processes)``: DDP averages the
    gradients of the W terms, which gives the gradient of (sum over all positions) / (all counted
    positions), the one-process loss on the global batch; the terms' mean over processes (the
    logged ``loss``) is that loss too. A global count of 0 counts as 1 (the loss is then 0). Alone
    (no process group) it is ``total / count``.
    """
    n = count.detach().float().clone()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return total / n.clamp_min(1.0)
    dist.all_reduce(n)  # one scalar: the count of the global batch
    return total * dist.get_world_size() / n.clamp_min(1.0)


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
