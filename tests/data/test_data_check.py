"""`attnyolo data check` reads every image and label, counts them per split, and fails on what would break training."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from attnyolo.cli import main
from attnyolo.data.check import scan_data
from attnyolo.errors import DataError

BCCD = {"train": (205, 2804), "val": (87, 1137), "test": (72, 945)}  # images and boxes: the source README's table


def make_data(root: Path, labels: dict[str, str | None], *, labels_folder: bool = True) -> Path:
    """A one-class data set whose train and val splits hold ``labels``: image name -> label text (None: no file)."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        if labels_folder:
            (root / "labels" / split).mkdir(parents=True)
        for name, text in labels.items():
            Image.new("RGB", (16, 12), (split == "val") * 255).save(root / "images" / split / name)
            if text is not None and labels_folder:
                (root / "labels" / split / name).with_suffix(".txt").write_text(text, encoding="utf-8")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: {{0: cell}}\n", encoding="utf-8")
    return data


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main(["data", "check", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _rows(out: str) -> dict[str, list[int]]:
    return {c[0]: [int(x) for x in c[1:]] for line in out.splitlines() if (c := line.split()) and c[0] in BCCD}


def test_the_embedded_data_counts_match_the_source_table(capsys, default_data):
    rc, out, err = run(capsys, f"data={default_data}")  # Ultralytics' spelling is accepted too
    assert rc == 0 and err == ""
    assert _rows(out) == {s: [n, n, boxes, 0] for s, (n, boxes) in BCCD.items()}


def test_images_without_labels_are_counted_and_warned_about(capsys, tmp_path):
    data = make_data(tmp_path, {"a.jpg": "0 0.5 0.5 0.2 0.2\n0 0.3 0.3 0.1 0.1\n", "b.jpg": "", "c.png": None})
    rc, out, err = run(capsys, data)
    assert rc == 0
    assert _rows(out) == {"train": [3, 2, 2, 1], "val": [3, 2, 2, 1]}
    assert err.splitlines() == [
        f"warning: {s}: 1 of 3 images have no label file (c.png); Ultralytics trains on them as background"
        for s in ("train", "val")
    ]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"a.jpg": "1 0.5 0.5 0.2 0.2\n"}, "a.txt:1: class 1 is outside 0..0"),
        ({"a.jpg": "0 0.5 0.5 0.2 0.2\n0 0.9 0.5 0.4 0.2\n"}, "a.txt:2: box [0.9, 0.5, 0.4, 0.2] is not inside"),
        ({"a.jpg": "0 0.5 0.5 0.2\n"}, "a.txt:1: 4 values"),
        ({"a.jpg": "cell 0.5 0.5 0.2 0.2\n"}, "a.txt:1: 'cell 0.5 0.5 0.2 0.2' is not 'class x y w h'"),
    ],
)
def test_a_bad_label_row_is_one_line_naming_file_and_line(capsys, tmp_path, labels, message):
    rc, out, err = run(capsys, make_data(tmp_path, labels))
    assert rc == 2 and err.count("\n") == 1 and err.startswith("attnyolo: error: label ")
    assert message in err and str(tmp_path / "labels" / "train") in err


def test_a_missing_labels_folder_fails_in_one_line(capsys, tmp_path):
    rc, _, err = run(capsys, make_data(tmp_path, {"a.jpg": "0 0.5 0.5 0.2 0.2\n"}, labels_folder=False))
    assert rc == 2
    folder = tmp_path / "labels" / "train"
    assert err.startswith(f"attnyolo: error: train: no labels folder {folder} (Ultralytics reads the labels of ")
    assert err.count("\n") == 1


def test_an_image_that_is_not_an_image_is_refused(tmp_path):
    data = make_data(tmp_path, {"a.jpg": "0 0.5 0.5 0.2 0.2\n"})
    (tmp_path / "images" / "val" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"images/val/a\.jpg cannot be read as an image"):
        scan_data(data)
