"""R3M plus VICReg's variance and covariance terms on the embeddings (``--objective r3m+vicreg``).

Bardes, Ponce and LeCun, 2022, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning" (facebookresearch/vicreg ``main_vicreg.py``): a hinge that keeps the
standard deviation of every embedding dimension over the batch at or above ``gamma`` (1), and the
sum of squared off-diagonal covariances divided by the dimension, the standard cure for
dimensional collapse. Why here: a corpus-pretrained R3M base can put its per-frame features in
a few directions (a low frame participation ratio), which a BC head with BatchNorm fits slowly;
these terms spread the features without changing what R3M's terms ask. They are applied to the
encoder's features directly (VICReg applies them to an expander's output): the features are what
downstream heads read. VICReg's weights are invariance 25, variance 25, covariance 1; the
defaults keep that ratio against R3M's terms (which play the invariance role at weight ~1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from hralign.errors import HRAlignError
from hralign.pretrain.objectives.base import Tensors, check_finite
from hralign.pretrain.objectives.r3m import R3MConfig, R3MObjective
from hralign.pretrain.objectives.registry import register_objective


def vicreg_terms(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg's variance and covariance terms of embeddings ``z`` of shape (N, D), N >= 2.

    variance = mean over dimensions of relu(gamma - sqrt(var + eps)) (0 once every dimension's
    standard deviation reaches ``gamma``); covariance = sum of the squared off-diagonal entries of
    the covariance matrix / D (0 for decorrelated dimensions). As ``main_vicreg.py``.
    """
    if z.ndim != 2 or len(z) < 2:
        raise HRAlignError(f"VICReg terms need embeddings of shape (N >= 2, D), got {list(z.shape)}")
    z = z.float()
    n, d = z.shape
    centred = z - z.mean(0)
    std = torch.sqrt(centred.var(0) + eps)
    variance = F.relu(gamma - std).mean()
    cov = centred.T @ centred / (n - 1)  # (D, D)
    off = cov - torch.diag(torch.diagonal(cov))
    return variance, off.pow(2).sum() / d


@dataclass
class R3MVICRegConfig(R3MConfig):
    """R3M's options plus VICReg's variance/covariance weights (`--objective r3m+vicreg`)."""

    vicreg_var_weight: float = field(default=1.0, metadata={"help": "r3m+vicreg: weight of VICReg's variance hinge "
                                                                     "(VICReg: 25 against invariance 25, i.e. 1x the "
                                                                     "main term)."})
    vicreg_cov_weight: float = field(default=0.04, metadata={"help": "r3m+vicreg: weight of VICReg's covariance term "
                                                                      "(VICReg: 1 against invariance 25, i.e. 0.04x)."})
    vicreg_gamma: float = field(default=1.0, metadata={"help": "r3m+vicreg: standard deviation each embedding "
                                                                "dimension is held at or above (VICReg: 1)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("vicreg_var_weight", "vicreg_cov_weight"):
            if not getattr(self, name) >= 0:
                raise HRAlignError(f"`--{name.replace('_', '-')}` should be >= 0 but the value passed is {getattr(self, name)}")
        if self.vicreg_var_weight == 0 and self.vicreg_cov_weight == 0:
            raise HRAlignError("`--vicreg-var-weight` and `--vicreg-cov-weight` are both 0: that is --objective r3m")
        if not self.vicreg_gamma > 0:
            raise HRAlignError(f"`--vicreg-gamma` should be positive but the value passed is {self.vicreg_gamma}")


class R3MVICRegObjective(R3MObjective):
    """R3M's loss + VICReg's variance and covariance terms on the batch's embeddings (B*5, D)."""

    config_class = R3MVICRegConfig

    def forward(self, rows: Tensors, shared: Tensors, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        emb = self.embed(rows)  # (B*5, D), the global batch
        loss, record = self.r3m_loss(emb, shared)
        var, cov = vicreg_terms(emb, c.vicreg_gamma)
        loss = loss + c.vicreg_var_weight * var + c.vicreg_cov_weight * cov
        record.update(vicreg_var=var.item(), vicreg_cov=cov.item())
        return check_finite(loss, step, "lower --lr or the VICReg weights"), record


register_objective("r3m+vicreg", R3MVICRegObjective)
