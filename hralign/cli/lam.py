"""`hralign lam`: train a latent action model, label pairs files with it, evaluate its latents."""

from __future__ import annotations

import json

import click

from hralign.cli.options import dataclass_options, resume_options
from hralign.device import DeviceConfig
from hralign.shard import current_shard
from hralign.hashing import sha256_file
from hralign.lam.config import LAMConfig
from hralign.lam.train import LAMTrainConfig
from hralign.pairs.split import DEFAULT_VAL_FRACTION

# architecture options shown by `lam train` (the rest of LAMConfig is derived)
_MODEL_EXCLUDE = ("image_size", "target_tokens", "target_token_dim")


@click.group("lam")
def lam() -> None:
    """Latent action models (LAPA / Genie style): IDM + vector quantiser + FDM.

    \b
    Example:
      hralign lam train --pairs demo.h5 --out runs/lam --idm conv --conv-channels 32 --patch-size 8 --dim 64 --gap 3 --steps 1500
      hralign lam label --pairs demo.h5 --lam runs/lam --out runs/lam/labels.h5
      hralign lam eval --pairs demo.h5 --labels runs/lam/labels.h5
      hralign lam eval --pairs demo.h5 --labels runs/adapt_lam/labels.h5 --split val
    """


@lam.command("train")
@dataclass_options(LAMTrainConfig, required=("pairs", "out"))
@dataclass_options(LAMConfig, only=("image_size",), default_none="the pairs file's")
@dataclass_options(LAMConfig, exclude=_MODEL_EXCLUDE)
@click.pass_context
def train(ctx: click.Context, **kwargs) -> None:
    """Train a LAM on the clips of a pairs file and write it to --out.

    Writes OUT/lam.json + model.safetensors (load with `lam:OUT`), metrics.jsonl (reconstruction
    error, PSNR vs the copy-x_t baseline, codebook perplexity and usage per token), run.json and
    checkpoints/ (for --resume: options not given come from the run). Works under
    `torchrun --nproc_per_node N` and `accelerate launch` (the global batch is split). Defaults are LAPA's (codebook 8,
    4 tokens, patch 32); for small frames use --idm conv or a smaller --patch-size.

    \b
    Example:
      hralign pairs synth --out demo.h5
      hralign lam train --pairs demo.h5 --out runs/lam --idm conv --conv-channels 32 --patch-size 8 --dim 64 --gap 3 --steps 1500
      hralign lam train --pairs demo.h5 --out runs/lam --steps 3000 --resume
      hralign lam train --pairs demo.h5 --out runs/lam_f --target features --target-encoder r3m-resnet18
    """
    from hralign.lam.train import config_for_pairs, train_lam

    kwargs = resume_options(ctx, kwargs)
    train_names = {f for f in LAMTrainConfig.__dataclass_fields__}
    train_opts = {k: v for k, v in kwargs.items() if k in train_names}
    model_opts = {k: v for k, v in kwargs.items() if k not in train_names}
    cfg = LAMTrainConfig(**train_opts)
    model_cfg = config_for_pairs(cfg.pairs, cfg.domain, **model_opts)
    result = train_lam(model_cfg, cfg, progress=True)
    if result:  # the main process (the others return {})
        click.echo(format_eval(result))
        click.echo(f"wrote {cfg.out} (use it as --lam {cfg.out} or encoder lam:{cfg.out})")


def format_eval(r: dict) -> str:
    """Human-readable summary of :func:`hralign.lam.train.evaluate_lam`."""
    lines = []
    if "psnr" in r:
        lines.append(f"reconstruction PSNR {r['psnr']:.2f} dB  vs copy-x_t baseline {r['copy_psnr']:.2f} dB  "
                     f"(FDM with shuffled latent actions {r['shuffled_action_psnr']:.2f} dB) on {r['eval_pairs']} pairs")
    else:
        lines.append(f"reconstruction MSE {r['recon_mse']:.5f}  vs copy-x_t baseline {r['copy_mse']:.5f}  "
                     f"(shuffled latent actions {r['shuffled_action_mse']:.5f}) on {r['eval_pairs']} pairs")
    lines.append(f"codebook perplexity {r['perplexity']:.2f} of {r['codebook_size']} "
                 f"(per token {', '.join(f'{p:.2f}' for p in r['perplexity_per_token'])}; "
                 f"codes used per token {r['usage_per_token']})")
    return "\n".join(lines)


