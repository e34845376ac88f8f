"""``attnyolo viz``: attention maps, CAMs and base-vs-attention comparisons as PNGs and an index.html."""

from __future__ import annotations

from pathlib import Path

import typer


def viz_command(
    model: str = typer.Argument(..., help="An Ultralytics .pt, an attnyolo .safetensors, or a run folder."),
    images: list[Path] = typer.Argument(..., help="One or more image files."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (PNGs and index.html)."),
    layers: str = typer.Option(
        "auto", "--layers", help="auto (every attention layer) or labels: 16,20 / 4.m.0.attn (inside a block)"
    ),
    cam: str = typer.Option("eigen", "--cam", help="Class-activation map: eigen (EigenCAM) or none."),
    compare: str | None = typer.Option(None, "--compare", help="A base model to show side by side (same formats)."),
    imgsz: int = typer.Option(320, "--imgsz", help="Letterbox size (long side)."),
    trust: bool = typer.Option(False, "--trust-checkpoint", help="Full pickle load (only if you trust the files)."),
) -> None:
    """Draw where the attention looks: maps over each image, channel weights, EigenCAM, boxes; --compare a base."""
    from attnyolo.viz.cam import CAM_METHODS
    from attnyolo.viz.errors import VizError
    from attnyolo.viz.gallery import write_gallery
    from attnyolo.viz.models import load_model

    if cam not in (*CAM_METHODS, "none"):
        raise VizError(f"--cam {cam!r}: choose one of {', '.join((*CAM_METHODS, 'none'))}")
    chosen = None if layers == "auto" else [x.strip() for x in layers.split(",") if x.strip()]
    net = load_model(model, trust=trust)
    base = load_model(compare, trust=trust) if compare else None
    gallery = write_gallery(
        net,
        list(images),
        out,
        layers=chosen,
        cam=None if cam == "none" else cam,
        compare=base,
        labels=(Path(compare).name if compare else "base", Path(model).name),
        imgsz=imgsz,
    )
    for note in gallery.notes:
        typer.echo(f"note: {Path(model).name}: {note}")
    typer.echo(
        f"wrote {len(gallery.pictures)} pictures, {len(gallery.overlays)} overlays, "
        f"{len(gallery.comparisons)} comparisons; open {gallery.index}"
    )


def register_commands(app: typer.Typer) -> None:
    """Add ``viz`` to ``app``."""
    app.command("viz")(viz_command)
