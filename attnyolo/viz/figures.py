"""Pictures of attention: overlays at the image's own size, and matplotlib figures (returned, never shown)."""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from attnyolo.viz.capture import inserted_attention, is_spatial
from attnyolo.viz.detect import Detections
from attnyolo.viz.images import Prepared

CMAP = "jet"
DIFF_CMAP = "coolwarm"
BLEND_NOTE = "maps: the gates inside attn; each layer outputs x + γ·(attn(x) − x)"
"""Why γ goes with every gate map: a saturated gate at γ = 0.05 changes the layer's output by 5 % of its effect."""


def layer_gammas(model) -> dict[str, float | None]:
    """γ of every inserted attention by layer label (``"16"``, ``"4.m.0"``); ``None``: no γ, attn(x) applied fully."""
    return {
        label: None if getattr(m, "gamma", None) is None else float(m.gamma.detach())
        for label, m in inserted_attention(model).items()
    }


def gamma_text(key: str, gammas: dict[str, float | None] | None) -> str:
    """``"γ = 0.05"`` for the layer a map's key names (its first word), ``"γ: none (applied fully)"``, or ``""``."""
    if not gammas:
        return ""
    label = key.split(" ", 1)[0]
    if label not in gammas:
        return ""
    g = gammas[label]
    return "γ: none (applied fully)" if g is None else f"γ = {g:.3g}"


def with_gamma(key: str, gammas: dict[str, float | None] | None) -> str:
    """A map's title with its layer's γ (``"16 cbam (spatial), γ = 0.05"``)."""
    text = gamma_text(key, gammas)
    return f"{key}, {text}" if text else key


