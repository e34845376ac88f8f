"""What ``attnyolo viz`` writes: per image a summary PNG, one overlay PNG per map at the image's size, with
``--compare`` a side-by-side PNG, and one self-contained ``index.html`` (images inlined, opens offline)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from attnyolo.atomic import write_atomically
from attnyolo.graph.attention_layers import attention_layers
from attnyolo.viz.cam import eigen_cam
from attnyolo.viz.capture import attention_maps, is_spatial
from attnyolo.viz.detect import detect
from attnyolo.viz.errors import VizError
from attnyolo.viz.figures import compare_figure, image_figure, layer_gammas, overlay, with_gamma
from attnyolo.viz.images import prepare


@dataclass
class Gallery:
    """The files written, per image."""

    out: Path
    index: Path
    pictures: list[Path] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)
    comparisons: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def writable_folder(out: Path) -> Path:
    """``out`` created and writable, or a clear error naming it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".attnyolo-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise VizError(f"output folder {out}: cannot write there ({e.strerror or e})") from None
    return out


def _save_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    return write_atomically(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def _save_figure(fig: Figure, path: Path) -> Path:
    return write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def write_gallery(
    model: Any,
    images: list[Any],
    out: Path,
    *,
    layers: list[str] | None = None,
    cam: str | None = "eigen",
    compare: Any = None,
    labels: tuple[str, str] = ("base", "attention"),
    imgsz: int = 320,
) -> Gallery:
    """Write the pictures of ``model`` (and of ``compare``, the base, side by side) for ``images`` into ``out``."""
    out = writable_folder(Path(out))
    (out / "overlays").mkdir(exist_ok=True)
    gallery = Gallery(out, out / "index.html")
    has_attention = bool(attention_layers(model))
    if not has_attention:
        gallery.notes.append("the model holds no inserted attention: only its boxes and CAM are drawn")
    elif layers is not None:
        attention_maps(model, prepare(images[0], imgsz).tensor, layers=layers)  # fails early on a bad layer
    for image in images:
        p = prepare(image, imgsz)
        stem = _slug(Path(p.name).stem) or "image"
        det = detect(model, p)
        maps = attention_maps(model, p.tensor, layers=layers) if has_attention else {}
        c = eigen_cam(model, p.tensor) if cam else None
        for key, m in maps.items():
            if m.ndim == 2 and is_spatial(key):
                path = out / "overlays" / f"{stem}__{_slug(key)}.png"
                gallery.overlays.append(_save_png(overlay(p.original, p.to_original(m.numpy())), path))
        if c is not None:
            path = out / "overlays" / f"{stem}__eigencam.png"
            gallery.overlays.append(_save_png(overlay(p.original, p.to_original(c)), path))
        fig = image_figure(p, det, maps, c, title=labels[1], gammas=layer_gammas(model) if has_attention else None)
        gallery.pictures.append(_save_figure(fig, out / f"{stem}.png"))
        if compare is not None:
            bdet = detect(compare, p)
            bcam = eigen_cam(compare, p.tensor) if cam else None
            fig = compare_figure(p, (bdet, bcam), (det, c), labels)
            gallery.comparisons.append(_save_figure(fig, out / f"{stem}_compare.png"))
    write_index(gallery)
    return gallery


def _img(path: Path, width: str = "100%") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" style="max-width:{width}" src="data:image/png;base64,{data}">'


def write_index(gallery: Gallery) -> Path:
    """A self-contained ``index.html``: every PNG inlined as base64, no external resource."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>attnyolo viz</title>",
        "<style>body{font-family:sans-serif;margin:2em}h2{margin-top:2em}"
        ".ov{display:inline-block;margin:4px;vertical-align:top;font-size:12px}</style></head><body>",
        "<h1>attnyolo viz</h1>",
    ]
    parts += [f"<p><b>note:</b> {html.escape(n)}</p>" for n in gallery.notes]
    for pic in gallery.pictures:
        stem = pic.stem
        parts.append(f"<h2>{html.escape(stem)}</h2>{_img(pic)}")
        comp = [c for c in gallery.comparisons if c.stem == f"{stem}_compare"]
        if comp:
            parts.append(f"<h3>compared with the base</h3>{_img(comp[0])}")
        ovs = [o for o in gallery.overlays if o.name.startswith(f"{stem}__")]
        for o in ovs:
            label = o.stem.split("__", 1)[1]
            parts.append(f"<div class='ov'>{html.escape(label)}<br>{_img(o, '320px')}</div>")
    parts.append("</body></html>")
    return write_atomically(gallery.index, lambda tmp: tmp.write_text("\n".join(parts), encoding="utf-8"))


def comparison_figures(
    base: Any, others: dict[str, Any], images: list[Any], imgsz: int = 320, base_label: str = "baseline"
) -> dict[str, Figure]:
    """One figure per model in ``others``: each image's row compares it with ``base`` (boxes, EigenCAMs, their
    difference, its first spatial attention map). What the ablation report's gallery shows."""
    from attnyolo.viz.figures import comparison_grid

    prepared = [prepare(image, imgsz) for image in images]
    base_side = [(detect(base, p), eigen_cam(base, p.tensor)) for p in prepared]
    figures = {}
    for label, model in others.items():
        rows, map_title = [], ""
        gammas = layer_gammas(model)
        for p, b in zip(prepared, base_side, strict=True):
            try:
                maps = attention_maps(model, p.tensor) if attention_layers(model) else {}
            except VizError:  # a gate this module shapes in its own way: the row keeps boxes and CAMs
                maps = {}
            key = next((k for k, v in maps.items() if v.ndim == 2 and is_spatial(k)), None)
            map_title = with_gamma(key, gammas) if key is not None else map_title
            rows.append((p, b, (detect(model, p), eigen_cam(model, p.tensor)), maps[key].numpy() if key else None))
        figures[label] = comparison_grid(rows, (base_label, label), map_title)
    return figures
