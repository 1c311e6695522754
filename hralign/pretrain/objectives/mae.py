"""Masked-autoencoder pretraining of a ViT encoder (``--objective mae``), as VC-1, MVP and D4R do.

He et al., 2022, "Masked Autoencoders Are Scalable Vision Learners"; facebookresearch/mae
``models_mae.py``: each frame's patches are shuffled by random noise and the first
``1 - mask_ratio`` are kept (``random_masking``, ratio 0.75); the encoder sees only the kept
patches (plus its class token); a light decoder (``decoder_embed`` -> mask tokens put back in
place -> fixed 2-D sin-cos positions -> transformer blocks -> ``decoder_pred``) predicts every
patch's pixels; the loss is the mean squared error on the masked patches only, against pixels
normalised per patch (``norm_pix_loss``). VC-1 (Majumdar et al., 2023), MVP (Radosavovic et al.,
2022) and D4R (Dasari et al., 2023) pretrain their ViTs this way on (egocentric) video frames.

The encoder is the project's ViT (:class:`hralign.encoders.vit.ViTEncoder`: ``d4r-vit-b16`` or
any ``timm:<vit name>``, e.g. ``timm:vit_tiny_patch16_224``); its blocks, class token and learned
position embedding are used as they are, so the encoder saved at the end is the usual artefact
and its feature is still the final-norm class token. Built from timm: the decoder's blocks are
timm's ``vision_transformer.Block`` and its positions ``timm.layers.build_sincos2d_pos_embed``.

ResNets are refused: masking a conv net needs sparse convolutions (SparK, Tian et al., 2023) to
keep masked regions from leaking through the receptive fields, which this module does not do.

Frames are sampled at random from each clip (``mae_frames`` per clip, each masked on its own);
the masking noise is drawn from the trainer's generator with the batch, so a resumed run masks
the same patches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn

from hralign.encoders.base import Encoder
from hralign.encoders.vit import ViTEncoder
from hralign.errors import HRAlignError
from hralign.pretrain.data import PretrainData
from hralign.pretrain.objectives.base import Objective, ObjectiveContext, Tensors, check_finite, seeded
from hralign.pretrain.objectives.registry import register_objective


@dataclass
class MAEConfig:
    """MAE's options (`--objective mae`); the decoder is smaller than MAE's (512-d, 8 blocks) for CPU runs."""

    mae_mask_ratio: float = field(default=0.75, metadata={"help": "mae: share of each frame's patches hidden from the "
                                                                   "encoder (MAE, VC-1: 0.75)."})
    mae_decoder_dim: int = field(default=128, metadata={"help": "mae: width of the decoder (MAE: 512; a multiple of 4 "
                                                                "and of --mae-decoder-heads)."})
    mae_decoder_depth: int = field(default=2, metadata={"help": "mae: transformer blocks of the decoder (MAE: 8)."})
    mae_decoder_heads: int = field(default=4, metadata={"help": "mae: attention heads of the decoder (MAE: 16)."})
    mae_norm_pix: bool = field(default=True, metadata={"help": "mae: predict pixels normalised per patch (MAE's "
                                                                "norm_pix_loss, its better setting)."})
    mae_frames: int = field(default=5, metadata={"help": "mae: frames drawn at random from each clip of the batch "
                                                         "(5: as many images per step as R3M)."})

    def __post_init__(self) -> None:
        if isinstance(self.mae_mask_ratio, bool) or not isinstance(self.mae_mask_ratio, (int, float)) \
                or not 0 < self.mae_mask_ratio < 1:
            raise HRAlignError(f"`--mae-mask-ratio` should be in (0, 1) but the value passed is {self.mae_mask_ratio!r}")
        for name in ("mae_decoder_dim", "mae_decoder_depth", "mae_decoder_heads", "mae_frames"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise HRAlignError(f"`--{name.replace('_', '-')}` should be an integer >= 1 but the value passed is {v!r}")
        if self.mae_decoder_dim % 4 or self.mae_decoder_dim % self.mae_decoder_heads:
            raise HRAlignError(f"`--mae-decoder-dim` should be a multiple of 4 (sin-cos positions) and of "
                               f"--mae-decoder-heads {self.mae_decoder_heads} but the value passed is {self.mae_decoder_dim}")


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, 3, H, W) -> (N, L, patch*patch*3), patches in row-major order (MAE's ``patchify``)."""
    n, c, h, w = images.shape
    gh, gw = h // patch, w // patch
    x = images.reshape(n, c, gh, patch, gw, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, gh * gw, patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: (N, L, patch*patch*3) -> (N, 3, H, W)."""
    n = patches.shape[0]
    gh, gw = grid
    x = patches.reshape(n, gh, gw, patch, patch, 3)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(n, 3, gh * patch, gw * patch)


def random_masking(noise: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's per-sample masking from ``noise`` (N, L): the ``keep`` patches of lowest noise are kept.

    Returns ``ids_keep`` (N, keep), ``mask`` (N, L: 0 kept, 1 removed) and ``ids_restore`` (N, L:
    the permutation that puts [kept, removed] tokens back in patch order).
    """
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    mask = torch.ones_like(noise)
    mask[:, :keep] = 0
    return ids_shuffle[:, :keep], mask.gather(1, ids_restore), ids_restore


def masked_patch_loss(pred: torch.Tensor, images: torch.Tensor, mask: torch.Tensor, patch: int,
                      norm_pix: bool = True) -> torch.Tensor:
    """MAE's loss: mean squared error per patch, averaged over the removed patches only.

    ``pred`` (N, L, p*p*3), ``images`` (N, 3, H, W) (the encoder's normalised input), ``mask``
    (N, L) 1 where removed. ``norm_pix``: the target is each patch's pixels minus their mean over
    their standard deviation (``norm_pix_loss``).
    """
    target = patchify(images, patch)
    if norm_pix:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred.float() - target.float()).pow(2).mean(-1)  # (N, L)
    return (per_patch * mask).sum() / mask.sum()


