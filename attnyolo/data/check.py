"""Checking a user's data YAML before any training starts, with one-line errors: the YAML (:func:`check_data`)
and the images and labels it points to (:func:`scan_data`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from attnyolo.errors import DataError


def check_data(data: str | Path) -> dict:
    """Validate an Ultralytics detection data YAML and return Ultralytics' resolved dataset dict.

    Raises:
        DataError: the file is missing, unreadable, not YAML, not a mapping, lacks ``train``/``val``/
            ``names``, or Ultralytics' checker rejects it (e.g. the image folders do not exist).
    """
    path = Path(data)
    if not path.is_file():
        raise DataError(f"data YAML {str(path)!r} does not exist")
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"data YAML {str(path)!r} cannot be read: {e}") from None
    except yaml.YAMLError as e:
        raise DataError(f"data YAML {str(path)!r} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(content, dict):
        raise DataError(f"data YAML {str(path)!r} must be a mapping with train, val and names keys")
    missing = [k for k in ("train", "val") if k not in content] + (
        [] if "names" in content or "nc" in content else ["names"]
    )
    if missing:
        raise DataError(f"data YAML {str(path)!r} lacks {', '.join(missing)}")
    from ultralytics.data.utils import check_det_dataset

    try:
        return check_det_dataset(str(path), autodownload=False)
    except (FileNotFoundError, SyntaxError, ValueError, KeyError) as e:
        raise DataError(f"data YAML {str(path)!r} rejected: {' '.join(str(e).split())}") from None


# ------------------------------------------------------------------------------------- images and labels, per split


@dataclass
class SplitReport:
    """What :func:`scan_data` found in one split.

    Attributes:
        split: ``train``, ``val`` or ``test``.
        images: image files found.
        labels: images that have a label file (an empty file is a labelled background image).
        instances: label rows (boxes or polygons) over all label files.
        unlabelled: images without a label file (Ultralytics trains on them as background).
    """

    split: str
    images: int = 0
    labels: int = 0
    instances: int = 0
    unlabelled: list[Path] = field(default_factory=list)


def split_images(source: Any) -> list[Path]:
    """Image files of a split given as Ultralytics resolves it: a folder, a ``.txt`` list of images, or a list."""
    from ultralytics.data.utils import IMG_FORMATS

    sources = source if isinstance(source, (list, tuple)) else [source]
    out: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix[1:].lower() in IMG_FORMATS and f.is_file())
        elif p.is_file() and p.suffix == ".txt":
            lines = [x.strip() for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
            out += [(p.parent / x[2:]) if x.startswith("./") else Path(x) for x in lines]
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{source}: no such folder or image list")
    return out


def _check_image(image: Path) -> None:
    from PIL import Image

    if not image.is_file():
        raise DataError(f"image {image} is listed but does not exist")
    try:
        with Image.open(image) as im:
            im.verify()  # reads the file through without decoding every pixel
            if min(im.size) < 1:
                raise DataError(f"image {image} has size {im.size}")
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"image {image} cannot be read as an image ({e})") from None
    except ImportError:  # Ultralytics' Image.open falls back to a HEIF reader for any unidentified file
        raise DataError(f"image {image} cannot be read as an image (unidentified format)") from None


def _label_rows(label: Path, nc: int) -> int:
    """Check a label file (``class x y w h`` boxes or ``class x1 y1 x2 y2 ...`` polygons, normalised) and count
    its rows; raise :class:`DataError` naming the file and line of the first bad row."""
    eps = 1e-6
    rows = 0
    for n, line in enumerate(label.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"label {label}:{n}"
        fields = line.split()
        try:
            cls, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            raise DataError(f"{where}: {line.strip()!r} is not 'class x y w h' with numbers") from None
        if not 0 <= cls < nc:
            raise DataError(f"{where}: class {cls} is outside 0..{nc - 1} (the data YAML names {nc} classes)")
        if len(values) == 4:
            x, y, w, h = values
            if w <= 0 or h <= 0 or x - w / 2 < -eps or x + w / 2 > 1 + eps or y - h / 2 < -eps or y + h / 2 > 1 + eps:
                raise DataError(f"{where}: box {values} is not inside the image (x y w h normalised to 0..1)")
        elif len(values) >= 6 and len(values) % 2 == 0:
            if any(not -eps <= v <= 1 + eps for v in values):
                raise DataError(f"{where}: polygon point outside 0..1 (coordinates are normalised)")
        else:
            raise DataError(f"{where}: {len(fields)} values; a row is 'class x y w h' or a polygon 'class x1 y1 ...'")
        rows += 1
    return rows


def scan_data(data: str | Path) -> tuple[dict, list[SplitReport]]:
    """Check a detection data YAML and every image and label it points to; count them per split.

    Runs :func:`check_data` first, then for each of ``train``, ``val``, ``test`` (when present): every image
    exists and reads as an image, every label file parses (class within the YAML's names, boxes inside the
    image), the labels are found where Ultralytics looks for them (``.../images/x.jpg`` -> ``.../labels/x.txt``).

    Returns:
        ``(Ultralytics' resolved dataset dict, one SplitReport per split)``.

    Raises:
        DataError: anything :func:`check_data` refuses, a split without images, a split whose labels folder is
            missing, an unreadable image, or a bad label row (file and line named).
    """
    from ultralytics.data.utils import img2label_paths

    info = check_data(data)
    nc = int(info["nc"])
    reports = []
    for split in ("train", "val", "test"):
        if not info.get(split):
            continue
        images = split_images(info[split])
        if not images:
            raise DataError(f"{split}: no images in {info[split]}")
        report = SplitReport(split, images=len(images))
        labels = [Path(p) for p in img2label_paths(images)]
        if not any(p.parent.is_dir() for p in labels):
            raise DataError(
                f"{split}: no labels folder {labels[0].parent} (Ultralytics reads the labels of .../images/x.jpg "
                "from .../labels/x.txt)"
            )
        for image, label in zip(images, labels, strict=True):
            _check_image(image)
            if label.is_file():
                report.labels += 1
                report.instances += _label_rows(label, nc)
            else:
                report.unlabelled.append(image)
        reports.append(report)
    return info, reports
