"""Configuration of ``hralign analyze`` (the CLI options are generated from these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hralign.device import DEVICE_HELP, PRECISION_HELP, DeviceConfig
from hralign.config_checks import check_choice, check_int, check_ints
from hralign.errors import HRAlignError
from hralign.pairs.split import DEFAULT_VAL_FRACTION

SPLITS = ("all", "val", "train")


@dataclass
class AnalyzeConfig:
    """What :func:`hralign.analysis.run.run_analysis` does; every field is a CLI option."""

    pairs: str = field(default="", metadata={"help": "Pairs file (HDF5) to analyse (or --latents)."})
    latents: str = field(default="", metadata={"help": "Analyse an existing latents.h5 (from analyze or a labelling job) instead of encoding --pairs; no frame thumbnails or galleries."})
    out: str = field(default="", metadata={"help": "Output directory (latents.h5, metrics.json, PNGs, report.html)."})
    encoder: str | None = field(default=None, metadata={"help": "Frozen encoder spec (r3m-resnet18, timm:NAME, a saved dir, lam:DIR); default with --adapter: the adapter's base encoder."})
    weights: str | None = field(default=None, metadata={"help": "Weights file for --encoder (official format)."})
    adapter: str | None = field(default=None, metadata={"help": "Adapter directory (save_adapter layout): adds the adapted view beside the frozen one."})
    image_size: int | None = field(default=None, metadata={"help": "Encoder input size (default: the encoder's)."})
    batch_size: int = field(default=64, metadata={"help": "Frames per encoder batch."})
    gap: int = field(default=2, metadata={"help": "k in z_t = f(x_{t+k}) - f(x_t)."})
    k: int = field(default=16, metadata={"help": "Number of k-means clusters."})
    spherical: bool = field(default=False, metadata={"help": "Cosine k-means (normalised points and centroids)."})
    nredo: int = field(default=3, metadata={"help": "k-means restarts, each with its own greedy k-means++ init (best objective kept)."})
    niter: int = field(default=20, metadata={"help": "k-means (Lloyd) iterations on the training sample."})
    whiten: bool = field(default=False, metadata={"help": "PCA-whiten latents (99% variance) before clustering and metrics."})
    umap: bool = field(default=True, metadata={"help": "2-D map with UMAP (slow first call: numba compile); --no-umap uses PCA."})
    n_neighbors: int = field(default=15, metadata={"help": "UMAP neighbourhood size (FAISS kNN)."})
    split: str = field(default="all", metadata={"help": "Pairs to analyse: all, val or train (the file's /split, else a seeded split by pair "
                                                                   f"holding out {DEFAULT_VAL_FRACTION:.0%})."})
    seed: int = field(default=0, metadata={"help": "Seed of k-means, UMAP, sampling."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output directory (its cached latents/clusters/UMAP are reused when inputs match)."})
    knn_k: int = field(default=20, metadata={"help": "Neighbours of the cross-embodiment kNN accuracy."})
    max_points: int = field(default=50_000, metadata={"help": "Size of the seeded sample, stratified by embodiment and task, that trains k-means, fits the 2-D map and queries the kNN metrics (every latent is still clustered, mapped and counted)."})
    scatter_points: int = field(default=1500, metadata={"help": "Points in the interactive scatter (a stratified sample; a density layer shows all points)."})
    gallery_clusters: int = field(default=12, metadata={"help": "Clusters shown in each gallery (largest first)."})
    device: str = field(default="auto", metadata={"help": DEVICE_HELP})
    precision: str = field(default="fp32", metadata={"help": PRECISION_HELP})
    trust_checkpoint: bool = field(default=False, metadata={"help": "Allow pickled (non weights_only) checkpoints; only for files you trust."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        check_ints(self, ("batch_size", "gap", "k", "nredo", "niter", "knn_k", "max_points", "scatter_points",
                          "gallery_clusters"), 1, flag=True)
        check_int(self.n_neighbors, "n_neighbors", 2, flag=True)
        if self.image_size is not None:
            check_int(self.image_size, "image_size", 8, flag=True)
        check_choice(self.split, "split", SPLITS, flag=True)
        DeviceConfig(self.device, self.precision)  # names checked here; the hardware when the run starts
        if self.pairs and self.latents:
            raise HRAlignError("give `--pairs FILE` (encode) or `--latents FILE` (already encoded), not both")
        if not self.pairs and not self.latents:
            raise HRAlignError("`--pairs` is required: the pairs file to analyse (or `--latents` for a latents.h5)")
        if not self.out:
            raise HRAlignError("`--out` is required: the report directory to write")
        if self.latents and (self.encoder or self.adapter):
            raise HRAlignError("`--latents` analyses stored latents: `--encoder` / `--adapter` are not used with it")
        if self.latents:
            return
        if not self.encoder and not self.adapter:
            raise HRAlignError("give `--encoder SPEC` or `--adapter DIR` (or both)")