@lam.command("label")
@click.option("--pairs", required=True, help="Pairs file to label (both embodiments).")
@click.option("--lam", "lam_dir", required=True, help="LAM directory (from `lam train`), lam:DIR, or an adapter saved over a lam: encoder.")
@click.option("--out", required=True, help="Output labels.h5.")
@click.option("--robot-lam", default=None, help="Encode robot frame pairs with this instead (e.g. an HR-Align adapter "
              "saved over the LAM: HR-Align adapts the robot branch only).")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Frame pairs per forward pass.")
@click.option("--overwrite/--no-overwrite", default=False, show_default=True, help="Replace an existing --out.")
@dataclass_options(DeviceConfig)
def label(pairs: str, lam_dir: str, out: str, robot_lam: str | None, batch_size: int, overwrite: bool,
          device: str, precision: str) -> None:
    """Label every frame pair (x_t, x_{t+gap}) of both embodiments with latent action codes and latents.

    The format (codes int64 [N, tokens], latents float32 [N, D], clip and t per row, per domain;
    attrs gap, codebook_size, tokens, pairs_sha256) is documented in docs/lam.md and
    hralign/lam/labels.py; read it with hralign.lam.labels.read_labels.

    \b
    Example:
      hralign lam label --pairs demo.h5 --lam runs/lam --out runs/lam/labels.h5
      hralign lam label --pairs demo.h5 --lam runs/lam --robot-lam runs/adapt_lam/adapter --out runs/adapt_lam/labels.h5
      torchrun --nproc_per_node 8 -m hralign.cli.main lam label --pairs big.h5 --lam runs/lam --out labels.h5

    Under torchrun / accelerate launch each process labels a contiguous share of the clips on its
    own device and the main process writes the one labels file (the same file as one process).
    """
    from hralign.lam.labels import label_pairs, read_labels

    path = label_pairs(pairs, lam_dir, out, batch_size=batch_size, progress=True, overwrite=overwrite,
                       robot_lam=robot_lam, devices=DeviceConfig(device, precision))
    if not current_shard().is_main:
        return
    lab = read_labels(path)
    counts = ", ".join(f"{d} {len(lab[d]['t'])} frame pairs" for d in ("human", "robot") if d in lab)
    click.echo(f"wrote {path} ({counts}; gap {lab['attrs']['gap']}, {lab['attrs']['tokens']} tokens of "
               f"{lab['attrs']['codebook_size']} codes)")


@lam.command("eval")
@click.option("--pairs", required=True, help="The pairs file the labels were made from.")
@click.option("--labels", "labels_path", required=True, help="labels.h5 from `hralign lam label`.")
@click.option("--lam", "lam_dir", default=None, help="The LAM directory: also its reconstruction on --pairs' frame "
              "pairs against copying x_t and against shuffled latents, and its codebook perplexity.")
@click.option("--split", "which", type=click.Choice(["all", "train", "val"]), default="all", show_default=True,
              help="Pairs whose code agreement is measured (the file's /split, else the seeded split of "
                   f"{DEFAULT_VAL_FRACTION:.0%} of the pairs that training holds out); the other measures use every clip.")
@click.option("--folds", type=int, default=5, show_default=True, help="Grouped (by clip) folds of the action probe.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the controls (shuffles) and the kNN halves.")
@click.option("--knn-k", type=int, default=10, show_default=True, help="Neighbours of the cross-embodiment kNN vote.")
@click.option("--phase-bins", type=int, default=4, show_default=True, help="Time bins per clip: the motion-phase labels of the kNN.")
@click.option("--action-bins", type=int, default=3, show_default=True, help="Equal-frequency bins per action column: "
              "the action classes of the code NMI.")
