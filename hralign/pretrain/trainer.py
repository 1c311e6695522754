"""The pretraining trainer: one objective on the clips of a pairs file, resumable and seeded.

What is pretrain's own lives here: the objective (``config.objective``, looked up in
:data:`hralign.pretrain.objectives.OBJECTIVES`: its batch, drawn from one seeded generator whose
state the checkpoint keeps, and its loss), the evaluation and the output files; devices,
processes, the run directory, checkpoints, metrics and resume are the training layer's
(:mod:`hralign.train`, docs/training.md). Under several processes every process draws the same
global batch and encodes its share; objectives whose loss needs the whole batch (R3M's and
InfoNCE's negatives) gather the embeddings of all processes, so the weights are those of one
process on the same batch.

Output directory (``config.out``)::

    hralign.json, model.safetensors   the trained encoder (hralign.load_encoder(out) -> frozen);
                                      hralign.json also records {"pretraining": {"objective": ...}}
    model.pt                          R3M layout {"r3m": {"module.convnet.*"}} (ResNet encoders)
    run.json, metrics.jsonl, checkpoints/   the training layer's run files (run.json: every option)
    summary.json                      final figures: trained vs initial encoder, the objective

Resuming restores the weights, the optimiser, the sampling generator and the step, so an
interrupted run ends with the same weights as an uninterrupted one (tests/test_pretrain_run.py).
A run.json written before objectives existed has no ``objective``: it resumes as ``r3m``.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from hralign.atomic import write_text_atomic
from hralign.encoders import load_encoder, save_encoder
from hralign.encoders.api import META_FILE, RandomInitWarning
from hralign.encoders.r3m import write_r3m_checkpoint
from hralign.errors import HRAlignError
from hralign.pretrain.config import LEGACY_FIELDS, PretrainConfig
from hralign.pretrain.data import PretrainData
from hralign.pretrain.evaluate import evaluate
from hralign.pretrain.objectives import ObjectiveContext, objective_class
from hralign.train import Phase, open_session
from hralign.train.rundir import RUN_FILE, read_run


@dataclass
class PretrainResult:
    """What a finished run reports (also written to ``summary.json``)."""

    out: Path
    steps: int
    initial: dict[str, float]
    final: dict[str, float]
    language: str
    r3m_checkpoint: Path | None
    objective: str = "r3m"
    num_tasks: int = 0
    resumed_from: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"out": str(self.out), "steps": self.steps, "initial": self.initial, "final": self.final,
                "language": self.language, "r3m_checkpoint": str(self.r3m_checkpoint) if self.r3m_checkpoint else None,
                "objective": self.objective,
                "num_tasks": self.num_tasks, "resumed_from": self.resumed_from, "notes": self.notes}


def _write_final(out: Path, encoder, objective: str) -> Path | None:
    """Write the encoder (save_encoder layout, plus the objective in hralign.json) and, for ResNets,
    R3M's model.pt into ``out``."""
    tmp = out / ".encoder.tmp"
    save_encoder(encoder, tmp)  # atomic_dir: replaces tmp as a whole, so write beside and move in
    meta = json.loads((tmp / META_FILE).read_text(encoding="utf-8"))
    meta["pretraining"] = {"objective": objective, "run": RUN_FILE}  # what trained it; read_meta ignores it
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    for name in ("model.safetensors", META_FILE):  # weights first: hralign.json names their sha256
        os.replace(tmp / name, out / name)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_r3m_checkpoint(encoder, out / "model.pt")
    except HRAlignError:
        return None  # not a torchvision ResNet (ViT, timm): R3M's layout does not apply
    return out / "model.pt"


def run_record(config: PretrainConfig) -> dict[str, Any]:
    """The config that run.json records and ``--resume`` compares: ``config.to_dict()``, except that
    resuming a run whose run.json predates a field of :data:`LEGACY_FIELDS` leaves that field out
    when it has the value such runs had (an old R3M run resumes; asking it for another objective
    is refused as any other change)."""
    record = config.to_dict()
    if config.resume and (Path(config.out) / RUN_FILE).is_file():
        saved = read_run(config.out)["config"]
        for key, old in LEGACY_FIELDS.items():
            if key not in saved and record.get(key) == old:
                record.pop(key)
    return record


