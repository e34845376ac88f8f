"""The report's gallery: a few validation images, the baseline against each variant, drawn by :mod:`attnyolo.viz`.

One figure per variant (its run of the baseline's first seed): per image the two models' boxes, their EigenCAMs,
the CAM difference and the variant's first spatial attention map. Drawn only when the runs' ``best.pt`` and the
data's validation images are on disk; otherwise the report says why it has no gallery.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from attnyolo.report.analysis import Analysis


def _best(folder: Path, run: dict) -> Path | None:
    run_dir = Path(run.get("run_dir") or "")
    run_dir = run_dir if os.path.isabs(run_dir) else folder / run_dir
    best = run_dir / "weights" / "best.pt"
    return best if best.is_file() else None


def _val_images(data: str, n: int) -> list[Path]:
    from attnyolo.data.check import check_data, split_images

    return sorted(split_images(check_data(data)["val"]))[:n]  # a folder, an image list or a list, as Ultralytics


def gallery_figures(a: Analysis, images: int = 4, imgsz: int | None = None) -> tuple[dict[str, bytes], str]:
    """``({"gallery-<variant>": png}, note)``: the figures, or none and the reason in ``note``."""
    from attnyolo.errors import AttnYoloError
    from attnyolo.experiments.store import ResultsStore
    from attnyolo.viz.gallery import comparison_figures
    from attnyolo.viz.models import load_model

    config = a.grid.get("config", {})
    store = ResultsStore(a.folder)
    try:
        runs = store.runs("done")
    finally:
        store.close()
    base_runs = sorted((r for r in runs if r["is_baseline"]), key=lambda r: r["seed"])
    if not base_runs:
        return {}, "no finished baseline run"
    seed = base_runs[0]["seed"]
    base_pt = _best(a.folder, base_runs[0])
    others = {r["variant"]: _best(a.folder, r) for r in runs if not r["is_baseline"] and r["seed"] == seed}
    if base_pt is None or not others or None in others.values():
        return {}, "the runs' weights/best.pt are not on disk"
    try:
        pictures = _val_images(str(config.get("data", "")), images)
    except AttnYoloError as e:
        return {}, f"the validation images cannot be read ({e})"
    if not pictures:
        return {}, "the data has no validation images"
    size = imgsz or int(config.get("recipe", {}).get("imgsz", 320))
    figures = comparison_figures(
        load_model(base_pt), {v: load_model(p) for v, p in others.items()}, pictures, size, base_label="baseline"
    )
    out = {}
    for variant, fig in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=60)  # a photo grid: small enough to inline a few in report.html
        out[f"gallery-{variant}"] = buf.getvalue()
    return out, f"seed {seed}, {len(pictures)} validation images"
