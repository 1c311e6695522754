"""Pretraining objectives behind one registry: ``OBJECTIVES[name]`` -> an Objective class.

Each objective is one module holding its config dataclass (whose fields are its command-line
options, prefixed with its name so they never collide) beside its ``nn.Module`` loss, and
registers itself with one :func:`register_objective` call:

* ``r3m`` (:mod:`.r3m`): R3M's time-contrastive + language + L1/L2 loss (the default);
* ``r3m+vicreg`` (:mod:`.vicreg`): R3M plus VICReg's variance/covariance terms against
  dimensional collapse;
* ``mae`` (:mod:`.mae`): masked-autoencoder pretraining of a ViT (VC-1, MVP, D4R);
* ``tcn-infonce`` (:mod:`.infonce`): temporal NT-Xent with every other frame of the batch as a
  negative (TCN / Premier-TACO).

The shared augmentations (random resized crop, colour jitter) are options of every objective
(:class:`hralign.pretrain.PretrainConfig`).
"""

from hralign.pretrain.objectives.base import Objective, ObjectiveContext
from hralign.pretrain.objectives.registry import OBJECTIVES, objective_class, register_objective
from hralign.pretrain.objectives.r3m import R3MConfig, R3MObjective  # noqa: I001  (each import registers one objective)
from hralign.pretrain.objectives.vicreg import R3MVICRegConfig, R3MVICRegObjective
from hralign.pretrain.objectives.mae import MAEConfig, MAEObjective
from hralign.pretrain.objectives.infonce import InfoNCEConfig, InfoNCEObjective

__all__ = ["OBJECTIVES", "InfoNCEConfig", "InfoNCEObjective", "MAEConfig", "MAEObjective", "Objective",
           "ObjectiveContext", "R3MConfig", "R3MObjective", "R3MVICRegConfig", "R3MVICRegObjective",
           "objective_class", "register_objective"]
