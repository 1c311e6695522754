"""Paired latent chain - control per collect seed and pooled (seeds stacked), bootstrap and random-effects t."""
import json, sys
import numpy as np
from hralign.sim.stats import outcome_matrix, paired_bootstrap
from hralign.sim.sequential import paired_interval

root = sys.argv[1]
mats = {}
for cs in (0, 1):
    r = {ls: json.load(open(f"{root}/cs{cs}_ls{ls}/results.json")) for ls in (1000, 0)}
    tasks = list(r[1000]["collect"]["tasks"])
    a, b = (outcome_matrix(r[ls]["variants"]["latent"], tasks) for ls in (1000, 0))
    mats[cs] = (a, b)
def show(name, a, b):
    boot = paired_bootstrap({"chain": a, "control": b}, reference="control")
    t = paired_interval(a, b, 0.95)
    print(f"| {name} | {a.mean():.2f} | {b.mean():.2f} | {t['diff']:+.2f} | [{boot['chain']['diff_lo']:+.2f}, "
          f"{boot['chain']['diff_hi']:+.2f}] | [{t['lo']:+.2f}, {t['hi']:+.2f}] ({t['df']:.0f}) | {a.size} | "
          f"{' / '.join(f'{x:.2f}' for x in a.mean(1))} ; {' / '.join(f'{x:.2f}' for x in b.mean(1))} |")
print("| draw | latent chain | control | chain - control | paired bootstrap 95% | random-effects t 95% (df) | rollouts per row | per seed chain ; control |")
print("|---|---|---|---|---|---|---|---|")
for cs, (a, b) in mats.items():
    show(f"collect seed {cs}", a, b)
show("pooled", np.vstack([mats[0][0], mats[1][0]]), np.vstack([mats[0][1], mats[1][1]]))
