"""``hralign export``: write an adapted encoder in R3M / torchvision / safetensors / TorchScript form."""

from __future__ import annotations

import click

from hralign.adapters.export import FORMATS, export_adapter


@click.command("export")
@click.option("--adapter", "adapter_dir", required=True, type=click.Path(file_okay=False), help="Directory written by save_adapter / hralign adapt.")
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS), help="r3m: R3M model.pt layout; torchvision: plain ResNet state dict; safetensors; torchscript.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file (written atomically).")
def export(adapter_dir: str, fmt: str, out: str) -> None:
    """Export an adapted encoder; LoRA-family adapters are merged into the backbone.

    \b
    Example:
      hralign export --adapter runs/demo/adapter --format r3m --out model.pt
      hralign export --adapter runs/demo/adapter --format torchscript --out encoder.ts
    """
    path = export_adapter(adapter_dir, fmt, out)
    click.echo(f"wrote {path} ({fmt})")
