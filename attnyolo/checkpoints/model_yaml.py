"""What a checkpoint says about its model: the architecture (Ultralytics model YAML dict) and the class names.

One reader for every user (fine-tuning, the grid, ``attnyolo transfer``), so a ``.pt`` and an attnyolo
``.safetensors`` give the same answer: a ``.pt`` carries them on its model (``ema``, else ``model``: ``.yaml`` and
``.names``), a ``.safetensors`` written by :func:`attnyolo.save_safetensors` in its header metadata (``model_yaml``
and ``names``, JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnyolo.checkpoints.loading import load_checkpoint
from attnyolo.checkpoints.safetensors_io import safetensors_metadata, safetensors_model_yaml
from attnyolo.checkpoints.sniff import looks_like_safetensors, read_head
from attnyolo.models import checkpoint_model


@dataclass(frozen=True)
class Architecture:
    """A checkpoint's architecture and class names (each ``None`` when the file does not carry it).

    Attributes:
        cfg: the Ultralytics model YAML dict (a copy; not checked: :func:`attnyolo.checkpoints.check_model_yaml`
            does that before anything builds it).
        names: ``{class index: name}``.
    """

    cfg: dict | None
    names: dict | None

    @property
    def nc(self) -> int | None:
        """The class count: the YAML's ``nc``, else the number of names."""
        nc = self.cfg.get("nc") if self.cfg else None
        if isinstance(nc, int) and not isinstance(nc, bool):
            return nc
        return len(self.names) if self.names else None


def _as_names(names: Any) -> dict | None:
    if not isinstance(names, Mapping) or not names:
        return None
    try:
        return {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError):
        return None


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    try:
        return looks_like_safetensors(read_head(path), path.stat().st_size)
    except OSError:
        return False


def _safetensors_names(path: Path) -> dict | None:
    try:
        return _as_names(json.loads(safetensors_metadata(path).get("names", "{}")))
    except ValueError:  # names that are not JSON: the file still holds its tensors and architecture
        return None


def architecture(
    source: str | os.PathLike | Mapping[str, Any], *, path: str | os.PathLike | None = None, trust: bool = False
) -> Architecture:
    """The architecture and class names of a checkpoint.

    Args:
        source: a checkpoint path (``.pt`` or ``.safetensors``; loaded safely, see :func:`load_checkpoint`) or a
            checkpoint dict already loaded (then ``path`` names the file it came from, for a ``.safetensors``'s
            metadata, which a loaded state dict no longer has).
        path: the file ``source`` was loaded from, when ``source`` is a dict.
        trust: full pickle load of a ``.pt`` path (only for files whose origin you trust).

    Raises:
        CheckpointError: a file that cannot be loaded safely, or a ``.safetensors`` with a corrupt ``model_yaml``.
    """
    if isinstance(source, Mapping):
        ckpt, file = source, Path(path) if path is not None else None
    else:
        file = Path(source)
        ckpt = None if _is_safetensors(file) else load_checkpoint(file, trust=trust)
    net = checkpoint_model(ckpt) if ckpt is not None else None
    if net is not None:
        cfg = getattr(net, "yaml", None)
        return Architecture(dict(cfg) if isinstance(cfg, Mapping) else None, _as_names(getattr(net, "names", None)))
    if file is not None and file.is_file() and _is_safetensors(file):
        cfg = safetensors_model_yaml(file)
        return Architecture(dict(cfg) if isinstance(cfg, Mapping) else None, _safetensors_names(file))
    return Architecture(None, None)
