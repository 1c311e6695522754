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


def test_report_opens_in_headless_chromium(tiny_pairs, tmp_path):
    chromium = chromium_binary()
    if chromium is None:
        pytest.skip("no Chromium binary (/usr/bin/chromium or chromium on PATH); apt-get install chromium")
    out = tmp_path / "report"
    cfg = AnalyzeConfig(pairs=str(tiny_pairs), out=str(out), encoder="pool4", adapter="toy", k=4, umap=False,
                        progress=False)
    run_analysis(cfg, PoolEncoder(), PoolEncoder(), log=lambda s: None)
    report = out / "report.html"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--dump-dom", report.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    # the DOM after the inline script ran: the canvas records how many points it drew
    m = re.search(r'id="scatter"[^>]*data-points-drawn="(\d+)"', r.stdout) or \
        re.search(r'data-points-drawn="(\d+)"[^>]*id="scatter"', r.stdout)
    assert m, "scatter canvas not found in the dumped DOM"
    n_latents = 12 * 2 * (8 - cfg.gap)  # tiny_pairs: 12 pairs, 8 frames per clip, both embodiments
    assert int(m.group(1)) == min(n_latents, cfg.max_points)
    # Chromium logs every console message (log, warn, error, uncaught exceptions) as CONSOLE lines
    # without a level; the report logs exactly one line of its own, anything else is an error.
    console = re.findall(r'CONSOLE[^\]]*\] "(.*?)", source:', r.stderr)
    assert any(c.startswith("hralign report: drew") for c in console), r.stderr[-2000:]
    others = [c for c in console if not c.startswith("hralign report:")]
    assert not others, f"console messages: {others}"
