"""Images in, model input out: a path, an HWC uint8 RGB array or a BCHW float tensor, letterboxed like Ultralytics.

The letterbox (resize keeping the aspect ratio, pad to a multiple of the stride) is Ultralytics' own
``LetterBox``, so the detector sees exactly what ``predict`` would give it; :class:`Prepared` keeps what is
needed to map boxes and maps back onto the original image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnyolo.viz.errors import VizError


@dataclass
class Prepared:
    """One image ready for the model.

    Attributes:
        original: the image as given, HWC uint8 RGB.
        tensor: ``(1, 3, h, w)`` float in [0, 1], letterboxed.
        ratio_pad: ``((gain, gain), (pad_w, pad_h))`` as Ultralytics' ``scale_boxes`` takes it.
        name: a label for the image (file name, or ``image<i>``).
    """

    original: np.ndarray
    tensor: torch.Tensor
    ratio_pad: tuple
    name: str

    def to_original(self, m: np.ndarray) -> np.ndarray:
        """A map over the letterboxed input (any size) as a map over the original image (its H×W)."""
        import cv2

        h, w = self.tensor.shape[-2:]
        m = cv2.resize(np.asarray(m, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        (gain, _), (pw, ph) = self.ratio_pad
        oh, ow = self.original.shape[:2]
        top, left = int(round(ph - 0.1)), int(round(pw - 0.1))
        crop = m[top : top + int(round(oh * gain)), left : left + int(round(ow * gain))]
        return cv2.resize(crop, (ow, oh), interpolation=cv2.INTER_LINEAR)


def load_image(image: Any) -> tuple[np.ndarray, str]:
    """An HWC uint8 RGB array and a name, from a path or an array; a clear error for anything else."""
    if isinstance(image, str | Path):
        path = Path(image)
        if not path.is_file():
            raise VizError(f"image {path}: no such file")
        import cv2

        # cv2, not PIL: Ultralytics patches PIL.Image.open to pip-install a HEIF plugin on unknown files
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise VizError(f"image {path}: not a readable image (JPEG, PNG, BMP, TIFF, WebP ...)")
        return np.ascontiguousarray(bgr[..., ::-1]), path.name
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise VizError(f"image array must be HWC uint8 RGB, got shape {image.shape} dtype {image.dtype}")
        return image, "image"
    raise VizError(f"image must be a path, an HWC uint8 array or a BCHW tensor, got {type(image).__name__}")


def prepare(image: Any, imgsz: int = 320, stride: int = 32) -> Prepared:
    """Letterbox ``image`` to ``imgsz`` (its long side), padded to a multiple of ``stride``."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 4 or image.shape[:2] != (1, 3) or not image.is_floating_point():
            raise VizError(f"image tensor must be a float (1, 3, H, W) batch in [0, 1], got {tuple(image.shape)}")
        arr = (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
        h, w = arr.shape[:2]
        return Prepared(arr, image.float(), ((1.0, 1.0), (0.0, 0.0)), "tensor")
    arr, name = load_image(image)
    from ultralytics.data.augment import LetterBox

    h0, w0 = arr.shape[:2]
    gain = min(imgsz / h0, imgsz / w0)
    boxed = LetterBox((imgsz, imgsz), auto=True, stride=stride)(image=arr)
    h1, w1 = boxed.shape[:2]
    pad = ((w1 - round(w0 * gain)) / 2, (h1 - round(h0 * gain)) / 2)
    tensor = torch.from_numpy(np.ascontiguousarray(boxed)).permute(2, 0, 1)[None].float() / 255
    return Prepared(arr, tensor, ((gain, gain), pad), name)
