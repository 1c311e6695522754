"""Temporal contrastive pretraining with many negatives (``--objective tcn-infonce``).

Time-contrastive networks (Sermanet et al., 2018, TCN) pull together frames that are close in
time; Premier-TACO (Zheng et al., 2024) pretrains with a temporal contrastive InfoNCE loss over
in-batch negatives and reports large few-shot gains on MetaWorld. Without actions here (TACO
contrasts a frame and its action sequence with the frame k steps later), the positive of frame t
is frame t + k of the same clip (k uniform in [``infonce_min_offset``, ``infonce_max_offset``]) and
every other frame of the global batch is a negative: 2B - 2 negatives per anchor, against R3M's 3.
The loss is SimCLR's NT-Xent (Chen et al., 2020): cosine similarity / temperature (0.1), both
frames of a pair as anchors, through a projection head (SimCLR's two-layer MLP; the encoder's
features are what is kept). The embeddings of every process are gathered, so the negatives are
the whole global batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hralign.encoders.base import Encoder
from hralign.errors import HRAlignError
from hralign.pretrain.data import PretrainData
from hralign.pretrain.objectives.base import Objective, ObjectiveContext, Tensors, check_finite, seeded
from hralign.pretrain.objectives.registry import register_objective


@dataclass
class InfoNCEConfig:
    """TCN/TACO-style InfoNCE options (`--objective tcn-infonce`)."""

    infonce_temperature: float = field(default=0.1, metadata={"help": "tcn-infonce: logits are cosine similarity / "
                                                                       "this (SimCLR, TACO: 0.1)."})
    infonce_min_offset: int = field(default=1, metadata={"help": "tcn-infonce: smallest frame offset k between a frame "
                                                                 "and its positive."})
    infonce_max_offset: int = field(default=3, metadata={"help": "tcn-infonce: largest frame offset k (clipped to the "
                                                                 "clip's length)."})
    infonce_proj_dim: int = field(default=128, metadata={"help": "tcn-infonce: output width of the projection head "
                                                                 "(SimCLR: 128); 0 = contrast the encoder's features "
                                                                 "directly."})

    def __post_init__(self) -> None:
        if isinstance(self.infonce_temperature, bool) or not isinstance(self.infonce_temperature, (int, float)) \
                or not self.infonce_temperature > 0:
            raise HRAlignError(f"`--infonce-temperature` should be positive but the value passed is {self.infonce_temperature!r}")
        for name, lo in (("infonce_min_offset", 1), ("infonce_max_offset", 1), ("infonce_proj_dim", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise HRAlignError(f"`--{name.replace('_', '-')}` should be an integer >= {lo} but the value passed is {v!r}")
        if self.infonce_max_offset < self.infonce_min_offset:
            raise HRAlignError(f"`--infonce-max-offset` should be >= --infonce-min-offset {self.infonce_min_offset} "
                               f"but the value passed is {self.infonce_max_offset}")


def pair_positions(length: int, min_offset: int, max_offset: int, generator: torch.Generator) -> list[int]:
    """[t, t + k] inside a clip of ``length`` >= 2 frames: k uniform in [min_offset, max_offset]
    (both clipped to length - 1), then t uniform in [0, length - 1 - k]."""
    hi = min(max_offset, length - 1)
    lo = min(min_offset, hi)
    k = int(torch.randint(lo, hi + 1, (1,), generator=generator))
    t = int(torch.randint(0, length - k, (1,), generator=generator))
    return [t, t + k]


def nt_xent(z: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's NT-Xent over positive pairs ``z`` of shape (B, 2, D).

    Each of the 2B rows is an anchor; its positive is the other row of its pair and the 2B - 2
    other rows are negatives; logits are cosine similarity / ``temperature``. Returns (mean loss,
    share of anchors whose most similar other row is their positive).
    """
    if z.ndim != 3 or z.shape[1] != 2 or z.shape[0] < 2:
        raise HRAlignError(f"NT-Xent needs pairs of shape (B >= 2, 2, D), got {list(z.shape)}")
    flat = F.normalize(z.flatten(0, 1).float(), dim=-1)  # (2B, D): pair i at rows 2i, 2i + 1
    logits = flat @ flat.T / temperature
    eye = torch.eye(len(flat), dtype=torch.bool, device=flat.device)
    logits = logits.masked_fill(eye, float("-inf"))  # a row is never its own negative
    target = torch.arange(len(flat), device=flat.device) ^ 1  # the partner: 0<->1, 2<->3, ...
    loss = F.cross_entropy(logits, target)
    accuracy = (logits.argmax(-1) == target).float().mean()
    return loss, accuracy.detach()


class InfoNCEObjective(Objective):
    """Temporal NT-Xent: (frame t, frame t + k) of a clip against every other frame of the batch (``head.*``)."""

    config_class = InfoNCEConfig
    min_batch_size = 2  # negatives come from other clips of the batch
    eval_similarity = "cosine"  # what the loss compares

    def __init__(self, config: InfoNCEConfig, encoder: Encoder, context: ObjectiveContext) -> None:
        super().__init__(config, encoder, context)
        d, p = encoder.feature_dim, config.infonce_proj_dim
        self.head = (seeded(context.seed, lambda: nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, p)))
                     .to(context.device) if p > 0 else None)

    def sample(self, data: PretrainData, batch_size: int, generator: torch.Generator) -> tuple[Tensors, Tensors]:
        """Frames t and t + k of each clip: (B, 2, 3, S, S)."""
        c, ctx = self.config, self.context
        frames, _ = data.sample_batch(
            batch_size, lambda n, g: pair_positions(n, c.infonce_min_offset, c.infonce_max_offset, g),
            ctx.image_size, generator, ctx.crop_scale, ctx.color_jitter)
        return {"frames": frames}, {}

    def forward(self, rows: Tensors, shared: Tensors, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        emb = self.gathered(self.encoder(rows["frames"].flatten(0, 1)))  # (B*2, D): the global batch, in pair order
        z = self.head(emb) if self.head is not None else emb
        loss, acc = nt_xent(z.view(-1, 2, z.shape[-1]), self.config.infonce_temperature)
        return check_finite(loss, step), {"infonce_loss": loss.item(), "infonce_acc": acc.item()}


register_objective("tcn-infonce", InfoNCEObjective)
