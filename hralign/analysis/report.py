"""report.html: one self-contained file (figures and thumbnails embedded as base64, inline JS,
no network) with the metrics table, the PNG figures and an interactive scatter whose hover shows
the frame pair x_t -> x_{t+gap} of the latent under the cursor.

At a million latents the file stays small: the scatter draws a stratified sample of points over
a density layer of *all* points (a 2-D histogram of the map, 8-bit, log-scaled, base64 in the
JSON: ~30 kB a view whatever the number of latents), drawn synchronously with putImageData.

The scatter is a <canvas> drawn by ~100 lines of inline JavaScript (no plotting library: the
report must open offline and stay one file). After drawing, the script writes the number of
drawn points to the canvas' ``data-points-drawn`` attribute (the browser test reads it).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from hralign.analysis.sample import stratified_sample
from hralign.analysis.store import View
from hralign.atomic import write_text_atomic

# metric key -> (label, what it means)
METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("embodiment_mixing", "Embodiment mixing", "mean over clusters of the normalised entropy of the human/robot share (1 = mixed, 0 = split)"),
    ("knn_cross", "Cross-embodiment kNN task acc.", "mean of robot\u2192human and human\u2192robot weighted kNN (k=20) task accuracy"),
    ("knn_robot_to_human", "kNN robot \u2192 human", "robot latents classified by their human neighbours"),
    ("knn_robot_to_human_recall", "  recall@k of that search", "approximate vs exact neighbours (1 = exact index)"),
    ("knn_human_to_robot", "kNN human \u2192 robot", "human latents classified by their robot neighbours"),
    ("knn_human_to_robot_recall", "  recall@k of that search", "approximate vs exact neighbours (1 = exact index)"),
    ("retrieval_robot_to_human", "Paired retrieval robot \u2192 human", "share of paired robot latents whose frame-aligned human partner is among their k human neighbours (search and recall as kNN robot \u2192 human)"),
    ("paired_agreement", "Paired agreement", "share of frame-aligned human/robot latents (same pair, same t) in the same cluster"),
    ("nmi_pooled", "NMI clusters vs tasks (pooled)", "normalised mutual information, both embodiments"),
    ("nmi_human", "NMI (human)", ""),
    ("nmi_robot", "NMI (robot)", ""),
    ("ari_pooled", "ARI clusters vs tasks (pooled)", "adjusted Rand index"),
    ("ari_human", "ARI (human)", ""),
    ("ari_robot", "ARI (robot)", ""),
    ("paired_code_agreement", "Paired code agreement (LAM)", "share of frame-aligned human/robot latents with the same discrete code"),
    ("num_codes_used", "# distinct codes (LAM)", ""),
    ("lam_knn_task_human_to_robot", "LAM kNN task h \u2192 r, disjoint episodes", "human latents vote on robot latents of the other half of the episodes (hralign.lam.measures, k=10; no frame-aligned partner can be found)"),
    ("lam_knn_task_human_to_robot_shuffled", "  same, reference labels shuffled", "the chance it beats"),
    ("lam_knn_phase_human_to_robot", "LAM kNN motion phase h \u2192 r", "phase = which of 4 time bins of its clip a latent falls in"),
    ("lam_knn_phase_human_to_robot_shuffled", "  same, reference labels shuffled", ""),
    ("lam_knn_task_robot_to_human", "LAM kNN task r \u2192 h, disjoint episodes", ""),
    ("lam_knn_phase_robot_to_human", "LAM kNN motion phase r \u2192 h", ""),
    ("lam_code_nmi_actions", "LAM code NMI vs robot actions", "codes (token tuple) vs actions cut into 3 equal-frequency bins per column"),
    ("lam_code_nmi_actions_shuffled", "  same, codes shuffled", "the bias of many codes"),
    ("action_probe_r2", "Action probe R\u00b2 \u2192 robot actions", "ridge probe, 5-fold cross-validated by robot clip"),
    ("silhouette", "Silhouette (sample)", "cluster separation in latent space"),
    ("num_human", "# human latents", ""),
    ("num_robot", "# robot latents", ""),
    ("num_clusters_used", "# non-empty clusters", ""),
    ("num_sampled", "# latents in the sample", "stratified by embodiment and task (--max-points): k-means training, map fit, kNN queries"),
)


LAM_ONLY = ("paired_code_agreement", "num_codes_used", "lam_knn_task_human_to_robot", "lam_knn_task_human_to_robot_shuffled",
            "lam_knn_phase_human_to_robot", "lam_knn_phase_human_to_robot_shuffled", "lam_knn_task_robot_to_human",
            "lam_knn_phase_robot_to_human", "lam_code_nmi_actions", "lam_code_nmi_actions_shuffled")


def _fmt(v) -> str:
    if v is None:
        return "\u2013"
    if isinstance(v, float) and v.is_integer() and abs(v) >= 1:
        return str(int(v))
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def _b64_png(path: str | os.PathLike) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def build_sprite(frames: list[np.ndarray], thumb: int = 40, cols: int = 32) -> tuple[str, int, int]:
    """Tile thumbnails into one JPEG data URL; returns (url, thumb, cols)."""
    cols = max(1, min(cols, len(frames)))
    rows = max(1, -(-len(frames) // cols))
    sheet = np.zeros((rows * thumb, cols * thumb, 3), np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        sheet[r * thumb:(r + 1) * thumb, c * thumb:(c + 1) * thumb] = np.asarray(
            Image.fromarray(f).resize((thumb, thumb), Image.BILINEAR))
    buf = io.BytesIO()
    Image.fromarray(sheet).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), thumb, cols


DENSITY_BINS = (180, 124)  # (x, y) bins of the density layer: one per 5x5 canvas pixels


def density_layer(xy: np.ndarray, bins: tuple[int, int] = DENSITY_BINS) -> dict:
    """2-D histogram of normalised map coordinates in [0, 1]^2 (all points), log-scaled to 0..255,
    row 0 at the top, as base64 bytes: {"w", "h", "data"}."""
    h, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=bins, range=[[0, 1], [0, 1]])
    v = np.log1p(h.T[::-1])  # (h, w), top row = largest y
    v = np.round(255 * v / max(float(v.max()), 1e-12)).astype(np.uint8)
    return {"w": int(bins[0]), "h": int(bins[1]), "data": base64.b64encode(v.tobytes()).decode()}


def scatter_payload(views: dict[str, View], tasks: list[str], read_frame: Callable[[int, int, int], np.ndarray] | None,
                    max_points: int = 1500, seed: int = 0, thumb: int = 40) -> dict:
    """The JSON the inline scatter draws: a stratified sample of points (same for every view), a
    density layer of all points per view, and a thumbnail sprite (none when ``read_frame`` is None)."""
    first = next(iter(views.values())).latents
    idx = stratified_sample(first.domain, first.task, max_points, seed)
    frame_ids: dict[tuple[int, int, int], int] = {}
    frames: list[np.ndarray] = []

    def sprite_index(d: int, c: int, t: int) -> int:
        if read_frame is None:
            return -1
        key = (d, c, t)
        if key not in frame_ids:
            frame_ids[key] = len(frames)
            frames.append(read_frame(d, c, t))
        return frame_ids[key]

    pts = []
    for i in idx:
        d, c, t = int(first.domain[i]), int(first.clip[i]), int(first.t[i])
        pts.append([d, int(first.task[i]), c, t, sprite_index(d, c, t), sprite_index(d, c, t + first.gap)])
    sprite, th, cols = build_sprite(frames, thumb=thumb) if frames else ("", thumb, 1)
    vdata = {}
    for name, v in views.items():
        xy_all = v.map2d.astype(np.float64)
        lo, hi = xy_all.min(0), xy_all.max(0)  # bounds of all points, so the density and the dots agree
        scale = np.where(hi - lo > 0, hi - lo, 1.0)
        xy = (xy_all[idx] - lo) / scale
        vdata[name] = {"xy": np.round(xy, 4).tolist(), "cluster": v.clusters[idx].astype(int).tolist(),
                       "method": v.map_method, "density": density_layer((xy_all - lo) / scale)}
    return {"points": pts, "views": vdata, "tasks": tasks, "gap": int(first.gap), "sprite": sprite,
            "thumb": th, "cols": cols, "fields": ["domain", "task", "clip", "t", "before", "after"],
            "num_latents": len(first)}


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px} h2{font-size:1.15em;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:14px} td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left} td.desc{color:#777;font-size:12px;text-align:left}
.up{color:#1a7f37}.down{color:#c62828} .meta{color:#555;font-size:13px} .note{background:#fff8e1;padding:6px 10px;border-left:3px solid #f9a825;margin:6px 0;font-size:14px}
figure{margin:12px 0} figcaption{font-size:13px;color:#555} img.fig{max-width:100%;border:1px solid #eee}
#scatter{border:1px solid #ccc;cursor:crosshair;background:#fff}
#tip{position:absolute;display:none;background:#fff;border:1px solid #999;padding:6px;font-size:12px;box-shadow:0 2px 6px rgba(0,0,0,.2);pointer-events:none}
.controls{margin:6px 0;font-size:14px} .controls label{margin-right:14px}
"""

