"""Suite-wide set-up: one torch thread per xdist worker (2 workers on 2 cores), quiet Ultralytics, and
reproducible property tests in CI (Hypothesis profile ``ci``, chosen when ``CI`` is set: derandomized, so every
CI run draws the same examples; locally the examples stay random and keep finding new cases)."""

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import settings

import attnyolo  # noqa: F401  (configures the offline runtime before any test imports Ultralytics)

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def default_data():
    """Path of the embedded dataset's data YAML (unpacked once per session)."""
    from attnyolo.data import default_dataset

    return default_dataset()


def one_class_copy(data, folder):
    """The embedded data as a 1-class dataset (every box labelled class 0, ``cell``): images copied (3.6 MB; a link
    would be resolved by Ultralytics to the original folder and its 3-class labels), labels rewritten, so a 3-class
    base meets a class-count change on real images."""
    src = Path(data).parent
    for split in ("train", "val"):
        shutil.copytree(src / "images" / split, folder / "images" / split)
        labels = folder / "labels" / split
        labels.mkdir(parents=True)
        for txt in (src / "labels" / split).glob("*.txt"):
            rows = [line.split() for line in txt.read_text().splitlines() if line.strip()]
            (labels / txt.name).write_text("".join(" ".join(["0", *r[1:]]) + "\n" for r in rows))
    out = folder / "data.yaml"
    out.write_text(yaml.safe_dump({"path": str(folder), "train": "images/train", "val": "images/val",
                                   "names": {0: "cell"}}))  # fmt: skip
    return out


@pytest.fixture(scope="session")
def one_class_data(default_data, tmp_path_factory):
    return one_class_copy(default_data, tmp_path_factory.mktemp("one-class"))