@click.option("--eval-pairs", type=int, default=512, show_default=True, help="Frame pairs per domain of the reconstruction (with --lam).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def evaluate(pairs: str, labels_path: str, lam_dir: str | None, which: str, folds: int, seed: int, knn_k: int,
             phase_bins: int, action_bins: int, eval_pairs: int, as_json: bool) -> None:
    """How much action the LAM's latents carry, and whether both embodiments mean the same by them.

    \b
    - action probe: ridge from latents to each domain's actions over the gap, cross-validated
      across clips, next to shuffled labels, the proprio-only floor and latents + proprio;
    - code NMI against discretised actions (next to shuffled codes);
    - cross-embodiment kNN accuracy of task and motion phase on disjoint episodes (no frame
      alignment needed), next to shuffled reference labels;
    - code agreement at matched (pair, t) when the pairs are frame-aligned (synthetic data);
      chance is the product of the two code histograms;
    - with --lam: reconstruction against copying x_t and shuffled latents, perplexity.
    The measures are hralign.lam.measures (the same as the v2 benchmark and benchmarks/lam_variants.py).

    \b
    Example:
      hralign lam eval --pairs demo.h5 --labels runs/lam/labels.h5
      hralign lam eval --pairs demo.h5 --labels runs/lam/labels.h5 --lam runs/lam --json
      hralign lam eval --pairs demo.h5 --labels runs/adapt_lam/labels.h5 --split val
    """
    from hralign.config_checks import check_int
    from hralign.errors import HRAlignError
    from hralign.lam.evaluate import code_agreement
    from hralign.lam.labels import read_labels
    from hralign.lam.measures import format_measures, measure_labels, reconstruction
    from hralign.pairs import PairsFile

    check_int(folds, "folds", 2, flag=True)
    for value, name, lo in ((knn_k, "knn_k", 1), (phase_bins, "phase_bins", 1), (action_bins, "action_bins", 2),
                            (eval_pairs, "eval_pairs", 1)):
        check_int(value, name, lo, flag=True)
    lab = read_labels(labels_path)
    if lab["attrs"].get("pairs_sha256") and lab["attrs"]["pairs_sha256"] != sha256_file(pairs):
        raise HRAlignError(f"--labels {labels_path}: made from another pairs file (sha256 differs from {pairs})")
    pf = PairsFile(pairs)
    indices = None
    if which != "all":
        from hralign.pairs.split import split_pairs

        indices = split_pairs(pf)[0 if which == "train" else 1]
    res: dict = {"split": which}
    if pf.num_pairs and "human" in lab and "robot" in lab:
        res["agreement"] = code_agreement(lab, pf, indices)
    measures = measure_labels(lab, pf, folds=folds, seed=seed, knn_k=knn_k, phase_bins=phase_bins,
                              action_bins=action_bins)
    if lam_dir is not None:
        measures["reconstruction"] = reconstruction(_lam_dir(lam_dir), pairs, eval_pairs=eval_pairs, seed=seed)
    res["measures"] = measures
    if "robot" in measures["probe"]:
        res["probe"] = measures["probe"]["robot"]
    if as_json:
        click.echo(json.dumps(res))
        return
    if "agreement" in res:
        a = res["agreement"]
        click.echo(f"code agreement human vs robot at matched (pair, t), {which} pairs, {a['matched']} rows: "
                   f"{a['agreement_mean']:.3f} per token (chance {a['chance_mean']:.3f}); "
                   f"all {len(a['agreement_per_token'])} tokens equal {a['agreement_all']:.3f}")
        click.echo(f"  per token: {', '.join(f'{x:.3f}' for x in a['agreement_per_token'])}  "
                   f"chance: {', '.join(f'{x:.3f}' for x in a['chance_per_token'])}")
        click.echo(f"  latent retrieval human->robot top1 {a['latent_retrieval']['top1']:.3f} "
                   f"top5 {a['latent_retrieval']['top5']:.3f} (chance {1 / max(a['matched'], 1):.4f})")
    if "probe" in res:
        p = res["probe"]
        click.echo(f"action probe R^2 (latents -> robot actions over the gap, ridge, {p['folds']}-fold by clip): "
                   f"{p['action_probe_r2']:.3f} vs shuffled-label control {p['action_probe_r2_shuffled']:.3f} "
                   f"({p['rows']} rows, {p['clips']} clips)")
        cols = ", ".join(f"col {c}: {r:.3f} ({s:.3f})" for c, r, s in
                         zip(p["target_columns"], p["action_probe_r2_per_column"],
                             p["action_probe_r2_shuffled_per_column"]))
        click.echo(f"  per action column R^2 (shuffled): {cols}")
    for line in format_measures(measures):
        click.echo(line)


def _lam_dir(spec: str) -> str:
    return spec[len("lam:"):] if spec.startswith("lam:") else spec


@lam.command("transfer")
@click.option("--pairs", required=True, help="Pairs file holding both clips (opened read-only).")
@click.option("--lam", "lam_dir", required=True, help="Pixel-target LAM directory from `hralign lam train` (or lam:DIR).")
@click.option("--source", default=None, help="Clip whose motion is transferred, DOMAIN:CLIP (e.g. human:3).")
@click.option("--target", default=None, help="Clip whose first frame is driven, DOMAIN:CLIP (e.g. robot:3).")
@click.option("--out", default=None, help="Side-by-side video, .gif or .mp4 (a .png figure is written beside it).")
@click.option("--steps", type=int, default=None, help="LAM steps of `gap` frames [default: all the source clip allows].")
@click.option("--all-val", is_flag=True, help="Also score human->robot transfer on every validation pair (table).")
@click.option("--random-draws", type=int, default=4, show_default=True, help="Random-code rollouts averaged for the random-latent baseline.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random-latent baseline.")
@click.option("--motion-threshold", type=float, default=0.2, show_default=True,
              help="Pixel change (0..1, max over RGB) vs the target's first frame that puts a pixel in the moving "
                   "region scored separately (moving-region MSE).")
