"""Extra alignment objectives of `hralign adapt` (``--terms NAME=WEIGHT,...``), one registry.

HR-Align's clip loss and ``--frame-weight``'s per-frame term are always the trainer's; the terms
here are added beside them, each weighted. One dict instead of one flag per term (and per term
option) keeps `hralign adapt --help` short and lets a new objective be one entry: a function of the
batch's frozen human frame features and adapted robot frame features, both (B, T, D), plus its
options with their defaults (``--term-options`` JSON overrides them).

* ``softdtw``: soft-DTW divergence per pair (temporal: pairs that are not frame-synchronised);
* ``sinkhorn``: debiased Sinkhorn divergence between the batch's frame sets (distribution-level, OT);
* ``mmd``: multi-bandwidth RBF MMD between the batch's frame sets (distribution-level, cheaper).

Under several processes each process's term is computed on its own rows (the distribution terms
then see the local batch only); the gradients are averaged as usual.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from hralign.align.loss import mmd_rbf, sinkhorn_divergence, soft_dtw_divergence
from hralign.errors import HRAlignError


@dataclass(frozen=True)
class AlignTerm:
    """One objective: ``loss(human_frames, adapted_frames, **options)`` -> scalar tensor."""

    loss: Callable[..., Any]
    options: dict[str, Any] = field(default_factory=dict)  # name -> default (type = the default's)


ALIGN_TERMS: dict[str, AlignTerm] = {
    # soft-DTW divergence per pair over its T frames (temporal alignment)
    "softdtw": AlignTerm(soft_dtw_divergence, {"gamma": 0.1}),
    # debiased Sinkhorn divergence between the batch's robot and human frame sets
    "sinkhorn": AlignTerm(sinkhorn_divergence, {"epsilon": 0.05, "iterations": 50}),
    # RBF MMD^2 (bandwidths x median squared distance of the human frames) between the same sets
    "mmd": AlignTerm(mmd_rbf, {"bandwidths": [0.25, 0.5, 1.0, 2.0, 4.0]}),
}


def parse_terms(spec: str, flag: str = "--terms") -> dict[str, float]:
    """``"softdtw=1,mmd=0.5"`` -> {name: weight}; an unknown name, a missing or negative weight or a
    repeated name is a one-line error naming ``flag``."""
    out: dict[str, float] = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, sep, weight = item.partition("=")
        name = name.strip()
        if name not in ALIGN_TERMS:
            raise HRAlignError(f"`{flag}` should name terms among {', '.join(ALIGN_TERMS)} but {name!r} is not one "
                               f"(in {spec!r})")
        try:
            w = float(weight) if sep else float("nan")
        except ValueError:
            w = float("nan")
        if not (w >= 0 and math.isfinite(w)):
            raise HRAlignError(f"`{flag}` should give each term a finite non-negative weight as NAME=WEIGHT but {item!r} "
                               f"does not (in {spec!r})")
        if name in out:
            raise HRAlignError(f"`{flag}` names {name} twice (in {spec!r})")
        out[name] = w
    return out


def parse_term_options(text: str | None, terms: dict[str, float], flag: str = "--term-options") -> dict[str, dict]:
    """Each named term's options: its defaults updated by ``text`` (JSON ``{"softdtw": {"gamma": 0.1}}``).

    Options of a term not in ``terms``, unknown option names and values of the wrong kind are
    one-line errors naming ``flag``; every option is positive (a number, or a non-empty list of them).
    """
    given: Any = {}
    if text:
        try:
            given = json.loads(text)
        except json.JSONDecodeError as e:
            raise HRAlignError(f"`{flag}` should be a JSON object but {text!r} is not JSON ({e})") from e
    if not isinstance(given, dict) or not all(isinstance(v, dict) for v in given.values()):
        raise HRAlignError(f"`{flag}` should be a JSON object of objects ({{\"TERM\": {{\"OPTION\": VALUE}}}}) "
                           f"but the value passed is {text!r}")
    unused = sorted(set(given) - set(terms))
    if unused:
        raise HRAlignError(f"`{flag}` sets options of {', '.join(unused)}, which `--terms` does not name "
                           f"(terms: {', '.join(terms) or 'none'})")
    out = {}
    for name in terms:
        defaults = ALIGN_TERMS[name].options
        opts = dict(defaults)
        for key, value in given.get(name, {}).items():
            if key not in defaults:
                raise HRAlignError(f"`{flag}`: {name} has no option {key!r}; its options are {', '.join(defaults)}")
            want = defaults[key]
            ok = (isinstance(value, list) and all(_number(v) for v in value) if isinstance(want, list)
                  else isinstance(value, int) and not isinstance(value, bool) if isinstance(want, int)
                  else _number(value))
            if not ok:
                kind = "a list of numbers" if isinstance(want, list) else "an integer" if isinstance(want, int) else "a number"
                raise HRAlignError(f"`{flag}`: {name}.{key} should be {kind} but the value passed is {value!r}")
            if not (all(v > 0 for v in value) and value if isinstance(value, list) else value > 0):
                raise HRAlignError(f"`{flag}`: {name}.{key} should be positive but the value passed is {value!r}")
            opts[key] = value
        out[name] = opts
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def term_losses(terms: dict[str, float], options: dict[str, dict], human_frames, adapted_frames) -> dict[str, Any]:
    """{name: unweighted loss} of every term with a positive weight on one batch's frame features."""
    out = {}
    for name, weight in terms.items():
        if weight > 0:
            opts = {k: tuple(v) if isinstance(v, list) else v for k, v in options[name].items()}
            out[name] = ALIGN_TERMS[name].loss(human_frames, adapted_frames, **opts)
    return out


__all__ = ["ALIGN_TERMS", "AlignTerm", "parse_term_options", "parse_terms", "term_losses"]
