"""Stage helpers shared by the MetaWorld benchmarks: adapter specs, the "stage finished" test, the
adaptation stage and the per-stage timer.

A benchmark is a chain of resumable stages (collect, pretrain, adapt, evaluate); each stage writes
a directory whose ``hralign.json`` marks it finished, so an interrupted run continues where it
stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from hralign.atomic import write_text_atomic
from hralign.errors import HRAlignError

FULL_ROW = "full fine-tune"


def parse_adapter_spec(spec: str) -> tuple[str, str, bool | None]:
    """``method[:placement][+frames][+TERM[=WEIGHT]]...`` -> (method, placement or '', +frames given);
    None in place of the last for a suffix that is neither ``frames`` nor an alignment term
    (`hralign adapt --terms`'s registry) with a valid weight."""
    head, *suffixes = spec.split("+")
    method, _, placement = head.partition(":")
    try:
        adapter_terms(spec)
    except HRAlignError:
        return method, placement, None
    return method, placement, "frames" in suffixes


def adapter_terms(spec: str) -> str:
    """The `hralign adapt --terms` value of a spec's term suffixes: ``lora:middle+frames+mmd=10`` ->
    'mmd=10'; a term without a weight weighs 1. A suffix that is neither ``frames`` nor a term is a
    one-line error."""
    from hralign.align.terms import parse_terms

    _, *suffixes = spec.split("+")
    terms = [s if "=" in s else f"{s}=1" for s in suffixes if s != "frames"]
    if not all(suffixes) or suffixes.count("frames") > 1:
        raise HRAlignError(f"adapter spec {spec!r}: an empty or repeated suffix")
    parse_terms(",".join(terms), flag=f"adapter spec {spec!r}")
    return ",".join(terms)


def adapter_row(spec: str) -> str:
    """Row name of an adapter spec: ``full`` -> 'full fine-tune', ``lora:middle+frames`` -> 'adapted:lora-middle+frames'."""
    method, placement, _ = parse_adapter_spec(spec)
    _, plus, suffix = spec.partition("+")
    row = FULL_ROW if method == "full" else f"adapted:{method}" + (f"-{placement}" if placement else "")
    return row + plus + suffix


def stage_done(directory: Path) -> bool:
    """Whether a pretrain / adapt stage finished: its output directory holds ``hralign.json`` (written last)."""
    return (Path(directory) / "hralign.json").is_file()


def adapt_stage(out: Path, pairs: Path, spec: str, base: str, weights: str | None, image_size: int,
                steps: int, lr: float, frame_weight: float, seed: int, progress: bool) -> Path:
    """Train (or reuse) the adapter ``spec`` on ``pairs`` with HR-Align's loss (plus the spec's
    ``+frames`` and ``+TERM`` objectives); returns its adapter directory.

    The run lives in ``out/adapt/<row slug>``; ``full`` (every weight trained) uses a tenth of ``lr``.
    ``frame_weight`` is the per-frame matching term's weight of a ``+frames`` spec.
    """
    from hralign.align.config import AdaptConfig
    from hralign.align.trainer import run_adapt
    from hralign.pairs.split import split_pairs

    method, placement, frames = parse_adapter_spec(spec)
    run = Path(out) / "adapt" / adapter_row(spec).replace("adapted:", "").replace(" ", "-")
    if not stage_done(run / "adapter"):
        rate = lr / 10 if method == "full" else lr
        # 16 pairs per step as the demo, fewer on a small file (adapt wants a full batch of each split)
        batch = min(16, *(len(ids) for ids in split_pairs(str(pairs))))
        cfg = AdaptConfig(pairs=str(pairs), out=str(run), encoder=base, weights=weights, image_size=image_size,
                          method=method, placement=placement or None, steps=steps, lr=rate,
                          frame_weight=frame_weight if frames else 0.0, terms=adapter_terms(spec),
                          batch_size=batch, seed=seed, eval_every=0, checkpoint_every=max(1, steps // 4),
                          cache_dir=str(Path(out) / "cache"), device="cpu", resume=(run / "run.json").is_file())
        run_adapt(cfg, progress=progress, echo=lambda *_a: None)
    return run / "adapter"


class StageTimer:
    """Wall time of each benchmark stage, written to ``path`` as each stage finishes, so a resumed
    benchmark still reports what the stages it reuses cost when they ran (a stage killed midway is
    timed again from its restart). ``timer(stage, fn, *args)`` runs and times ``fn(*args)``."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = Path(path)
        self.timings: dict[str, float] = (json.loads(self.path.read_text(encoding="utf-8"))
                                          if resume and self.path.is_file() else {})

    def __call__(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        t = time.perf_counter()
        value = fn(*args)
        if stage not in self.timings:
            self.record({stage: time.perf_counter() - t})
        return value

    def record(self, values: dict[str, float]) -> None:
        """Add ``values`` and persist them atomically."""
        self.timings.update(values)
        write_text_atomic(self.path, json.dumps(self.timings, indent=2))


__all__ = ["FULL_ROW", "StageTimer", "adapt_stage", "adapter_row", "adapter_terms", "parse_adapter_spec", "stage_done"]
