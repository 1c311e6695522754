"""``hralign encoders``: list the registered encoders, check a checkpoint loads and runs."""

from __future__ import annotations

import warnings

import click
import torch

from hralign.encoders import ENCODERS, RandomInitWarning, load_encoder
from hralign.encoders.registry import known_names


@click.group()
def encoders() -> None:
    """List frozen encoders and check checkpoints.

    \b
    Example:
      hralign encoders list
      hralign encoders check r3m-resnet50 --weights ~/.r3m/r3m_50/model.pt
    """


def _count_parameters(name: str) -> str:
    entry = ENCODERS[name]
    try:
        with torch.device("meta"):  # no memory, no init cost: shapes only
            model = entry.factory(entry.image_size)
        return f"{sum(p.numel() for p in model.parameters()):,}"
    except Exception:  # noqa: BLE001 - a count is nice-to-have; never fail the listing
        return "?"


@encoders.command("list")
def list_() -> None:
    """Registered encoders: name, feature dim, default image size, parameters.

    \b
    Example:
      hralign encoders list
    """
    rows = [("name", "dim", "size", "parameters", "description")]
    for name, entry in sorted(ENCODERS.items()):
        rows.append((name, str(entry.feature_dim or "?"), str(entry.image_size), _count_parameters(name), entry.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    prefixes = [n for n in known_names() if n.endswith("<...>")]
    click.echo(f"prefixes: {', '.join(prefixes)} (timm:<model name>, hf:<local directory>, lam:<lam run dir>)")


@encoders.command("check")
@click.argument("name")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Local checkpoint (R3M model.pt, D4R .pth, .safetensors).")
@click.option("--image-size", type=int, default=None, help="Input side (default: the encoder's).")
@click.option("--trust-checkpoint", is_flag=True, help="Allow full unpickling (torch.load weights_only=False). Only for files you trust.")
@click.option("--batch", type=int, default=2, show_default=True, help="Images in the test forward pass.")
def check(name: str, weights: str | None, image_size: int | None, trust_checkpoint: bool, batch: int) -> None:
    """Load NAME (with --weights), run a forward pass on random uint8 images, print a summary.

    \b
    Example:
      hralign encoders check r3m-resnet50 --weights ~/.r3m/r3m_50/model.pt
      hralign encoders check d4r-vit-b16 --weights visual_features/vit_base/SOUP_1M_DH.pth --image-size 128
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RandomInitWarning)
        enc = load_encoder(name, weights=weights, image_size=image_size, trust_checkpoint=trust_checkpoint)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, enc.image_size, enc.image_size, 3), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        feats = enc(images)
    spec = enc.spec
    click.echo(f"encoder      {enc.name}")
    click.echo(f"weights      {spec.get('weights') or 'none (random init)'}")
    if spec.get("sha256"):
        click.echo(f"sha256       {spec['sha256']}")
    click.echo(f"image size   {enc.image_size}")
    click.echo(f"feature dim  {enc.feature_dim}")
    click.echo(f"parameters   {sum(p.numel() for p in enc.parameters()):,}")
    click.echo(f"stages       {', '.join(enc.stage_names)}")
    click.echo(
        f"forward      {tuple(images.shape)} uint8 -> {tuple(feats.shape)}; "
        f"mean {feats.mean().item():.4g}, std {feats.std().item():.4g}, finite {bool(torch.isfinite(feats).all())}"
    )