class MAEDecoder(nn.Module):
    """MAE's light decoder: embed -> put mask tokens back -> sin-cos positions -> blocks -> pixels."""

    def __init__(self, embed_dim: int, num_prefix: int, grid: tuple[int, int], patch: int, config: MAEConfig) -> None:
        super().__init__()
        d = config.mae_decoder_dim
        self.num_prefix = num_prefix
        self.decoder_embed = nn.Linear(embed_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        pos = build_sincos2d_pos_embed(list(grid), d)  # (L, d), fixed as MAE's
        self.register_buffer("decoder_pos", torch.cat([torch.zeros(num_prefix, d), pos])[None], persistent=False)
        self.decoder_blocks = nn.Sequential(*[Block(d, config.mae_decoder_heads, mlp_ratio=4.0, qkv_bias=True)
                                              for _ in range(config.mae_decoder_depth)])
        self.decoder_norm = nn.LayerNorm(d)
        self.decoder_pred = nn.Linear(d, patch * patch * 3)
        # MAE's initialisation: mask token N(0, 0.02), linear layers xavier-uniform with zero bias
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """(N, P + keep, D) encoder tokens -> (N, L, p*p*3) pixel predictions for every patch."""
        p = self.num_prefix
        x = self.decoder_embed(latent)  # (N, P + keep, d)
        n, length = ids_restore.shape
        masked = self.mask_token.expand(n, length - (x.shape[1] - p), -1)
        patches = torch.cat([x[:, p:], masked], 1)  # (N, L, d) in shuffled order
        patches = patches.gather(1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :p], patches], 1) + self.decoder_pos
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x[:, p:])


def _vit_or_refuse(encoder: Encoder):
    if not isinstance(encoder, ViTEncoder):
        raise HRAlignError(f"`--objective mae` needs a ViT encoder (d4r-vit-b16 or timm:<vit name>, e.g. "
                           f"timm:vit_tiny_patch16_224), but --encoder {encoder.name} is not one (masking a "
                           "ResNet needs sparse convolutions, which hralign does not implement)")
    vit = encoder.model
    grid = tuple(int(g) for g in vit.patch_embed.grid_size)
    expected = grid[0] * grid[1] + (0 if vit.no_embed_class else vit.num_prefix_tokens)
    if vit.pos_embed is None or vit.pos_embed.shape[1] != expected:
        raise HRAlignError(f"`--objective mae`: --encoder {encoder.name} has no learned position embedding of its "
                           f"{grid[0]}x{grid[1]} patches, which the masking needs")
    return vit


