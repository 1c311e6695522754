"""Latent action models (LAPA's LAQ, Genie's LAM): learn latent actions from video, label both
embodiments with them, and use the IDM as a frame-pair encoder (``lam:DIR``).

Importing this package registers the ``lam:`` encoder prefix (``hralign.encoders`` imports it
by name on the first ``lam:`` lookup, like an entry point, so the import flow stays
encoders <- lam).
"""

from hralign.encoders.registry import ENCODER_PREFIXES, register_encoder_prefix
from hralign.lam.config import LAM_FORMAT_VERSION, LAMConfig
from hralign.lam.encoder import PREFIX, LAMEncoder, find_codebook, latents_to_codes
from hralign.lam.encoder import _factory as _lam_factory
from hralign.lam.io import load_lam, read_lam_meta, save_lam
from hralign.lam.model import LatentActionModel
from hralign.lam.quantizer import VectorQuantizer, perplexity

if PREFIX not in ENCODER_PREFIXES:  # the registry refuses duplicates; this module body runs once per process
    register_encoder_prefix(PREFIX, _lam_factory)

__all__ = ["LAMConfig", "LAMEncoder", "LAM_FORMAT_VERSION", "LatentActionModel", "VectorQuantizer", "find_codebook",
           "latents_to_codes", "load_lam", "perplexity", "read_lam_meta", "save_lam"]
