"""Entry point of the ``hralign`` command.

Command groups live one per module in this package and are imported only when used
(click's documented lazy-group pattern), so ``hralign pairs validate`` does not pay for
importing torch, timm or umap.
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

from hralign.errors import HRAlignError

# name -> (module, attribute, one-line summary). One line per command group.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "pairs": ("hralign.cli.pairs", "pairs", "Build, synthesise, validate and inspect paired human/robot clip files."),
    "encoders": ("hralign.cli.encoders", "encoders", "List frozen encoders and check checkpoints."),
    "adapters": ("hralign.cli.adapters", "adapters", "Inspect saved adapters."),
    "export": ("hralign.cli.export", "export", "Export an adapted encoder (R3M, torchvision, safetensors, TorchScript)."),
    "pretrain": ("hralign.cli.pretrain", "pretrain", "Pretrain an encoder on human video with R3M's objective."),
    "adapt": ("hralign.cli.adapt", "adapt", "Train an HR-Align adapter on paired human/robot clips."),
    "analyze": ("hralign.cli.analyze", "analyze", "Cluster latent actions, measure cross-embodiment consistency, write a report."),
    "lam": ("hralign.cli.lam", "lam", "Train, label with and roll out a latent action model."),
    "policy": ("hralign.cli.policy", "policy", "Train and evaluate latent-action and behaviour-cloning policies."),
    "sim": ("hralign.cli.sim", "sim", "MetaWorld paired rollouts and closed-loop evaluation ([sim] extra)."),
    "bench": ("hralign.cli.bench", "bench", "End-to-end benchmarks."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click docs, "Lazily Loading Subcommands")."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (module, _, _) in COMMANDS.items() if importlib.util.find_spec(module))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[name]
        if importlib.util.find_spec(module_name) is None:
            return None
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Summaries come from COMMANDS so `hralign --help` stays fast (no heavy imports).
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(package_name="hralign")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """hralign: align visual encoders pretrained on human video to robots (HR-Align).

    \b
    Example:
      hralign pairs synth --out demo.h5
      hralign adapt --pairs demo.h5 --encoder r3m-resnet18 --out runs/demo
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _one_line(message: str) -> str:
    """A message on one line: errors quoted from libraries (pyarrow, h5py) may span several."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: user errors become one line on stderr and exit code 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    if debug:  # accepted anywhere on the line, not only before the command group
        args = ["--debug"] + [a for a in args if a != "--debug"]
    try:
        code = cli.main(args=args, prog_name="hralign", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        if debug:
            traceback.print_exc()
        e.show()
        sys.exit(2)
    except HRAlignError as e:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_one_line(str(e))}", err=True)
        sys.exit(2)
    except OSError as e:
        # Disk full, permission denied, missing file: the user's environment, not a bug.
        if debug:
            traceback.print_exc()
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        click.echo(f"error: {_one_line(str(e.strerror or e))}{where}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - last resort: one line, traceback behind --debug
        if debug:
            traceback.print_exc()
        click.echo(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
