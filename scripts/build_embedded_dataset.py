"""Build ``attnyolo/data/bccd.zip``, the embedded default dataset, from the BCCD source folder.

Developer tool, run once when the source changes (the package never reads the source at run time):

    .venv/bin/python scripts/build_embedded_dataset.py ../shared/datasets/bccd

Images are downscaled to ``--long-side`` pixels (labels are normalised, so they carry over unchanged)
and re-encoded as JPEG; the zip is written with fixed timestamps so the same source gives the same bytes.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

from PIL import Image

SPLITS = ("train", "val", "test")
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def build(source: Path, out: Path, long_side: int, quality: int) -> None:
    with zipfile.ZipFile(out, "w") as zf:
        for name in ("LICENSE", "README.md"):
            _add(zf, f"bccd/{name}", (source / name).read_bytes())
        for split in SPLITS:
            for img_path in sorted((source / "images" / split).glob("*.jpg")):
                im = Image.open(img_path).convert("RGB")
                scale = long_side / max(im.size)
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=quality, optimize=True)
                _add(zf, f"bccd/images/{split}/{img_path.name}", buf.getvalue())
                label = source / "labels" / split / f"{img_path.stem}.txt"
                _add(zf, f"bccd/labels/{split}/{label.name}", label.read_bytes())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "attnyolo" / "data" / "bccd.zip")
    parser.add_argument("--long-side", type=int, default=320)
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args()
    build(args.source, args.out, args.long_side, args.quality)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
