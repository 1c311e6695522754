"""report.html in headless Chromium: no console errors, and the scatter draws its points.

Marked ``browser``; skipped (with the reason) where no Chromium binary exists. CI installs
Debian's ``chromium`` before ``make test``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hralign.analysis import AnalyzeConfig, run_analysis

pytestmark = pytest.mark.browser


def chromium_binary() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


class PoolEncoder(torch.nn.Module):
    name = "pool4"
    spec = {"name": "pool4"}

    def forward(self, images):
        x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
        return F.adaptive_avg_pool2d(x, 4).flatten(1)


def open_in_chromium(report: Path, tmp_path: Path):
    """(dumped DOM, stderr) of the report after its inline script ran."""
    chromium = chromium_binary()
    if chromium is None:
        pytest.skip("no Chromium binary (/usr/bin/chromium or chromium on PATH); apt-get install chromium")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--dump-dom", report.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    # Chromium logs every console message (log, warn, error, uncaught exceptions) as CONSOLE lines
    # without a level; the report logs exactly one line of its own, anything else is an error.
    console = re.findall(r'CONSOLE[^\]]*\] "(.*?)", source:', r.stderr)
    assert any(c.startswith("hralign report: drew") for c in console), r.stderr[-2000:]
    others = [c for c in console if not c.startswith("hralign report:")]
    assert not others, f"console messages: {others}"
    return r.stdout


def points_drawn(dom: str) -> int:
    # the DOM after the inline script ran: the canvas records how many points it drew
    m = re.search(r'id="scatter"[^>]*data-points-drawn="(\d+)"', dom) or \
        re.search(r'data-points-drawn="(\d+)"[^>]*id="scatter"', dom)
    assert m, "scatter canvas not found in the dumped DOM"
    return int(m.group(1))


def test_report_opens_in_headless_chromium(tiny_pairs, tmp_path):
    if chromium_binary() is None:
        pytest.skip("no Chromium binary (/usr/bin/chromium or chromium on PATH); apt-get install chromium")
    out = tmp_path / "report"
    cfg = AnalyzeConfig(pairs=str(tiny_pairs), out=str(out), encoder="pool4", adapter="toy", k=4, umap=False,
                        progress=False)
    run_analysis(cfg, PoolEncoder(), PoolEncoder(), log=lambda s: None)
    dom = open_in_chromium(out / "report.html", tmp_path)
    n_latents = 12 * 2 * (8 - cfg.gap)  # tiny_pairs: 12 pairs, 8 frames per clip, both embodiments
    assert points_drawn(dom) == min(n_latents, cfg.scatter_points)
    assert 'data-density-drawn="frozen"' in dom  # the density layer of all points was drawn


def test_latents_report_opens_in_headless_chromium(tmp_path):
    # --latents input: no frames (no sprite), a sample of the points over the density of all of them
    if chromium_binary() is None:
        pytest.skip("no Chromium binary (/usr/bin/chromium or chromium on PATH); apt-get install chromium")
    from hralign.analysis.synth import write_synthetic_latents

    src = write_synthetic_latents(tmp_path / "l.h5", 5000, dim=16, num_clusters=4, num_tasks=3)
    out = tmp_path / "report"
    cfg = AnalyzeConfig(latents=str(src), out=str(out), k=4, umap=False, max_points=1000, scatter_points=400,
                        progress=False)
    run_analysis(cfg, log=lambda s: None)
    dom = open_in_chromium(out / "report.html", tmp_path)
    assert points_drawn(dom) == 400 and 'data-density-drawn="frozen"' in dom
