"""``hralign adapters``: inspect saved adapter directories."""

from __future__ import annotations

import click

from hralign.adapters import read_adapter_meta


@click.group()
def adapters() -> None:
    """Inspect saved adapters.

    \b
    Example:
      hralign adapters info runs/demo/adapter
    """


@adapters.command("info")
@click.argument("directory", type=click.Path(file_okay=False))
def info(directory: str) -> None:
    """Method, placement, trainable parameters and % of the backbone of an adapter DIRECTORY.

    \b
    Example:
      hralign adapters info runs/demo/adapter
    """
    meta = read_adapter_meta(directory)
    enc = meta["encoder"]
    trainable = int(meta.get("trainable_parameters") or 0)
    backbone = int(meta.get("backbone_parameters") or 0)
    share = f" ({100.0 * trainable / backbone:.2f}% of the backbone's {backbone:,})" if backbone else ""
    click.echo(f"method       {meta['method']}")
    click.echo(f"placement    {meta.get('placement') or '-'}")
    click.echo(f"trainable    {trainable:,}{share}")
    click.echo(f"encoder      {enc.get('name')} (image size {enc.get('image_size')})")
    click.echo(f"weights      {enc.get('weights') or 'none (random init, checksum recorded)'}")
    opts = ", ".join(f"{k}={v}" for k, v in sorted(meta["options"].items())) or "defaults"
    click.echo(f"options      {opts}")
