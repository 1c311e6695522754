"""`hralign analyze`: latent-action clusters, cross-embodiment metrics and a report."""

from __future__ import annotations

import click

from hralign.analysis.config import AnalyzeConfig
from hralign.analysis.loading import load_models
from hralign.analysis.run import check_output_dir, format_metrics, run_analysis
from hralign.cli.options import dataclass_options


@click.command("analyze")
@dataclass_options(AnalyzeConfig, exclude=("progress",), required=("out",))
def analyze(**kwargs) -> None:
    """Cluster latent actions z_t = f(x_t+k) - f(x_t) of human and robot clips, measure whether
    they mean the same thing across embodiments, and write report/ (report.html, metrics.json,
    latents.h5, PNG figures). With --adapter, frozen and adapted side by side. With --latents,
    analyse a stored latents.h5 (read in chunks; a million latents on 2 cores).

    \b
    Example:
      hralign analyze --pairs demo/pairs.h5 --adapter runs/demo/adapter --out demo/report
      hralign analyze --pairs data.h5 --encoder r3m-resnet50 --weights model.pt \\
                      --k 64 --gap 4 --no-umap --out report/
      hralign analyze --latents big/latents.h5 --k 256 --max-points 50000 --out big_report/
    """
    config = AnalyzeConfig(**kwargs)
    check_output_dir(config.out, config.overwrite)  # before loading models: fail fast
    frozen, adapted, info = load_models(config) if config.pairs else (None, None, {})
    result = run_analysis(config, frozen, adapted, log=click.echo, extra_info=info)
    if not result.is_main:  # another process of a sharded encoder pass: the main one reports
        return
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(format_metrics(result.metrics))
    index = next(iter(result.metrics.values())).get("knn_index")
    if index:
        click.echo(f"kNN index: {index}")
    if result.reused:
        click.echo(f"reused from the previous run: {', '.join(result.reused)}")
    t = result.timings
    click.echo(f"time: {t['total_s']:.1f} s (latents {t['latents_s']:.1f}, sample {t['sample_s']:.1f}, clusters "
               f"{t['cluster_s']:.1f}, map {t['map_s']:.1f}, metrics {t['metrics_s']:.1f}, outputs {t['outputs_s']:.1f})")
    click.echo(f"report: {result.out / 'report.html'}")
