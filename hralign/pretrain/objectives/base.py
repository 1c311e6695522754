"""What every pretraining objective supplies to the trainer: its batch and its loss.

An objective is an ``nn.Module`` holding the encoder and the objective's own modules (R3M's
language scorer, MAE's decoder, a projection head), so the training layer checkpoints and
DDP-syncs them together. It draws its global batch from the trainer's one seeded generator
(:meth:`Objective.sample`: an interrupted run resumes bit-identically, and every process draws the
same batch) and returns the loss of that batch from ``forward(rows, shared, step)``, where
``rows`` are this process's share of the per-sample tensors and ``shared`` the tensors every
process needs whole (negative indices, tasks). Under several processes an objective whose loss
needs the whole batch gathers its embeddings with ``context.gather`` (rows with gradients).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, TypeVar

import torch
from torch import nn

from hralign.encoders.base import Encoder
from hralign.errors import HRAlignError
from hralign.pretrain.data import PretrainData
from hralign.train.distributed import Gather

Tensors = dict[str, torch.Tensor]
T = TypeVar("T")


@dataclass
class ObjectiveContext:
    """What the trainer hands an objective besides its config and the encoder."""

    data: PretrainData
    device: torch.device
    seed: int
    image_size: int
    crop_scale: float = 1.0
    color_jitter: float = 0.0
    gather: Gather | None = None


class Objective(nn.Module):
    """Base of the pretraining objectives; subclasses set ``config_class`` and implement
    :meth:`sample` and :meth:`forward`.

    Parameters
    ----------
    config : the objective's config dataclass (``config_class``)
    encoder : Encoder
        The encoder being trained (trainable, on ``context.device``); what is saved at the end.
    context : ObjectiveContext
    """

    config_class: ClassVar[type]
    #: smallest global batch the loss is defined on (in-batch negatives need another clip)
    min_batch_size: ClassVar[int] = 1
    #: similarity of the held-out time-contrastive accuracy for encoders trained with this objective
    eval_similarity: str = "l2"

    def __init__(self, config: Any, encoder: Encoder, context: ObjectiveContext) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise HRAlignError(f"{type(self).__name__}: expected a {self.config_class.__name__}, "
                               f"got {type(config).__name__}")
        self.config, self.encoder = config, encoder
        self.context = context
        self.gather = context.gather
        #: one sentence for the run's notes: whether a language term is on, and why
        self.language = "off (this objective has no language term)"

    def sample(self, data: PretrainData, batch_size: int, generator: torch.Generator) -> tuple[Tensors, Tensors]:
        """The global batch of one step: (per-sample tensors, split over processes; tensors every
        process needs whole). Every random draw comes from ``generator``."""
        raise NotImplementedError

    def forward(self, rows: Tensors, shared: Tensors, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """(loss of the global batch, logs) from this process's ``rows`` and the ``shared`` tensors."""
        raise NotImplementedError

    def gathered(self, x: torch.Tensor) -> torch.Tensor:
        """Every process's rows of ``x`` in sample order, with gradients (``x`` alone without a launcher)."""
        return x if self.gather is None else self.gather(x)[0]


def check_finite(loss: torch.Tensor, step: int, hint: str = "lower --lr") -> torch.Tensor:
    """``loss`` if finite, else the one-line error naming the step (a diverged run stops there)."""
    if not torch.isfinite(loss):
        raise HRAlignError(f"loss became {loss.item()} at step {step + 1}; {hint}")
    return loss


def seeded(seed: int, build: Callable[[], T]) -> T:
    """``build()`` under torch's RNG seeded with ``seed``, leaving the caller's RNG untouched:
    the objective's own modules (scorer, decoder, head) start the same in every run with this seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
