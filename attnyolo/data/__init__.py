"""The embedded default dataset: BCCD (blood-cell detection, 3 classes, 364 images, MIT licence).

It ships inside the package as ``bccd.zip`` (images downscaled to 320 px on the long side; built by
``scripts/build_embedded_dataset.py``) and is unpacked on first use into attnyolo's cache folder as an
Ultralytics dataset with an absolute-path data YAML. Nothing is downloaded. Credit: Shenggan,
BCCD_Dataset (MIT); the licence travels inside the zip and the unpacked folder.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import yaml

from attnyolo.runtime import cache_dir

ARCHIVE = Path(__file__).with_name("bccd.zip")
NAMES = {0: "RBC", 1: "WBC", 2: "Platelets"}
SPLITS = ("train", "val", "test")


@functools.cache  # the archive is read-only package data: hash its 3.8 MB once per process
def _archive_digest() -> str:
    return hashlib.sha256(ARCHIVE.read_bytes()).hexdigest()[:12]


def default_dataset_dir() -> Path:
    """Folder the embedded dataset unpacks to (keyed on the archive's hash, so an update re-unpacks)."""
    return cache_dir() / "datasets" / f"bccd-{_archive_digest()}"


def default_dataset() -> Path:
    """Path of the embedded dataset's Ultralytics data YAML, unpacking it on first use.

    Unpacking goes to a temporary sibling folder that is renamed into place, so concurrent callers
    (pytest workers, parallel runs) and interrupted runs never see a half-written dataset.
    """
    target = default_dataset_dir()
    data_yaml = target / "data.yaml"
    if data_yaml.exists():
        return data_yaml
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bccd-", dir=target.parent))
    try:
        with zipfile.ZipFile(ARCHIVE) as zf:
            zf.extractall(tmp)
        root = tmp / "bccd"
        spec = {"path": str(target), **{s: f"images/{s}" for s in SPLITS}, "names": dict(NAMES)}
        (root / "data.yaml").write_text(
            "# attnyolo's embedded default dataset (BCCD, MIT licence: see LICENSE)\n" + yaml.safe_dump(spec)
        )
        try:
            os.rename(root, target)
        except OSError:
            if not data_yaml.exists():  # lost a race with another process: theirs is complete
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return data_yaml