def normalise(m: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (a constant map becomes 0)."""
    m = np.asarray(m, np.float32)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def overlay(image: np.ndarray, m: np.ndarray, alpha: float = 0.5, cmap: str = CMAP) -> np.ndarray:
    """``m`` (already at the image's H×W) colour-mapped and blended over ``image``: HWC uint8, the image's size."""
    import matplotlib

    if m.shape != image.shape[:2]:
        raise ValueError(f"map {m.shape} must have the image's size {image.shape[:2]}")
    colours = matplotlib.colormaps[cmap](normalise(m))[..., :3] * 255
    return (image * (1 - alpha) + colours * alpha).round().clip(0, 255).astype(np.uint8)


def _boxes(ax, det: Detections) -> None:
    from matplotlib.patches import Rectangle

    for (x1, y1, x2, y2), score, cls in zip(det.boxes, det.scores, det.classes, strict=True):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", linewidth=1.2))
        label = f"{det.names.get(int(cls), int(cls))} {score:.2f}"
        ax.text(x1, y1, label, color="black", fontsize=6, va="bottom", bbox={"color": "lime", "pad": 0.5})


def _map_panel(fig: Figure, ax, image: np.ndarray, m: np.ndarray, title: str, cmap: str = CMAP, vmin=None, vmax=None):
    ax.imshow(image)
    im = ax.imshow(m, cmap=cmap, alpha=0.5, vmin=vmin, vmax=vmax)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _strip(fig: Figure, ax, v: torch.Tensor, title: str) -> None:
    im = ax.imshow(np.asarray(v, np.float32)[None, :], aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    ax.set_title(f"{title}: {v.numel()} channel weights", fontsize=8)
    ax.set_yticks([])
    ax.set_xlabel("channel", fontsize=7)


def image_figure(
    prepared: Prepared,
    det: Detections,
    maps: dict[str, torch.Tensor],
    cam: np.ndarray | None,
    title: str = "",
    gammas: dict[str, float | None] | None = None,
) -> Figure:
    """One image: boxes, every spatial/self-attention map overlaid (colour bar, layer name and γ), the CAM, and one
    strip of channel weights per channel attention (``gammas``: :func:`layer_gammas` of the model)."""
    spatial = {k: v for k, v in maps.items() if v.ndim == 2 and is_spatial(k)}
    channel = {k: v for k, v in maps.items() if v.ndim == 1}
    matrices = {k: v for k, v in maps.items() if v.ndim == 2 and not is_spatial(k)}
    panels = 1 + len(spatial) + len(matrices) + (cam is not None)
    cols = min(4, panels)
    map_rows = math.ceil(panels / cols)
    rows = map_rows + len(channel)
    fig = Figure(figsize=(4 * cols, 3.4 * map_rows + 1.2 * len(channel)), layout="constrained")
    grid = fig.add_gridspec(rows, cols, height_ratios=[3.4] * map_rows + [1.2] * len(channel))
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(prepared.original)
    _boxes(ax, det)
    ax.set_title(f"{prepared.name}: {len(det.boxes)} detections", fontsize=8)
    ax.axis("off")
    items = [(k, prepared.to_original(v.numpy())) for k, v in spatial.items()]
    if cam is not None:
        items.append(("EigenCAM (head inputs)", prepared.to_original(cam)))
    for i, (key, m) in enumerate(items, start=1):
        _map_panel(fig, fig.add_subplot(grid[i // cols, i % cols]), prepared.original, m, with_gamma(key, gammas))
    for i, (key, m) in enumerate(matrices.items(), start=1 + len(items)):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        fig.colorbar(ax.imshow(m.numpy(), cmap="viridis"), ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(with_gamma(key, gammas), fontsize=8)
    for j, (key, v) in enumerate(channel.items()):
        _strip(fig, fig.add_subplot(grid[map_rows + j, :]), v, with_gamma(key, gammas))
    if title or (gammas and maps):
        fig.suptitle("\n".join(t for t in (title, BLEND_NOTE if gammas and maps else "") if t), fontsize=10)
    return fig


def compare_figure(
    prepared: Prepared,
    base: tuple[Detections, np.ndarray | None],
    other: tuple[Detections, np.ndarray | None],
    labels: tuple[str, str] = ("base", "attention"),
) -> Figure:
    """Base and attention model on the same image, same style: boxes, CAMs, and the CAM difference."""
    (bdet, bcam), (odet, ocam) = base, other
    with_cam = bcam is not None and ocam is not None
    fig = Figure(figsize=(4 * (5 if with_cam else 2), 3.6), layout="constrained")
    axes = fig.subplots(1, 5 if with_cam else 2)
    for ax, det, label in ((axes[0], bdet, labels[0]), (axes[1], odet, labels[1])):
        ax.imshow(prepared.original)
        _boxes(ax, det)
        ax.set_title(f"{label}: {len(det.boxes)} detections", fontsize=8)
        ax.axis("off")
    if with_cam:
        b, o = normalise(prepared.to_original(bcam)), normalise(prepared.to_original(ocam))
        _map_panel(fig, axes[2], prepared.original, b, f"{labels[0]} EigenCAM", vmin=0, vmax=1)
        _map_panel(fig, axes[3], prepared.original, o, f"{labels[1]} EigenCAM", vmin=0, vmax=1)
        _map_panel(fig, axes[4], prepared.original, o - b, f"{labels[1]} − {labels[0]}", DIFF_CMAP, -1, 1)
    fig.suptitle(prepared.name, fontsize=10)
    return fig


def comparison_grid(
    rows: list[tuple[Prepared, tuple[Detections, np.ndarray], tuple[Detections, np.ndarray], np.ndarray | None]],
    labels: tuple[str, str],
    map_title: str = "",
) -> Figure:
    """Several images, one row each: base boxes, other boxes, both EigenCAMs, their difference, and the other
    model's first spatial attention map (``rows``: image, base (boxes, CAM), other (boxes, CAM), map or None;
    ``map_title``: which map it is and its layer's γ, from :func:`with_gamma`)."""
    fig = Figure(figsize=(3.2 * 6, 2.6 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 6, squeeze=False)
    for r, (p, (bdet, bcam), (odet, ocam), amap) in enumerate(rows):
        for ax, det, label in ((axes[r, 0], bdet, labels[0]), (axes[r, 1], odet, labels[1])):
            ax.imshow(p.original)
            _boxes(ax, det)
            ax.set_title(f"{label}: {len(det.boxes)} boxes", fontsize=7)
        b, o = normalise(p.to_original(bcam)), normalise(p.to_original(ocam))
        for ax, m, title, cmap, lim in (
            (axes[r, 2], b, f"{labels[0]} CAM", CMAP, (0, 1)),
            (axes[r, 3], o, f"{labels[1]} CAM", CMAP, (0, 1)),
            (axes[r, 4], o - b, "CAM difference", DIFF_CMAP, (-1, 1)),
        ):
            ax.imshow(p.original)
            ax.imshow(m, cmap=cmap, alpha=0.5, vmin=lim[0], vmax=lim[1])
            ax.set_title(title, fontsize=7)
        axes[r, 5].imshow(p.original)
        if amap is not None:
            axes[r, 5].imshow(normalise(p.to_original(amap)), cmap=CMAP, alpha=0.5)
        text = f"{labels[1]} attention" + (f"\n{map_title}" if map_title else "")
        axes[r, 5].set_title(text if amap is not None else "no spatial attention map", fontsize=7)
        for ax in axes[r]:
            ax.axis("off")
    return fig