def pretrain(config: PretrainConfig, progress: bool = True, log: Callable[[str], None] | None = None,
             on_step: Callable[[int, dict], None] | None = None) -> PretrainResult | None:
    """Train ``config.encoder`` on the clips of ``config.pairs`` with ``config.objective``.

    Parameters
    ----------
    config : PretrainConfig
        Every option of the run (see ``hralign pretrain --help``).
    progress : bool
        Show a tqdm progress bar.
    log : callable, optional
        Receives one-line notes (objective, language term on/off, resume point); default: tqdm.write.
    on_step : callable, optional
        Called as ``on_step(step, metrics)`` after every optimiser step (tests use it to
        interrupt a run; monitoring hooks can use it too).

    Returns
    -------
    PretrainResult with the initial (random-init or --weights) and final figures; None on the
    processes other than the main one under a launcher.
    """
    say = log or tqdm.write
    session = open_session(config, config.out, "pretrain", run_record(config))
    device = session.device
    data = PretrainData(config.pairs, config.domain, config.val_fraction, config.seed)
    objective_cls = objective_class(config.objective)
    if config.batch_size < objective_cls.min_batch_size:
        raise HRAlignError(f"`--batch-size` should be at least {objective_cls.min_batch_size} for --objective "
                           f"{config.objective} (its negatives come from other clips of the batch) but the value "
                           f"passed is {config.batch_size}")

    with warnings.catch_warnings():
        # pretraining from scratch is the point here: the random-init warning is expected
        warnings.simplefilter("ignore", RandomInitWarning)
        encoder = load_encoder(config.encoder, weights=config.weights, image_size=config.image_size,
                               trust_checkpoint=config.trust_checkpoint)
    encoder.set_trainable(True)
    encoder.to(device).train()
    context = ObjectiveContext(data=data, device=device, seed=config.seed, image_size=int(encoder.image_size),
                               crop_scale=config.crop_scale, color_jitter=config.color_jitter, gather=session.gather)
    objective = objective_cls(config.objective_config, encoder, context)  # refuses an encoder it cannot train
    lang_note = objective.language
    generator = torch.Generator().manual_seed(config.seed)
    eval_kwargs = dict(similarity=objective.eval_similarity, frames=config.eval_frames, k=config.knn_k)

    session.begin({"objective": config.objective, "language": lang_note})
    say(f"objective: {config.objective}; language term: {lang_note}")
    state = {"initial": {}}
    if session.checkpoint is not None:
        say(f"resuming from step {session.resumed_from} of {config.steps} ({session.checkpoint.path})")
    else:
        state["initial"] = evaluate(encoder, data, **eval_kwargs) if session.is_main else {}
        session.log({"step": 0, "eval": state["initial"]})

    def forward(model: nn.Module, step: int):
        # the global batch, drawn by every process from the same generator; each encodes its share
        rows, shared = objective.sample(data, config.batch_size, generator)
        rows = {k: session.local_rows(v).to(device) for k, v in rows.items()}
        shared = {k: v.to(device) for k, v in shared.items()}
        loss, record = model(rows, shared, step)
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
        r3m_path = _write_final(out, encoder, config.objective)
        final = evaluate(load_encoder(out), data, **eval_kwargs)  # evaluate exactly what was saved, frozen
        session.log({"step": config.steps, "eval": final})
        notes = [] if r3m_path else [f"no R3M model.pt: {config.encoder} is not a torchvision ResNet"]
        result = PretrainResult(out=out, steps=config.steps, initial=state["initial"], final=final, language=lang_note,
                                r3m_checkpoint=r3m_path, objective=config.objective, num_tasks=len(data.instructions),
                                resumed_from=session.resumed_from, notes=notes)
        write_text_atomic(out / "summary.json", json.dumps(result.to_dict(), indent=2))
    session.finish()
    return result
