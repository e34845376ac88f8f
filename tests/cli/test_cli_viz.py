"""``attnyolo viz`` on a model fine-tuned one epoch on the embedded data: PNGs, overlays at the image's size,
a self-contained index.html, --compare, and one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnyolo.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory, default_data):
    """``(base best.pt, cbam fine-tune run folder)``: one epoch each at 64 px on 5 % of the embedded data."""
    from ultralytics import YOLO

    import attnyolo

    root = tmp_path_factory.mktemp("viz-models")
    args = dict(epochs=1, imgsz=64, fraction=0.05, workers=0, device="cpu", plots=False, val=False, verbose=False)
    YOLO("yolov8n.yaml").train(data=str(default_data), project=str(root), name="base", **args)
    base = root / "base" / "weights" / "best.pt"
    run = attnyolo.finetune(base, "cbam", "neck", default_data, project=str(root), name="cbam", **args)
    return base, run.save_dir


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()  # raises on a damaged PNG
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_viz_writes_pictures_overlays_and_a_self_contained_index(models, val_images, tmp_path, capsys):
    _, run = models
    out = tmp_path / "viz"
    assert main(["viz", str(run), *map(str, val_images), "--out", str(out), "--imgsz", "96"]) == 0
    pictures = sorted(out.glob("*.png"))
    assert [p.stem for p in pictures] == sorted(p.stem for p in val_images)
    for p in pictures:
        _png_size(p)
    for image in val_images:
        w, h = Image.open(image).size
        overlays = sorted((out / "overlays").glob(f"{image.stem}__*.png"))
        names = {p.stem.split("__")[1] for p in overlays}
        assert names == {"16_cbam_spatial", "20_cbam_spatial", "24_cbam_spatial", "eigencam"}
        assert all(_png_size(p) == (w, h) for p in overlays)
    index = (out / "index.html").read_text()
    assert "http://" not in index and "https://" not in index and "<script" not in index  # opens offline
    inlined = re.findall(r'src="data:image/png;base64,', index)
    assert len(inlined) == len(pictures) + len(list((out / "overlays").glob("*.png")))
    assert "open " in capsys.readouterr().out


def test_compare_writes_one_side_by_side_png_per_image(models, val_images, tmp_path):
    base, run = models
    out = tmp_path / "cmp"
    args = ["viz", str(run), *map(str, val_images), "--out", str(out), "--compare", str(base), "--imgsz", "96"]
    assert main(args) == 0
    comparisons = sorted(out.glob("*_compare.png"))
    assert [p.stem for p in comparisons] == sorted(f"{p.stem}_compare" for p in val_images)
    width, height = _png_size(comparisons[0])
    assert width > 4 * height  # five panels side by side: boxes, boxes, CAM, CAM, difference


def test_a_model_without_attention_still_gets_its_cam(models, val_images, tmp_path, capsys):
    base, _ = models
    out = tmp_path / "base"
    assert main(["viz", str(base), str(val_images[0]), "--out", str(out), "--imgsz", "96"]) == 0
    assert "holds no inserted attention" in capsys.readouterr().out
    assert [p.stem.split("__")[1] for p in (out / "overlays").glob("*.png")] == ["eigencam"]
    cam = np.asarray(Image.open(next((out / "overlays").glob("*.png"))))
    assert cam.std() > 0


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing image", r"nope\.jpg: no such file"),
        ("bad layer", r"layer\(s\) \['7'\] hold no inserted attention; layers that do: \['16', '20', '24'\]"),
        ("unwritable out", r"output folder .*: cannot write there"),
        ("missing model", r"no such file or run folder"),
    ],
)
def test_bad_input_is_one_line_naming_it(models, val_images, tmp_path, capsys, case, message):
    _, run = models
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = {
        "missing image": [str(run), str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")],
        "bad layer": [str(run), str(val_images[0]), "--out", str(tmp_path / "o"), "--layers", "7"],
        "unwritable out": [str(run), str(val_images[0]), "--out", str(blocker / "sub")],
        "missing model": [str(tmp_path / "none.pt"), str(val_images[0]), "--out", str(tmp_path / "o")],
    }[case]
    assert main(["viz", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