@click.option("--fps", type=float, default=2.0, show_default=True, help="Frames per second of the video.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def transfer_cmd(pairs: str, lam_dir: str, source: str | None, target: str | None, out: str | None, steps: int | None,
                 all_val: bool, random_draws: int, seed: int, motion_threshold: float, fps: float,
                 as_json: bool) -> None:
    """Move a clip's motion onto another clip's first frame with the LAM world model (IGOR).

    The IDM labels the source clip's frame pairs (0, gap), (gap, 2 gap), ...; the FDM applies those
    latent actions to the target's first frame, feeding its predictions back. When the clips are a
    pair (frame-aligned, as in the synthetic set) the rollout is scored (MSE, PSNR) against the
    target's real continuation, next to the copy-first-frame and random-latent baselines and the
    target's own latent actions (oracle). The video shows source | rollout | real target | random.

    \b
    Example:
      hralign lam transfer --pairs demo.h5 --lam runs/lam --source human:3 --target robot:3 --out t.gif
      hralign lam transfer --pairs demo.h5 --lam runs/lam --all-val
    """
    from pathlib import Path

    from hralign.errors import HRAlignError
    from hralign.lam.io import load_lam
    from hralign.lam.transfer import evaluate_transfer, format_table, parse_clip_ref, transfer
    from hralign.lam.video import side_by_side, write_strip_figure, write_video
    from hralign.pairs import PairsFile

    if (source is None) != (target is None):
        raise HRAlignError("--source and --target go together (e.g. --source human:3 --target robot:3)")
    if source is None and not all_val:
        raise HRAlignError("nothing to do: pass --source/--target (one transfer) and/or --all-val (table)")
    if source is not None and out is None:
        raise HRAlignError("--out is required with --source/--target (a .gif or .mp4 path)")
    if out is not None and Path(out).suffix.lower() not in (".gif", ".mp4"):
        raise HRAlignError(f"--out {out}: expected a .gif or .mp4 path")
    src = parse_clip_ref(source, "--source") if source is not None else None
    tgt = parse_clip_ref(target, "--target") if target is not None else None
    model = load_lam(_lam_dir(lam_dir))
    pf = PairsFile(pairs)
    result: dict = {}
    if src is not None:
        res = transfer(model, pf, src, tgt, steps=steps, random_draws=random_draws, seed=seed,
                       motion_threshold=motion_threshold)
        cols = [(f"{source} (source)", res.source_frames), ("rollout", res.rollout)]
        rows = [(f"source {source}", res.source_frames), (f"rollout on {target}", res.rollout)]
        if res.real is not None:
            cols.append((f"{target} (real)", res.real))
            rows.append((f"real {target}", res.real))
        cols.append(("random latent", res.random_rollout))
        rows.append(("random latents", res.random_rollout))
        video = write_video(out, side_by_side(cols), fps=fps)
        figure = write_strip_figure(Path(out).with_suffix(".png"), rows,
                                    f"{source} -> {target}: {res.steps} LAM steps of {res.gap} frames",
                                    curves={k: v for k, v in res.mse_per_step.items()})
        result["transfer"] = {**res.summary(), "video": str(video), "figure": str(figure)}
        if not as_json:
            click.echo(f"wrote {video} and {figure} ({res.steps} steps of {res.gap} frames; codes "
                       f"{' '.join(''.join(str(c) for c in row) for row in res.codes)})")
            if res.mse:
                click.echo("error against the real continuation of " + target + " (mean over steps 1.." +
                           f"{res.steps}):")
                for m, name in (("transfer", "transfer"), ("copy", "copy-first-frame"), ("random", "random-latent"),
                                ("oracle", "oracle (own latents)")):
                    click.echo(f"  {name:<22} MSE {res.mse[m]:.5f}  PSNR {res.psnr[m]:.2f} dB"
                               + (f"  moving-region MSE {res.mse_moving[m]:.5f}" if res.mse_moving else ""))
            else:
                click.echo(f"{source} and {target} are not a pair (or the target is too short): no reference to score against")
    if all_val:
        report = evaluate_transfer(model, pf, steps=steps, random_draws=random_draws, seed=seed,
                                   motion_threshold=motion_threshold)
        result["all_val"] = report
        if not as_json:
            click.echo(f"human -> robot transfer on {report['pairs']} validation pairs (MSE, PSNR vs the real robot "
                       "continuation):")
            click.echo(format_table(report))
    if as_json:
        click.echo(json.dumps(result))


