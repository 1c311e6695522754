"""Configuration of ``hralign analyze`` (the CLI options are generated from these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hralign.device import DEVICE_HELP, PRECISION_HELP, DeviceConfig
from hralign.errors import HRAlignError

SPLITS = ("all", "val", "train")


@dataclass
class AnalyzeConfig:
    """What :func:`hralign.analysis.run.run_analysis` does; every field is a CLI option."""

    pairs: str = field(default="", metadata={"help": "Pairs file (HDF5) to analyse."})
    out: str = field(default="", metadata={"help": "Output directory (latents.h5, metrics.json, PNGs, report.html)."})
    encoder: str | None = field(default=None, metadata={"help": "Frozen encoder spec (r3m-resnet18, timm:NAME, a saved dir, lam:DIR); default with --adapter: the adapter's base encoder."})
    weights: str | None = field(default=None, metadata={"help": "Weights file for --encoder (official format)."})
    adapter: str | None = field(default=None, metadata={"help": "Adapter directory (save_adapter layout): adds the adapted view beside the frozen one."})
    image_size: int | None = field(default=None, metadata={"help": "Encoder input size (default: the encoder's)."})
    batch_size: int = field(default=64, metadata={"help": "Frames per encoder batch."})
    gap: int = field(default=2, metadata={"help": "k in z_t = f(x_{t+k}) - f(x_t)."})
    k: int = field(default=16, metadata={"help": "Number of k-means clusters."})
    spherical: bool = field(default=False, metadata={"help": "Cosine k-means (normalised points and centroids)."})
    nredo: int = field(default=1, metadata={"help": "k-means restarts (best objective kept)."})
    niter: int = field(default=25, metadata={"help": "k-means iterations."})
    whiten: bool = field(default=False, metadata={"help": "PCA-whiten latents (99% variance) before clustering and metrics."})
    umap: bool = field(default=True, metadata={"help": "2-D map with UMAP (slow first call: numba compile); --no-umap uses PCA."})
    n_neighbors: int = field(default=15, metadata={"help": "UMAP neighbourhood size (FAISS kNN)."})
    split: str = field(default="all", metadata={"help": "Pairs to analyse: all, val or train (file /split, else a seeded 10% split by pair)."})
    seed: int = field(default=0, metadata={"help": "Seed of k-means, UMAP, sampling."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output directory (its cached latents/clusters/UMAP are reused when inputs match)."})
    knn_k: int = field(default=20, metadata={"help": "Neighbours of the cross-embodiment kNN accuracy."})
    max_points: int = field(default=1500, metadata={"help": "Points in the interactive scatter (a seeded sample)."})
    gallery_clusters: int = field(default=12, metadata={"help": "Clusters shown in each gallery (largest first)."})
    device: str = field(default="auto", metadata={"help": DEVICE_HELP})
    precision: str = field(default="fp32", metadata={"help": PRECISION_HELP})
    trust_checkpoint: bool = field(default=False, metadata={"help": "Allow pickled (non weights_only) checkpoints; only for files you trust."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        for name in ("batch_size", "gap", "k", "nredo", "niter", "n_neighbors", "knn_k", "max_points", "gallery_clusters"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise HRAlignError(f"`--{name.replace('_', '-')}` should be a positive integer but the value passed is {v!r}")
        if self.n_neighbors < 2:
            raise HRAlignError(f"`--n-neighbors` should be at least 2 but the value passed is {self.n_neighbors}")
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 8):
            raise HRAlignError(f"`--image-size` should be an integer >= 8 but the value passed is {self.image_size!r}")
        if self.split not in SPLITS:
            raise HRAlignError(f"`--split` should be one of {', '.join(SPLITS)} but the value passed is {self.split!r}")
        DeviceConfig(self.device, self.precision)  # names checked here; the hardware when the run starts
        if not self.pairs:
            raise HRAlignError("`--pairs` is required: the pairs file to analyse")
        if not self.out:
            raise HRAlignError("`--out` is required: the report directory to write")
        if not self.encoder and not self.adapter:
            raise HRAlignError("give `--encoder SPEC` or `--adapter DIR` (or both)")
