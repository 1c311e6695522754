"""Configuration of a latent action model (LAM), beside the model it configures.

Defaults follow LAPA's latent action quantisation (Ye et al., 2024, "Latent Action Pretraining from
Videos"): codebook of 8, 4 tokens per step, 256 px images cut into 32 px patches. This module
imports no torch (as LeRobot's ``configuration_*.py``), so the CLI can build options from it cheaply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hralign.config_checks import check_choice, check_int, check_ints, check_number, from_dict
from hralign.errors import HRAlignError

LAM_FORMAT = "lam"
LAM_FORMAT_VERSION = 1

IDM_KINDS = ("transformer", "conv")
QUANTIZERS = ("nsvq", "ste", "none")
TARGETS = ("pixels", "features")
FDM_DECODERS = ("linear", "conv")


@dataclass
class LAMConfig:
    """Architecture of a LAM: inverse dynamics model (IDM), quantiser, forward dynamics model (FDM)."""

    image_size: int = field(default=256, metadata={"help": "Side of the square frames the LAM reads (pixels). "
                                                          "Frames of another size are an error, never resized silently."})
    patch_size: int = field(default=32, metadata={"help": "Side of the square patches (transformer IDM and the FDM)."})
    gap: int = field(default=1, metadata={"help": "H: the LAM explains the change from frame t to frame t+H."})
    codebook_size: int = field(default=8, metadata={"help": "Number of codebook entries (LAPA: 8)."})
    tokens: int = field(default=4, metadata={"help": "Latent action tokens per step (LAPA: 4)."})
    code_dim: int = field(default=32, metadata={"help": "Dimension of each codebook entry / latent token (LAPA: 32)."})
    idm: str = field(default="transformer", metadata={"help": "IDM kind: 'transformer' (spatio-temporal, LAPA/Genie) "
                                                               "or 'conv' (small conv net for small images)."})
    dim: int = field(default=128, metadata={"help": "Width of the transformer blocks (IDM and FDM)."})
    idm_depth: int = field(default=2, metadata={"help": "Spatio-temporal blocks in the transformer IDM."})
    fdm_depth: int = field(default=2, metadata={"help": "Decoder blocks in the FDM."})
    heads: int = field(default=4, metadata={"help": "Attention heads."})
    conv_channels: int = field(default=64, metadata={"help": "Base channel count of the conv IDM."})
    quantizer: str = field(default="nsvq", metadata={"help": "Gradient through the quantiser: 'nsvq' (noise "
                                                              "substitution, LAPA), 'ste' (straight-through, VQ-VAE) "
                                                              "or 'none' (continuous latents: the FDM reads the IDM's "
                                                              "output; the codebook only clusters it for labels)."})
    latent_noise: float = field(default=0.0, metadata={"help": "Std of Gaussian noise added to the continuous latent "
                                                                "while training (quantizer 'none' only; a bottleneck "
                                                                "in place of the codebook)."})
    commitment: float = field(default=0.25, metadata={"help": "Commitment weight beta (only for 'ste')."})
    dead_code_threshold: float = field(default=0.1, metadata={"help": "A code is dead when it gets less than this "
                                                                       "fraction of its uniform share of assignments."})
    fdm_decoder: str = field(default="linear", metadata={"help": "FDM head: 'linear' (one linear map per token back "
                                                                  "to its patch, LAPA) or 'conv' (U-Net-style conv "
                                                                  "upsampler to a per-pixel residual; pixel targets, "
                                                                  "patch a power of 2)."})
    fdm_channels: int = field(default=16, metadata={"help": "Full-resolution channels of the 'conv' FDM decoder "
                                                             "(doubling per level, at most 4x)."})
    edge_weight: float = field(default=0.0, metadata={"help": "Weight of an image-gradient (edge) MSE term added to "
                                                               "the FDM's pixel loss (0: plain MSE)."})
    motion_weight: float = field(default=0.0, metadata={"help": "Weight the pixel loss by the frame difference: "
                                                                 "each value's squared error counts 1 + W * "
                                                                 "|x_{t+H} - x_t| / mean|x_{t+H} - x_t| (0: plain MSE; "
                                                                 "pixel targets)."})
    target: str = field(default="pixels", metadata={"help": "What the FDM rebuilds at t+H: 'pixels' (LAPA) or "
                                                             "'features' of a frozen encoder (UniVLA)."})
    target_encoder: str | None = field(default=None, metadata={"help": "Encoder spec for target='features' "
                                                                        "(anything hralign.encoders.load_encoder takes)."})
    target_image_size: int | None = field(default=None, metadata={"help": "Side the target encoder reads "
                                                                           "(target='features'; default the "
                                                                           "encoder's own, e.g. 224 for R3M)."})
    target_tokens: int | None = field(default=None, metadata={"help": "Number of FDM tokens (set from the target; "
                                                                       "pixels: patches per frame)."})
    target_token_dim: int | None = field(default=None, metadata={"help": "Size of each FDM token (set from the "
                                                                          "target; pixels: 3*patch*patch)."})

    def __post_init__(self) -> None:
        check_ints(self, ("image_size", "patch_size", "gap", "tokens", "code_dim", "dim", "idm_depth", "fdm_depth",
                          "heads", "conv_channels", "fdm_channels"), 1)
        check_int(self.codebook_size, "codebook_size", 2)
        if self.image_size % self.patch_size:
            raise HRAlignError(f"`patch_size` {self.patch_size} should divide `image_size` {self.image_size}")
        if self.dim % self.heads:
            raise HRAlignError(f"`heads` {self.heads} should divide `dim` {self.dim}")
        check_choice(self.idm, "idm", IDM_KINDS)
        if self.idm == "conv" and self.image_size < 16:
            raise HRAlignError(f"`image_size` should be at least 16 for the conv IDM but is {self.image_size}")
        check_choice(self.quantizer, "quantizer", QUANTIZERS)
        check_choice(self.target, "target", TARGETS)
        if self.target == "features" and not self.target_encoder:
            raise HRAlignError("`target_encoder` is required when `target` is 'features' (e.g. --target-encoder r3m-resnet18)")
        if self.target == "pixels" and self.target_encoder:
            raise HRAlignError(f"`target_encoder` {self.target_encoder!r} is only used with target='features'; "
                               "pass --target features or drop it")
        if not 0.0 <= self.dead_code_threshold < 1.0:
            raise HRAlignError(f"`dead_code_threshold` should be in [0, 1) but the value passed is {self.dead_code_threshold}")
        if self.fdm_decoder not in FDM_DECODERS:
            raise HRAlignError(f"`fdm_decoder` should be one of {FDM_DECODERS} but the value passed is {self.fdm_decoder!r}")
        if self.fdm_decoder == "conv":
            if self.target != "pixels":
                raise HRAlignError("`fdm_decoder` 'conv' renders pixels; it needs target='pixels' "
                                   f"(the target passed is {self.target!r})")
            if self.patch_size & (self.patch_size - 1):
                raise HRAlignError(f"`patch_size` should be a power of 2 for fdm_decoder='conv' but is {self.patch_size}")
        if isinstance(self.edge_weight, bool) or not isinstance(self.edge_weight, (int, float)) or self.edge_weight < 0:
            raise HRAlignError(f"`edge_weight` should be a number >= 0 but the value passed is {self.edge_weight!r}")
        if self.edge_weight and self.target != "pixels":
            raise HRAlignError("`edge_weight` applies to pixel targets only; pass 0 with target='features'")
        check_number(self.latent_noise, "latent_noise", 0)
        if self.latent_noise and self.quantizer != "none":
            raise HRAlignError(f"`latent_noise` {self.latent_noise} is for continuous latents; pass quantizer='none' "
                               f"(the quantizer passed is {self.quantizer!r}) or drop it")
        check_number(self.motion_weight, "motion_weight", 0)
        if self.motion_weight and self.target != "pixels":
            raise HRAlignError("`motion_weight` weights the pixel loss; pass 0 with target='features'")
        if self.target_image_size is not None:
            check_int(self.target_image_size, "target_image_size", 16)
            if self.target != "features":
                raise HRAlignError(f"`target_image_size` {self.target_image_size} is only used with target='features'")
        if self.commitment < 0:
            raise HRAlignError(f"`commitment` should be >= 0 but the value passed is {self.commitment}")
        if self.target == "pixels":
            n = (self.image_size // self.patch_size) ** 2
            p = 3 * self.patch_size ** 2
            if self.target_tokens not in (None, n) or self.target_token_dim not in (None, p):
                raise HRAlignError(f"`target_tokens`/`target_token_dim` are {self.target_tokens}/{self.target_token_dim}, "
                                   f"expected {n}/{p} for pixel targets")
            self.target_tokens, self.target_token_dim = n, p

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def latent_dim(self) -> int:
        """Size of the continuous latent action: tokens * code_dim."""
        return self.tokens * self.code_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "LAMConfig":
        """Rebuild from :meth:`to_dict`; unknown keys are an error naming ``source``."""
        return from_dict(cls, data, source)