_JS = r"""
(function () {
  var D = JSON.parse(document.getElementById('scatter-data').textContent);
  var cv = document.getElementById('scatter'), ctx = cv.getContext('2d');
  var tip = document.getElementById('tip'), tipc = document.getElementById('tipcanvas'), tipx = tipc.getContext('2d');
  var tipt = document.getElementById('tiptext');
  var names = Object.keys(D.views), view = names[0], colorBy = 'embodiment', M = 14;
  var sprite = new Image(); var spriteReady = false;
  sprite.onload = function () { spriteReady = true; };
  if (D.sprite) { sprite.src = D.sprite; }
  var vsel = document.getElementById('viewsel'), csel = document.getElementById('colorsel');
  names.forEach(function (n) { var o = document.createElement('option'); o.value = n; o.textContent = n; vsel.appendChild(o); });
  function hue(i) { return 'hsl(' + ((i * 137.508) % 360).toFixed(1) + ',65%,48%)'; }
  function color(i) {
    var p = D.points[i];
    if (colorBy === 'embodiment') { return p[0] === 0 ? '#1f77b4' : '#ff7f0e'; }
    if (colorBy === 'task') { return hue(p[1]); }
    return hue(D.views[view].cluster[i]);
  }
  function pos(i) {
    var xy = D.views[view].xy[i];
    return [M + xy[0] * (cv.width - 2 * M), M + (1 - xy[1]) * (cv.height - 2 * M)];
  }
  var dens = {};
  function densityCanvas(name) {
    // the density layer of all points: 8-bit counts -> grey with alpha, drawn synchronously
    if (dens[name]) { return dens[name]; }
    var L = D.views[name].density, raw = atob(L.data), c = document.createElement('canvas');
    c.width = L.w; c.height = L.h;
    var cx = c.getContext('2d'), img = cx.createImageData(L.w, L.h);
    for (var i = 0; i < raw.length; i++) {
      var a = raw.charCodeAt(i);
      img.data[4 * i] = 60; img.data[4 * i + 1] = 60; img.data[4 * i + 2] = 90; img.data[4 * i + 3] = a ? 30 + a * 0.6 : 0;
    }
    cx.putImageData(img, 0, 0);
    dens[name] = c;
    return c;
  }
  function draw() {
    ctx.clearRect(0, 0, cv.width, cv.height);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(densityCanvas(view), M, M, cv.width - 2 * M, cv.height - 2 * M);
    cv.setAttribute('data-density-drawn', view);
    var n = 0;
    for (var i = 0; i < D.points.length; i++) {
      var q = pos(i);
      ctx.globalAlpha = 0.75; ctx.fillStyle = color(i);
      ctx.beginPath(); ctx.arc(q[0], q[1], 3, 0, 2 * Math.PI); ctx.fill(); n++;
    }
    ctx.globalAlpha = 1;
    document.getElementById('maptitle').textContent = view + ' \u2013 ' + D.views[view].method.toUpperCase() + ', coloured by ' + colorBy;
    cv.setAttribute('data-points-drawn', String(n));
    cv.setAttribute('data-view', view);
  }
  function drawThumb(k, x) {
    var c = D.cols, r = Math.floor(k / c), s = D.thumb;
    tipx.drawImage(sprite, (k % c) * s, r * s, s, s, x, 0, 96, 96);
  }
  cv.addEventListener('mousemove', function (e) {
    var b = cv.getBoundingClientRect(), mx = e.clientX - b.left, my = e.clientY - b.top, best = -1, bd = 64;
    for (var i = 0; i < D.points.length; i++) {
      var q = pos(i), d = (q[0] - mx) * (q[0] - mx) + (q[1] - my) * (q[1] - my);
      if (d < bd) { bd = d; best = i; }
    }
    if (best < 0) { tip.style.display = 'none'; return; }
    var p = D.points[best];
    tipx.fillStyle = '#fff'; tipx.fillRect(0, 0, tipc.width, tipc.height);
    if (spriteReady && p[4] >= 0) { drawThumb(p[4], 0); drawThumb(p[5], 108); }
    tipx.fillStyle = '#333'; tipx.font = '16px sans-serif'; tipx.fillText('\u2192', 97, 54);
    tipt.textContent = (p[0] === 0 ? 'human' : 'robot') + ' clip ' + p[2] + ', t=' + p[3] + '\u2192' + (p[3] + D.gap) +
      ' | task: ' + (D.tasks[p[1]] || p[1]) + ' | cluster ' + D.views[view].cluster[best];
    tip.style.left = (e.pageX + 14) + 'px'; tip.style.top = (e.pageY + 14) + 'px'; tip.style.display = 'block';
  });
  cv.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  vsel.addEventListener('change', function () { view = vsel.value; draw(); });
  csel.addEventListener('change', function () { colorBy = csel.value; draw(); });
  draw();
  console.log('hralign report: drew ' + cv.getAttribute('data-points-drawn') + ' points');
})();
"""


