"""Model files between formats: an Ultralytics ``.pt`` <-> an attnyolo ``.safetensors`` (CLI ``attnyolo convert``).

Both directions go through the safe loaders of :mod:`attnyolo.checkpoints`: a ``.pt`` is read without running
code from it (unless ``trust=True``), a ``.safetensors`` is rebuilt from its checked architecture YAML. The
``.safetensors`` side is pickle-free; the ``.pt`` side is what Ultralytics loads (``YOLO("x.pt")``), since
Ultralytics does not read ``.safetensors`` models.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from attnyolo.checkpoints import (
    load_checkpoint,
    load_safetensors_model,
    save_safetensors,
    save_ultralytics_checkpoint,
)
from attnyolo.errors import AttnYoloError
from attnyolo.models import checkpoint_model

PT, SAFETENSORS = ".pt", ".safetensors"


class ConvertError(AttnYoloError):
    """A conversion that cannot run: formats not named by the suffixes, or a checkpoint without a model."""


def _model_of(path: Path, ckpt: dict) -> nn.Module:
    net = checkpoint_model(ckpt)
    if net is None or not isinstance(getattr(net, "yaml", None), dict):
        raise ConvertError(
            f"{path}: holds no model with its architecture (a bare state dict?); convert needs a checkpoint saved by "
            "Ultralytics or attnyolo"
        )
    return net


def convert(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    trust: bool = False,
) -> tuple[Path, int]:
    """Convert ``source`` (.pt or .safetensors) into ``output`` (the other format).

    Args:
        source: an Ultralytics ``.pt`` (its ``ema`` model when it has one, as Ultralytics loads it) or an attnyolo
            ``.safetensors``.
        output: the destination; its suffix must be the other format's.
        trust: full pickle load of a ``.pt`` source (only for files whose origin you trust).

    Returns:
        ``(output path, number of tensors written)``.
    """
    source, output = Path(source), Path(output)
    kinds = (source.suffix.lower(), output.suffix.lower())
    if kinds == (PT, SAFETENSORS):
        net = _model_of(source, load_checkpoint(source, trust=trust)).eval()  # dtype kept: fp16 stays fp16
        save_safetensors(net, output)
    elif kinds == (SAFETENSORS, PT):
        net = load_safetensors_model(source)
        save_ultralytics_checkpoint(net, output, {"converted_from": str(source)})
    else:
        raise ConvertError(
            f"convert goes from .pt to .safetensors or back; got {source.name} -> {output.name} (name the files "
            "with those suffixes)"
        )
    return output, len(net.state_dict())
