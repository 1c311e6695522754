"""Latent-action analysis: extraction, FAISS clustering, UMAP, cross-embodiment metrics, report.

scikit-learn-style pieces (``fit`` / ``transform`` / ``fit_predict``, learned state in ``*_``)
that ``hralign analyze`` chains; each can be used alone on numpy arrays.
umap-learn is imported only when a UMAP map is actually computed (see ``embed.py``).
"""

from hralign.analysis.cluster import FaissKMeans, knn_search
from hralign.analysis.config import AnalyzeConfig
from hralign.analysis.consistency import consistency_metrics, cross_knn, embodiment_mixing, paired_agreement, silhouette
from hralign.analysis.embed import PCAEmbedding, UMAPEmbedding
from hralign.analysis.latents import LatentSet, LatentWhitener, build_latent_set, feature_differences
from hralign.analysis.run import AnalysisResult, format_metrics, run_analysis
from hralign.analysis.store import View, load_latents, save_latents

__all__ = [
    "AnalysisResult", "AnalyzeConfig", "FaissKMeans", "LatentSet", "LatentWhitener", "PCAEmbedding", "UMAPEmbedding",
    "View", "build_latent_set", "consistency_metrics", "cross_knn", "embodiment_mixing",
    "feature_differences", "format_metrics", "knn_search", "load_latents", "paired_agreement",
    "run_analysis", "save_latents", "silhouette",
]
