"""What kind of file a path holds, from its first bytes, before any loader touches it."""

from __future__ import annotations

import struct
from pathlib import Path

from attnyolo.checkpoints.errors import CheckpointError

ZIP_MAGIC = b"PK\x03\x04"
"""First bytes of a zip archive: every ``torch.save`` file since torch 1.6."""


EXPECTED = "expected a .pt (torch.save zip archive) or a .safetensors file"

# Formats recognised by their first bytes, so a wrong file is named instead of dumped as hex.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5 weights?)"),
    (b"\x1f\x8b", "a gzip archive (unpack it first)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive (unpack it first)"),
    (b"%PDF", "a PDF document"),
)
_TEXT_LIMIT = 1 << 20  # read at most this much of a text file to tell a model YAML from other text


def check_file(path: Path) -> int:
    """The size of ``path`` after checking that it is a non-empty file (a model YAML given instead is named)."""
    if not path.exists():
        shipped = _shipped_model_yaml(path)
        if shipped is not None:
            raise CheckpointError(
                f"{path}: a model YAML (shipped with Ultralytics as {shipped.name}), not a checkpoint: it holds an "
                f"architecture and no weights; {EXPECTED} (attnyolo.build({path.name!r}) builds the untrained model)"
            )
        raise CheckpointError(f"{path}: file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file (a checkpoint is a .pt or .safetensors file)")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); re-download or re-export it")
    return size


def _shipped_model_yaml(path: Path) -> Path | None:
    """The Ultralytics model YAML a missing ``yolov8n.yaml``-like path names, if any."""
    if path.suffix not in {".yaml", ".yml"} or path.parent != Path("."):
        return None
    from attnyolo.graph.errors import ModelYAMLError
    from attnyolo.graph.yaml_io import resolve_name

    try:
        return resolve_name(path.name)
    except ModelYAMLError:
        return None


def read_head(path: Path, n: int = 64) -> bytes:
    """The first ``n`` bytes of ``path``."""
    with open(path, "rb") as f:
        return f.read(n)


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """True when ``head`` starts like a safetensors file (an 8-byte header length, then a JSON object)."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _looks_like_onnx(path: Path, head: bytes) -> bool:
    # an ONNX ModelProto starts with field 1 (ir_version, varint: 0x08) then field 2 (producer_name: 0x12)
    return path.suffix == ".onnx" or (head[:1] == b"\x08" and head[2:3] == b"\x12")


def _text_kind(path: Path) -> str | None:
    """``a model YAML`` / ``a data YAML`` / ``a JSON file`` for a text file that parses as one, else ``None``."""
    import json

    import yaml

    if path.stat().st_size > _TEXT_LIMIT:
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        value = json.loads(text)
        return "a JSON file" if isinstance(value, (dict, list)) else None
    except ValueError:
        pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if isinstance(value, dict) and "backbone" in value and "head" in value:
        return (
            "a model YAML: it holds an architecture and no weights (attnyolo.build() builds the untrained model; "
            "attnyolo transfer EDITED.yaml BASE.pt fills it with a checkpoint's weights)"
        )
    if isinstance(value, dict) and ("train" in value or "val" in value) and "names" in value:
        return "a data YAML (a data set description, given where a checkpoint is expected)"
    return None


def unrecognised(path: Path, head: bytes) -> CheckpointError:
    """The error for a file that is neither a ``torch.save`` archive, a safetensors file nor a pickle: it names
    the format when it is a known one (ONNX, an image, a model or data YAML, ...), else the first bytes."""
    if _looks_like_onnx(path, head):
        return CheckpointError(
            f"{path}: not a checkpoint but an ONNX model (an export for inference: run it with onnxruntime or "
            f"YOLO({path.name!r})); {EXPECTED}"
        )
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return CheckpointError(f"{path}: not a checkpoint but {kind}; {EXPECTED}")
    decoded = None
    for cut in range(4):  # the 64-byte head may end inside a multi-byte character
        try:
            decoded = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if decoded and decoded.strip() and all(c.isprintable() or c in "\t\r\n" for c in decoded):
        kind = _text_kind(path)
        if kind is not None:
            return CheckpointError(f"{path}: not a checkpoint but {kind}; {EXPECTED}")
        first = decoded.strip().splitlines()[0]
        return CheckpointError(f"{path}: not a checkpoint but a text file (starts with {first[:40]!r}); {EXPECTED}")
    return CheckpointError(
        f"{path}: not a checkpoint (unrecognised format, first bytes {head[:8].hex(' ')}); {EXPECTED}. Recognised "
        "formats: torch.save archives, safetensors, pickles, TorchScript, ONNX, images, model and data YAML"
    )
