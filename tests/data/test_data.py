"""The embedded dataset: complete, valid, loadable by Ultralytics, unpacked safely."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

from attnyolo import data as embedded

SOURCE = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "bccd"
SPLITS = {"train": 205, "val": 87, "test": 72}  # the source README's table


def split_files(root: Path, kind: str, split: str) -> list[str]:
    return sorted(p.name for p in (root / kind / split).iterdir())


@pytest.mark.parametrize("split", SPLITS)
def test_image_and_label_counts_match_the_source_table(default_data, split):
    root = default_data.parent
    assert len(split_files(root, "images", split)) == SPLITS[split]
    assert len(split_files(root, "labels", split)) == SPLITS[split]


@pytest.mark.skipif(not SOURCE.exists(), reason="the BCCD source folder is not beside this checkout")
@pytest.mark.parametrize("split", SPLITS)
def test_files_and_labels_equal_the_source(default_data, split):
    root = default_data.parent
    assert split_files(root, "images", split) == split_files(SOURCE, "images", split)
    for name in split_files(SOURCE, "labels", split):
        assert (root / "labels" / split / name).read_bytes() == (SOURCE / "labels" / split / name).read_bytes()


def test_every_label_row_is_valid(default_data):
    root = default_data.parent
    rows = 0
    for label in root.glob("labels/*/*.txt"):
        for line in label.read_text().splitlines():
            cls, x, y, w, h = line.split()
            x, y, w, h = map(float, (x, y, w, h))
            assert int(cls) in embedded.NAMES, (label, line)
            assert w > 0 and h > 0, (label, line)
            eps = 1e-6
            assert x - w / 2 >= -eps and x + w / 2 <= 1 + eps, (label, line)
            assert y - h / 2 >= -eps and y + h / 2 <= 1 + eps, (label, line)
            rows += 1
    assert rows == 2804 + 1137 + 945  # boxes per split in the source README


def test_images_are_downscaled_rgb_jpegs(default_data):
    for img in (default_data.parent / "images" / "val").iterdir():
        with Image.open(img) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert max(im.size) == 320


def test_ultralytics_checker_accepts_the_yaml(default_data):
    from ultralytics.data.utils import check_det_dataset

    info = check_det_dataset(str(default_data), autodownload=False)
    assert info["nc"] == 3
    assert info["names"] == embedded.NAMES
    assert Path(info["val"]).is_dir()


def test_yaml_uses_an_absolute_path(default_data):
    spec = yaml.safe_load(default_data.read_text())
    assert Path(spec["path"]).is_absolute()
    assert Path(spec["path"]) == default_data.parent


def test_licence_and_credit_travel_with_the_data(default_data):
    assert "MIT License" in (default_data.parent / "LICENSE").read_text()
    with zipfile.ZipFile(embedded.ARCHIVE) as zf:
        assert "bccd/LICENSE" in zf.namelist()


def test_concurrent_first_use_unpacks_once_and_completely(tmp_path):
    env = {**os.environ, "ATTNYOLO_HOME": str(tmp_path / "home")}
    code = "from attnyolo.data import default_dataset; print(default_dataset())"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env) for _ in range(3)
    ]
    paths = {p.communicate(timeout=300)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(paths) == 1
    root = Path(paths.pop()).parent
    assert len(list(root.glob("images/*/*.jpg"))) == sum(SPLITS.values())
    leftovers = [p.name for p in root.parent.iterdir() if p.name.startswith(".bccd-")]
    assert leftovers == []


def test_cli_prints_the_data_yaml_path(default_data):
    exe = Path(sys.executable).with_name("attnyolo")
    out = subprocess.run([exe, "data", "default"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert Path(out.stdout.strip()) == default_data


def test_data_default_prints_only_the_path_on_a_first_run(tmp_path):
    """``D=$(attnyolo data default)`` (README) in a fresh cache: Ultralytics' first-run settings notice must not
    reach stdout."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "ATTNYOLO_HOME": str(tmp_path / "home")}
    env.pop("YOLO_CONFIG_DIR", None)
    out = subprocess.run(
        [Path(sys.executable).with_name("attnyolo"), "data", "default"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and Path(lines[0]).is_file(), out.stdout
    assert "Creating new Ultralytics Settings" in out.stderr  # the notice is still shown, on stderr