@lam.command("imagine")
@click.option("--pairs", required=True, help="Pairs file holding the start clip and the task instructions.")
@click.option("--clip", "clip_ref", required=True, help="Start clip, DOMAIN:CLIP (e.g. robot:3); its first frame starts every rollout.")
@click.option("--policy", "policy_dir", required=True, help="Latent policy from `hralign policy train --lam DIR` (or --labels).")
@click.option("--steps", type=int, required=True, help="Policy + world-model steps (each `gap` frames), 1..64.")
@click.option("--lam", "lam_dir", default=None, help="LAM directory [default: the one recorded with the policy's labels].")
@click.option("--tasks", default=None, help="Comma-separated task indices to imagine [default: all, the clip's own first].")
@click.option("--out", default=None, help="Side-by-side video (.gif or .mp4) [default: imagine_<domain>_<clip>.gif]; a .png figure beside it.")
@click.option("--fps", type=float, default=2.0, show_default=True, help="Frames per second of the video.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def imagine_cmd(pairs: str, clip_ref: str, policy_dir: str, steps: int, lam_dir: str | None, tasks: str | None,
                out: str | None, fps: float, as_json: bool) -> None:
    """Instruction following by rollout (IGOR): the latent policy proposes codes, the LAM renders them.

    From the clip's first frame, for each instruction: the policy reads the current (rendered)
    frame's features and the instruction, predicts latent action codes, and the LAM's FDM renders
    the next frame; repeated --steps times. The clip's own instruction is scored against the clip's
    real frames next to the copy-start-frame baseline.

    \b
    Example:
      hralign policy train --pairs demo.h5 --encoder r3m-resnet18 --image-size 64 --lam runs/lam --head continuous --out runs/latent
      hralign lam imagine --pairs demo.h5 --clip robot:3 --policy runs/latent --steps 5 --out imagine.gif
    """
    from pathlib import Path

    from hralign.errors import HRAlignError
    from hralign.lam.transfer import parse_clip_ref
    from hralign.lam.video import side_by_side, write_strip_figure, write_video
    from hralign.policy.imagine import imagine_clip

    clip = parse_clip_ref(clip_ref, "--clip")
    task_list = None
    if tasks is not None:
        try:
            task_list = [int(t) for t in tasks.split(",") if t.strip()]
        except ValueError:
            raise HRAlignError(f"--tasks {tasks!r}: expected comma-separated task indices, e.g. 0,2,5") from None
    out = out or f"imagine_{clip[0]}_{clip[1]}.gif"
    if Path(out).suffix.lower() not in (".gif", ".mp4"):
        raise HRAlignError(f"--out {out}: expected a .gif or .mp4 path")
    im = imagine_clip(policy_dir, pairs, clip, steps, task_list, lam_dir)
    cols = [(f"task {t}" + (" (own)" if t == im.clip_task else ""), f) for t, f in zip(im.tasks, im.frames)]
    rows = [(f"task {t}: {s[:28]}", f) for t, s, f in zip(im.tasks, im.instructions, im.frames)]
    if im.real is not None:
        cols.append((f"{clip_ref} real", im.real))
        rows.append((f"real {clip_ref}", im.real))
    video = write_video(out, side_by_side(cols), fps=fps)
    figure = write_strip_figure(Path(out).with_suffix(".png"), rows,
                                f"imagined from {clip_ref}: {steps} steps of {im.gap} frames")
    res = {"video": str(video), "figure": str(figure), "tasks": im.tasks, "instructions": im.instructions,
           "codes": im.codes.tolist(), "errors": im.errors}
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(f"wrote {video} and {figure}")
    for t, s, c in zip(im.tasks, im.instructions, im.codes):
        click.echo(f"  task {t} {s!r}: codes {' '.join(''.join(str(x) for x in row) for row in c)}")
    if im.errors:
        e = im.errors
        click.echo(f"own instruction vs the real clip over {e['compared_steps']} steps: imagined MSE "
                   f"{e['imagined_mse']:.5f} vs copy-start-frame {e['copy_start_mse']:.5f}")