def write_report(path: str | os.PathLike, *, title: str, info: dict[str, str], notes: list[str],
                 metrics: dict[str, dict], figures: list[tuple[str, str | os.PathLike]], scatter: dict) -> Path:
    """Write the self-contained report.html.

    ``metrics``: view name -> metric dict; ``figures``: (caption, png path); ``scatter``: from
    :func:`scatter_payload`.
    """
    vnames = list(metrics)
    head = "".join(f"<th>{html.escape(v)}</th>" for v in vnames)
    if len(vnames) == 2:
        head += "<th>\u0394</th>"
    rows = []
    for key, label, desc in METRIC_ROWS:
        vals = [metrics[v].get(key) for v in vnames]
        if key in LAM_ONLY and all(x is None for x in vals):
            continue
        cells = "".join(f"<td>{_fmt(x)}</td>" for x in vals)
        if len(vnames) == 2:
            if all(isinstance(x, float) for x in vals) and not key.startswith("num_") and not key.endswith("_recall"):
                d = vals[1] - vals[0]
                cells += f"<td class=\"{'up' if d > 0 else 'down' if d < 0 else ''}\">{d:+.3f}</td>"
            else:
                cells += "<td></td>"
        rows.append(f"<tr><td>{html.escape(label)}</td>{cells}<td class=\"desc\">{html.escape(desc)}</td></tr>")
    info_html = "<br>".join(f"<b>{html.escape(k)}</b>: {html.escape(str(v))}" for k, v in info.items())
    notes_html = "".join(f"<div class=\"note\">{html.escape(n)}</div>" for n in notes)
    figs_html = "".join(
        f"<figure><img class=\"fig\" alt=\"{html.escape(cap)}\" src=\"{_b64_png(p)}\"><figcaption>{html.escape(cap)}</figcaption></figure>"
        for cap, p in figures)
    data = json.dumps(scatter, separators=(",", ":")).replace("</", "<\\/")
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<div class="meta">{info_html}</div>
{notes_html}
<h2>Metrics</h2>
<table><tr><th>metric</th>{head}<th></th></tr>{''.join(rows)}</table>
<h2>Interactive map</h2>
<div class="controls"><label>view <select id="viewsel"></select></label>
<label>colour by <select id="colorsel"><option value="embodiment">embodiment</option><option value="task">task</option>
<option value="cluster">cluster</option></select></label> <span id="maptitle" class="meta"></span></div>
<canvas id="scatter" width="900" height="620" data-points-drawn="0"></canvas>
<div id="tip"><canvas id="tipcanvas" width="204" height="96"></canvas><div id="tiptext"></div></div>
<p class="meta">Hover a point to see its frame pair x<sub>t</sub> \u2192 x<sub>t+{scatter.get('gap', 1)}</sub>
({len(scatter['points'])} points shown, a stratified sample; the grey layer is the density of all
{scatter.get('num_latents', len(scatter['points']))} latents).</p>
<h2>Figures</h2>
{figs_html}
<script type="application/json" id="scatter-data">{data}</script>
<script>{_JS}</script>
</body></html>
"""
    write_text_atomic(path, doc)
    return Path(path)
