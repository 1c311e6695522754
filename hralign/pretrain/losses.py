"""R3M's three loss terms as pure functions of embeddings.

Nair et al., 2022 (R3M), Sec. 3 and facebookresearch/r3m ``r3m/trainer.py``:

* time-contrastive (TCN): for frames s0 < s1 < s2 of one clip, s1 must be closer to s2 than s0
  is, and s0 closer to s1 than to s2, against negatives from other clips;
* language alignment: a scorer G([e0, e_t, l]) ranks later frames of a clip above earlier ones
  for the clip's instruction l, against shuffled clips;
* L1 and L2 penalties on the embeddings.

R3M writes each InfoNCE term as ``-log(eps + exp(pos) / (eps + exp(pos) + sum exp(neg)))``; we use
``cross_entropy`` on the same logits instead, which is that expression without the epsilons and
does not underflow when -L2 distances are large (exp(-30) < 1e-8 would zero R3M's gradient).

Negatives are given as index tensors (``neg_index[k, i]`` = the clip whose embedding is the k-th
negative of row i) so the functions are deterministic and testable; :func:`negative_indices`
draws them without ever pairing a clip with itself.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

SimilarityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_similarity(kind: str = "l2", temperature: float = 1.0) -> SimilarityFn:
    """Row-wise similarity used as a logit: ``-||a - b||_2 / T`` (R3M's default) or ``cos(a, b) / T``.

    R3M uses the plain (not squared) L2 distance with T = 1, or plain cosine; the temperature
    lets cosine logits span a useful range (T = 0.1 as in most contrastive work).
    """
    if kind == "l2":
        def sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            # sqrt with a floor: the gradient of a norm at exactly 0 is undefined
            return -((a - b).pow(2).sum(-1) + 1e-12).sqrt() / temperature
    elif kind == "cosine":
        def sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return F.cosine_similarity(a, b, dim=-1, eps=1e-8) / temperature
    else:
        raise ValueError(f"unknown similarity {kind!r}; known: l2, cosine")
    return sim


def negative_indices(batch: int, num: int, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Indices of ``num`` negatives per row: int64 [num, batch], never the row itself.

    R3M shuffles the batch with ``randperm``, which sometimes pairs a clip with itself (a
    positive counted as negative, and a zero distance whose norm has no gradient). We take a
    random permutation ``p`` and pair ``p[i]`` with ``p[(i + shift) % B]`` for a random shift in
    1..B-1: still a uniformly shuffled partner, but never itself. Needs ``batch >= 2``.
    """
    if batch < 2:
        raise ValueError(f"negatives from other clips need a batch of at least 2 clips, got {batch}")
    out = torch.empty(num, batch, dtype=torch.int64)
    for k in range(num):
        perm = torch.randperm(batch, generator=generator)
        shift = int(torch.randint(1, batch, (1,), generator=generator))
        out[k, perm] = perm.roll(-shift)
    return out.to(device)


def tcn_loss(es0: torch.Tensor, es1: torch.Tensor, es2: torch.Tensor, neg0: torch.Tensor, neg2: torch.Tensor,
             sim: SimilarityFn) -> tuple[torch.Tensor, torch.Tensor]:
    """R3M's time-contrastive loss and its "aligned" accuracy.

    Parameters
    ----------
    es0, es1, es2 : float tensors of shape (B, D)
        Embeddings of frames s0 < s1 < s2 of B clips.
    neg0, neg2 : int64 tensors of shape (K, B)
        Other-clip negatives for the s0 anchor and the s2 anchor.
    sim : callable
        Row-wise similarity, from :func:`make_similarity`.

    Returns
    -------
    (loss, accuracy): the mean of the two InfoNCE terms; the share of clips where
    sim(s0, s2) < sim(s1, s2) and sim(s0, s1) > sim(s0, s2) (R3M's ``aligned``).
    """
    s02, s12, s01 = sim(es2, es0), sim(es2, es1), sim(es1, es0)  # (B,)
    n2 = torch.stack([sim(es2, es2[idx]) for idx in neg2], -1) if len(neg2) else es2.new_zeros(len(es2), 0)  # (B, K)
    n0 = torch.stack([sim(es0, es0[idx]) for idx in neg0], -1) if len(neg0) else es0.new_zeros(len(es0), 0)
    target = torch.zeros(len(es0), dtype=torch.int64, device=es0.device)
    # term 1: s1 closer to s2 than s0 is (and than other clips' s2)
    loss1 = F.cross_entropy(torch.cat([s12[:, None], s02[:, None], n2], 1), target)
    # term 2: s0 closer to s1 than to s2 (and than other clips' s0)
    loss2 = F.cross_entropy(torch.cat([s01[:, None], s02[:, None], n0], 1), target)
    accuracy = ((s02 < s12) & (s01 > s02)).float().mean()
    return (loss1 + loss2) / 2, accuracy.detach()


class LanguageScorer(nn.Module):
    """R3M's language reward G([e0, e_t, l]) -> scalar score (``models_language.LanguageReward``).

    An MLP with four hidden ReLU layers on the concatenation of the start-frame embedding,
    the current-frame embedding and the (frozen) instruction embedding.
    """

    def __init__(self, embed_dim: int, lang_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.embed_dim, self.lang_dim, self.hidden = int(embed_dim), int(lang_dim), int(hidden)
        layers: list[nn.Module] = []
        width = 2 * self.embed_dim + self.lang_dim
        for _ in range(4):
            layers += [nn.Linear(width, self.hidden), nn.ReLU(inplace=True)]
            width = self.hidden
        layers.append(nn.Linear(width, 1))
        self.pred = nn.Sequential(*layers)

    def forward(self, e0: torch.Tensor, et: torch.Tensor, lang: torch.Tensor) -> torch.Tensor:
        """Scores of shape (B,) for embeddings (B, D), (B, D) and instructions (B, L)."""
        return self.pred(torch.cat([e0, et, lang], -1)).squeeze(-1)


def language_loss(scorer: LanguageScorer, e0: torch.Tensor, eg: torch.Tensor, es0: torch.Tensor, es1: torch.Tensor,
                  es2: torch.Tensor, lang: torch.Tensor, negatives: torch.Tensor,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """R3M's language-alignment loss: later frames must score higher for the clip's instruction.

    Three InfoNCE terms, each against the earlier frame of the same clip and against the same
    frames of ``K`` shuffled clips scored with *this* clip's instruction:
    (e0, eg) vs (e0, e0); (e0, es1) vs (e0, es0); (e0, es2) vs (e0, es1).

    Parameters
    ----------
    e0, eg, es0, es1, es2 : float tensors of shape (B, D)
        Start frame (first alpha of the clip), goal frame (last alpha), and s0 < s1 < s2.
    lang : float tensor of shape (B, L)
        Frozen instruction embeddings.
    negatives : int64 tensor of shape (3, K, B)
        Shuffled-clip indices for each of the three terms.
    mask : float tensor of shape (B,), optional
        1 for clips with an instruction; clips without one (empty string) do not count (as R3M).

    Returns
    -------
    (loss, accuracy): mean loss; share of (clip, term) where the positive beats every negative.
    """
    terms = ((eg, e0), (es1, es0), (es2, es1))
    losses, hits = [], []
    target = torch.zeros(len(e0), dtype=torch.int64, device=e0.device)
    for (pos, earlier), neg in zip(terms, negatives):
        logits = [scorer(e0, pos, lang), scorer(e0, earlier, lang)]
        logits += [scorer(e0[idx], pos[idx], lang) for idx in neg]
        logits_t = torch.stack(logits, -1)  # (B, 2 + K)
        losses.append(F.cross_entropy(logits_t, target, reduction="none"))
        hits.append((logits_t[:, 0] > logits_t[:, 1:].max(-1).values).float())
    loss = torch.stack(losses).mean(0)  # (B,)
    acc = torch.stack(hits).mean(0)
    if mask is None:
        return loss.mean(), acc.mean().detach()
    denom = mask.sum().clamp_min(1.0)
    return (loss * mask).sum() / denom, ((acc * mask).sum() / denom).detach()


def standardize_instructions(table: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Centre instruction embeddings (K, L) on their mean and scale to unit variance per dimension.

    Why: a sentence encoder maps a file's instructions close together ("push the red block to the
    left" vs "... to the right": MiniLM cosine 0.98) and to unit norm (per-dimension size ~0.04,
    twenty times below a ResNet feature's), so the scorer G([e0, e_t, l]) barely sees which
    instruction it is given and the language term cannot carry task information. Standardising
    over the file's distinct instructions keeps exactly what tells them apart, at the scale of the
    image features. Rows with ``mask == 0`` (no instruction) are left out of the statistics and
    set to 0. A single distinct instruction is only rescaled (centring would erase it).
    """
    keep = mask.bool() if mask is not None else torch.ones(len(table), dtype=torch.bool, device=table.device)
    rows = table[keep]
    if len(rows) == 0:
        return table.clone()
    distinct = torch.unique(rows, dim=0)
    if len(distinct) >= 2:
        centred = table - distinct.mean(0)
        scale = distinct.std(0, unbiased=False).mean()  # one scale: keeps the geometry between instructions
    else:
        centred = table
        scale = distinct.pow(2).mean().sqrt()
    out = centred / scale.clamp_min(1e-12)
    return torch.where(keep[:, None], out, torch.zeros_like(out))


def lp_penalties(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean L1 and L2 norms of embeddings (N, D): R3M's sparsity/compactness penalties."""
    return embeddings.abs().sum(-1).mean(), embeddings.pow(2).sum(-1).add(1e-12).sqrt().mean()
