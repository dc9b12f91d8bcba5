"""`clrbench export`: the encoder of any --checkpoint spec, alone, as .safetensors with metadata."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from clrbench.cli.common import _guard, app, stdout


@app.command(
    epilog="Examples:\n\n  clrbench export --checkpoint runs/quickstart/last.pt --out quickstart.safetensors\n\n"
    "  clrbench export --checkpoint simclr-v1:resnet50-1x.pth --out simclr-r50-1x.safetensors"
)
@_guard
def export(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help=(
        "Any --checkpoint of clrbench eval: a clrbench .pt, a torchvision/SimCLR/lightly/solo-learn file, "
        "torchvision:<arch>, random:<arch>, or NAME:PATH to force an adapter."))],
    out: Annotated[str, typer.Option(help=(
        "Output .safetensors file (written atomically; an existing file "
        "is replaced only once the new one is complete)."))],
    with_head: Annotated[bool, typer.Option("--with-head", help=(
        "Also write the projection head (keys head.*), for S-v2 fine-tuning from head:1."))] = False,
) -> None:
    """Write an encoder alone (torchvision ResNet keys, no fc) with its input range and normalisation in the header."""
    from clrbench.weights.export import export_encoder, parameter_count

    path, enc = export_encoder(checkpoint, out, with_head)
    m = enc.meta
    norm = "no mean/std" if not m.get("mean") else f"mean {m['mean']} std {m['std']}"
    head = f" + its {enc.head_meta['kind']} head" if with_head and enc.head_meta else ""
    stdout.print(
        f"Wrote [bold]{escape(str(path))}[/]: {m['arch']} width {m['width']:g}, {m['stem']} stem, "
        f"{m['feature_dim']}-d features, {parameter_count(enc) / 1e6:.1f}M parameters "
        f"(from the {enc.kind} adapter){head}. Inputs: RGB in {m['input_range']}, {norm}."
    )
    stdout.print(f"Evaluate it: clrbench eval --checkpoint {path} --tasks quick", markup=False)