class MAEObjective(Objective):
    """Masked autoencoding of single frames with the encoder's ViT and a light decoder (``decoder.*``)."""

    config_class = MAEConfig

    def __init__(self, config: MAEConfig, encoder: Encoder, context: ObjectiveContext) -> None:
        super().__init__(config, encoder, context)
        vit = _vit_or_refuse(encoder)
        self.patch = int(vit.patch_embed.patch_size[0])
        self.grid = tuple(int(g) for g in vit.patch_embed.grid_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.keep = int(self.num_patches * (1 - config.mae_mask_ratio))  # as MAE: len_keep = int(L * (1 - ratio))
        if self.keep < 1:
            raise HRAlignError(f"`--mae-mask-ratio` {config.mae_mask_ratio} hides every one of the {self.num_patches} "
                               f"patches of a {context.image_size} px frame; lower it or raise --image-size")
        self.decoder = seeded(context.seed, lambda: MAEDecoder(vit.embed_dim, vit.num_prefix_tokens, self.grid,
                                                               self.patch, config)).to(context.device)

    def sample(self, data: PretrainData, batch_size: int, generator: torch.Generator) -> tuple[Tensors, Tensors]:
        """``mae_frames`` random frames per clip and the masking noise of each (B, F, L)."""
        c, ctx = self.config, self.context

        def positions(length: int, g: torch.Generator) -> list[int]:
            return torch.randint(0, length, (c.mae_frames,), generator=g).tolist()

        frames, _ = data.sample_batch(batch_size, positions, ctx.image_size, generator, ctx.crop_scale, ctx.color_jitter)
        noise = torch.rand(frames.shape[0], c.mae_frames, self.num_patches, generator=generator)
        return {"frames": frames, "noise": noise}, {}

    def encode_visible(self, images: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """The ViT on the kept patches of normalised ``images`` (N, 3, S, S): (N, P + keep, D) tokens
        (timm's ``_pos_embed`` order: class / register tokens first, then the kept patches)."""
        vit = self.encoder.model
        p = vit.num_prefix_tokens
        tokens = vit.patch_embed(images)  # (N, L, D), or (N, h, w, D) for timm's dynamic-size ViTs
        if tokens.ndim == 4:
            tokens = tokens.flatten(1, 2)  # row-major, as patchify (the position embedding was built for this grid)
        n, _, d = tokens.shape
        prefix = [t.expand(n, -1, -1) for t in (vit.cls_token, getattr(vit, "reg_token", None)) if t is not None]
        prefix = torch.cat(prefix, 1) if prefix else tokens[:, :0]
        if vit.no_embed_class:
            tokens = tokens + vit.pos_embed
        else:
            tokens, prefix = tokens + vit.pos_embed[:, p:], prefix + vit.pos_embed[:, :p]
        kept = tokens.gather(1, ids_keep[..., None].expand(-1, -1, d))
        x = vit.norm_pre(vit.pos_drop(torch.cat([prefix, kept], 1)))
        return vit.norm(vit.blocks(x))

    def forward(self, rows: Tensors, shared: Tensors, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        images = self.encoder.preprocess(rows["frames"].flatten(0, 1))  # (b*F, 3, S, S), the encoder's normalisation
        ids_keep, mask, ids_restore = random_masking(rows["noise"].flatten(0, 1), self.keep)
        pred = self.decoder(self.encode_visible(images, ids_keep), ids_restore)  # (b*F, L, p*p*3)
        # a mean over this process's frames: every process has as many, so DDP's average is the global mean
        loss = masked_patch_loss(pred, images, mask, self.patch, self.config.mae_norm_pix)
        return check_finite(loss, step), {"mae_loss": loss.item()}


register_objective("mae", MAEObjective)
