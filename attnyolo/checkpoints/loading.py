"""Loading: :func:`load_checkpoint` (any checkpoint, safely) and :func:`load_safetensors_model` (a model rebuilt from
an attnyolo ``.safetensors``), and the check of a model YAML read from a file."""

from __future__ import annotations

import json
import os
import pickle
import struct
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnyolo.checkpoints.errors import TRUST_HINT, CheckpointError
from attnyolo.checkpoints.pickle_scan import allow_list, check_no_hooks, registered_globals, walk, zip_data_pkl
from attnyolo.checkpoints.safetensors_io import read_header, read_tensors, safetensors_model_yaml
from attnyolo.checkpoints.sniff import ZIP_MAGIC, check_file, looks_like_safetensors, read_head, unrecognised

_load_lock = threading.Lock()  # the weights_only allow-list is process-global: one safe load at a time


def _torch_load(path: Path, *, weights_only: bool) -> Any:
    import ultralytics.nn.tasks  # noqa: F401  (a full pickle of an Ultralytics model imports from here)

    try:
        return torch.load(str(path), map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as e:
        if weights_only:
            raise CheckpointError(f"{path}: refused to load: {e}; {TRUST_HINT}") from e
        raise CheckpointError(f"{path}: corrupt checkpoint: {e}") from e
    except (RuntimeError, EOFError, ValueError, struct.error) as e:
        raise CheckpointError(f"{path}: truncated or corrupted checkpoint ({type(e).__name__}: {e})") from e
    except (ModuleNotFoundError, AttributeError) as e:
        raise CheckpointError(
            f"{path}: the checkpoint needs code that is not installed ({e}); it was saved by another version or package"
        ) from e


def _as_checkpoint_dict(path: Path, obj: Any) -> dict:
    if isinstance(obj, dict):
        return obj
    if isinstance(obj, nn.Module):  # torch.save(model): Ultralytics' own loader wraps it the same way
        return {"model": obj}
    raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict, state dict or model")


def load_checkpoint(path: str | os.PathLike, *, trust: bool = False) -> dict:
    """Load a checkpoint without running code from it (unless ``trust=True``).

    Args:
        path: an Ultralytics ``.pt`` (a dict with ``model``/``ema`` modules, ``train_args``, ``date``...), a
            ``.pt`` holding a state dict (or a whole module, returned as ``{"model": module}``), or a
            ``.safetensors`` file (returned as its state dict; see :func:`safetensors_metadata`).
        trust: full pickle load. Only for files whose origin you trust: a pickle can run any code.

    Returns:
        The checkpoint dict, all tensors on the CPU.

    Raises:
        CheckpointError: missing, empty, truncated or corrupted file; not a checkpoint (the message names the
            format when it is a known other one); or (safe mode) a checkpoint that references globals outside the
            allow-list, carries hooks, or holds a model YAML that Ultralytics would turn into code
            (:func:`check_model_yaml`). The message names the file and the refused value.
    """
    path = Path(path)
    size = check_file(path)
    head = read_head(path)
    if head.startswith(ZIP_MAGIC):
        data_pkl = zip_data_pkl(path)
        if trust:
            return _as_checkpoint_dict(path, _torch_load(path, weights_only=False))
        entries = allow_list(path, data_pkl)
        with _load_lock:
            # Register only what is not registered yet, so leaving the context never removes someone else's entry.
            new = [e for e in entries if e not in set(registered_globals())]
            with torch.serialization.safe_globals(new):
                obj = _torch_load(path, weights_only=True)
        check_no_hooks(path, obj)
        for item in walk(obj):  # a model's architecture is rebuilt from its YAML later: refuse one that runs code
            cfg = getattr(item, "yaml", None) if isinstance(item, nn.Module) else None
            if isinstance(cfg, Mapping):
                check_model_yaml(path, cfg)
        return _as_checkpoint_dict(path, obj)
    if path.suffix == ".safetensors" or looks_like_safetensors(head, size):
        if not trust:
            _checked_model_yaml(path)
        return read_tensors(path, size)
    if head[:1] == b"\x80":  # pickle protocol marker: a raw pickle or a pre-1.6 torch file
        if trust:
            return _as_checkpoint_dict(path, _torch_load(path, weights_only=False))
        raise CheckpointError(
            f"{path}: refused to load: a raw pickle (or legacy pre-1.6 torch file), which cannot be inspected "
            f"without running it; re-save it with torch.save or as .safetensors, or {TRUST_HINT}"
        )
    raise unrecognised(path, head)


def check_model_yaml(path: str | os.PathLike, cfg: Any) -> None:
    """Refuse a model YAML read from ``path`` that ``parse_model`` would turn into code execution or a non-layer
    call (see :func:`attnyolo.graph.names.check_buildable`).

    Raises:
        CheckpointError: naming the file and the refused value.
    """
    from attnyolo.graph import GraphError, UnknownModuleError
    from attnyolo.graph.names import check_buildable

    try:
        check_buildable(cfg)
    except (GraphError, UnknownModuleError) as e:
        raise CheckpointError(f"{path}: refused model YAML: {e}") from None


def _checked_model_yaml(path: Path) -> Any:
    """The checked ``model_yaml`` of a safetensors file's metadata, or ``None`` when it has none."""
    cfg = safetensors_model_yaml(path)
    if cfg is not None:
        check_model_yaml(path, cfg)
    return cfg


def load_safetensors_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild a model written by :func:`save_safetensors`: architecture from its YAML, then every tensor, strictly.

    No pickle is involved; the YAML is validated before Ultralytics builds it. The model is returned in eval mode,
    in the dtype its tensors were saved in, and produces the same outputs as the model that was saved.

    Raises:
        CheckpointError: damaged file, no attnyolo metadata, a YAML that is refused or cannot be built, or
            tensors that do not fit the architecture (missing, unexpected, wrong shape).
    """
    from attnyolo.graph.ultralytics import model_class, register

    path = Path(path)
    size = check_file(path)
    head = read_head(path)
    if head.startswith(ZIP_MAGIC):
        raise CheckpointError(f"{path}: a .pt checkpoint, not a safetensors model; use load_checkpoint or transfer()")
    if path.suffix != ".safetensors" and not looks_like_safetensors(head, size):
        raise unrecognised(path, head)
    cfg = _checked_model_yaml(path)
    meta = read_header(path, size).get("__metadata__", {})
    if cfg is None:
        raise CheckpointError(
            f"{path}: no model_yaml in the safetensors metadata (not written by attnyolo's save_safetensors); "
            "build the model yourself and copy the tensors with attnyolo.transfer()"
        )
    try:
        names = {int(k): v for k, v in json.loads(meta.get("names", "{}")).items()}
        fused = json.loads(meta.get("fused", "false"))
        nc = int(meta["nc"]) if meta.get("nc") else None
        ch = int(cfg.get("channels", 3))
    except (json.JSONDecodeError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: corrupt attnyolo metadata ({e})") from e
    if (nc is not None and nc < 1) or ch < 1:
        raise CheckpointError(f"{path}: corrupt attnyolo metadata: nc {nc} and channels {ch} must be >= 1")
    register()  # the YAML's ay_<name> rows need the parse_model hook
    try:
        model_cls = model_class(cfg)
    except AttributeError as e:
        raise CheckpointError(f"{path}: no Ultralytics model class builds this model_yaml ({e})") from e
    state = read_tensors(path, size)
    try:
        model = model_cls(cfg, ch=ch, nc=nc, verbose=False)
    except Exception as e:  # Ultralytics raises anything from KeyError to RuntimeError on a bad architecture
        raise CheckpointError(f"{path}: the model_yaml cannot be built ({type(e).__name__}: {e})") from e
    floats = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(floats) == 1:
        model = model.to(floats.pop())
    if fused:
        model.fuse(verbose=False)
    _load_strict(path, model, state)
    if names:
        model.names = names
    return model.eval()


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _load_strict(path: Path, model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and v.shape != state[k].shape
    ]
    problems = [
        *([f"missing {_few(missing)}"] if missing else []),
        *([f"unexpected {_few(unexpected)}"] if unexpected else []),
        *([f"other shape (file vs model) {_few(shapes)}"] if shapes else []),
    ]
    if problems:
        raise CheckpointError(f"{path}: the tensors do not fit the architecture in its metadata: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
