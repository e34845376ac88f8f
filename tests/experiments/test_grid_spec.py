"""Grid specs: flags and YAML describe the same grid; labels and run ids; seeds; the baseline always first."""

from __future__ import annotations

import pytest

from attnyolo.cli.ablate import _where
from attnyolo.experiments.grid import GridError, Variant, resolve


def test_flags_and_yaml_resolve_to_the_same_grid(default_data, tmp_path):
    from attnyolo.experiments.driver import load_grid_yaml

    flags = {"data": str(default_data), "model": "yolov8n.yaml", "attention": ["se", "cbam"],
             "where": _where(["neck", "after=C2f", "backbone:after=C2f", "15,18"]), "seeds": 2,
             "recipe": {"epochs": 1}}  # fmt: skip
    grid_yaml = tmp_path / "grid.yaml"
    grid_yaml.write_text(
        f"data: {default_data}\nmodel: yolov8n.yaml\nattention: [se, cbam]\nseeds: [0, 1]\n"
        "where: [neck, {after: C2f}, {where: backbone, after: C2f}, [15, 18]]\nrecipe: {epochs: 1}\n"
    )
    a, b = resolve(flags), resolve(load_grid_yaml(grid_yaml))
    assert a.config() == b.config()
    assert [v.label for v in a.variants] == [
        "baseline", "se@neck", "se@after_C2f", "se@backbone-after_C2f", "se@L15_18",
        "cbam@neck", "cbam@after_C2f", "cbam@backbone-after_C2f", "cbam@L15_18",
    ]  # fmt: skip
    assert [rid for rid, _, _ in a.runs()][:2] == ["baseline-s0", "se@neck-s0"] and len(a.runs()) == 18
    assert resolve(a.config()).config() == a.config()  # the stored config reads back as itself


def test_hparams_are_part_of_the_label_and_duplicates_collapse(default_data):
    grid = resolve({"data": str(default_data), "model": "yolov8n.yaml", "attention": ["se", "se"],
                    "variants": [{"attention": "se", "where": "neck", "hparams": {"rd_ratio": 0.25}}]})  # fmt: skip
    assert [v.label for v in grid.variants] == ["baseline", "se@neck", "se@neck+rd_ratio=0.25"]
    assert Variant().is_baseline and grid.seeds == (0,)


@pytest.mark.parametrize(
    ("seeds", "message"),
    [(0, "count >= 1"), (-1, "count >= 1"), ([], "empty list"), ([0, 0], "repeated"), ([1, -3], ">= 0"),
     ("x", "a count")],
)  # fmt: skip
def test_bad_seeds_are_refused(default_data, seeds, message):
    with pytest.raises(GridError, match=message):
        resolve({"data": str(default_data), "model": "yolov8n.yaml", "attention": ["se"], "seeds": seeds}, check=False)


def test_exactly_one_start_is_required(default_data, tmp_path):
    base = {"data": str(default_data), "attention": ["se"]}
    with pytest.raises(GridError, match="exactly one start"):
        resolve(base, check=False)
    with pytest.raises(GridError, match="does not exist"):
        resolve({**base, "weights": str(tmp_path / "missing.pt")}, check=False)
