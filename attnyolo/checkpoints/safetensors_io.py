"""The safetensors side: a validated header, its metadata, the tensors, and the pickle-free model export."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
import yaml

from attnyolo._version import __version__
from attnyolo.atomic import write_atomically
from attnyolo.checkpoints.errors import CheckpointError
from attnyolo.checkpoints.sniff import check_file
from attnyolo.models import unwrap

FORMAT = "attnyolo.model"
"""``format`` value in the metadata of files written by :func:`save_safetensors`."""


def read_header(path: Path, size: int) -> dict[str, Any]:
    """Parse and validate a safetensors header, so a damaged file fails with a message instead of a Rust error."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: corrupt safetensors file: {size} bytes, too short for a header")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise CheckpointError(
                f"{path}: corrupt or truncated safetensors file: the header claims {n} bytes but the file has only "
                f"{size - 8} after the length field"
            )
        text = f.read(n)
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors header: not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header: a JSON {type(header).__name__}, not an object")
    data_len, end = size - 8 - n, 0
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise CheckpointError(f"{path}: corrupt safetensors header: __metadata__ must map strings to strings")
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointError(f"{path}: corrupt safetensors header: tensor {name!r} has no valid data_offsets")
        end = max(end, offsets[1])
    if end > data_len:
        raise CheckpointError(
            f"{path}: truncated safetensors file: tensor data needs {end} bytes but the file holds {data_len}"
        )
    return header


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file (validated header; tensors are not read)."""
    path = Path(path)
    size = check_file(path)
    return dict(read_header(path, size).get("__metadata__", {}))


def safetensors_model_yaml(path: str | os.PathLike) -> Any:
    """The architecture :func:`save_safetensors` stored in a file's metadata (``model_yaml``, parsed), or ``None``
    when the file has none. Not checked: :func:`attnyolo.checkpoints.check_model_yaml` does that before a build.

    Raises:
        CheckpointError: a damaged file or a ``model_yaml`` that is not valid YAML.
    """
    meta = safetensors_metadata(path)
    if "model_yaml" not in meta:
        return None
    try:
        return yaml.safe_load(meta["model_yaml"])
    except yaml.YAMLError as e:
        raise CheckpointError(f"{path}: corrupt model_yaml in the safetensors metadata ({e})") from e


def read_tensors(path: Path, size: int) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    read_header(path, size)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({e})") from e


def save_safetensors(model: Any, path: str | os.PathLike, *, half: bool = False) -> Path:
    """Save a model as ``.safetensors``: its tensors plus, in the metadata, everything needed to rebuild it.

    Metadata: ``format`` (``attnyolo.model``), ``attnyolo_version``, ``model_yaml`` (the Ultralytics
    ``model.yaml`` dict, edited architecture included, as YAML text so integer keys survive), ``task``, ``nc``,
    ``names`` (JSON) and ``fused``. The file is written to a temporary name and renamed, so a crash never leaves
    a half-written model behind.

    Args:
        model: an Ultralytics model (``DetectionModel``...) or ``YOLO`` object built from a YAML.
        path: destination; ``.safetensors`` is the expected suffix.
        half: store floating-point tensors as fp16 (half the size; :func:`load_safetensors_model` then returns an
            fp16 model, ``.float()`` it to train). Integer tensors (BatchNorm's counters) keep their dtype.

    Returns:
        The path written.
    """
    from safetensors.torch import save_file
    from ultralytics.nn.tasks import guess_model_task

    net = unwrap(model)
    cfg = getattr(net, "yaml", None)
    if not isinstance(cfg, dict):
        raise CheckpointError(
            f"{path}: cannot export a {type(net).__name__} without an Ultralytics model YAML (model.yaml); only "
            "models built from a YAML can be rebuilt from the file"
        )
    names = getattr(net, "names", None) or {}
    metadata = {
        "format": FORMAT,
        "attnyolo_version": __version__,
        "model_yaml": yaml.safe_dump(cfg, sort_keys=False),
        "task": str(guess_model_task(cfg) or "detect"),
        "nc": str(cfg.get("nc", len(names))),
        "names": json.dumps({str(k): str(v) for k, v in dict(names).items()}),
        "fused": json.dumps(bool(getattr(net, "is_fused", lambda: False)())),
    }
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    return write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
