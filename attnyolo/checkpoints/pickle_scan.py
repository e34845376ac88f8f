"""What a ``torch.save`` pickle would do, read without unpickling it: the globals it names and calls, and the
allow-list of a safe load (layer classes as data only, a few plain types), plus the checks on what it returned."""

from __future__ import annotations

import _compat_pickle
import importlib
import os
import pickletools
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnyolo.checkpoints.errors import TRUST_HINT, CheckpointError

MODULE_PREFIXES = ("torch.nn.", "ultralytics.nn.", "attnyolo.")
"""Packages whose ``nn.Module`` subclasses a safe load may reconstruct (as data, never through a constructor)."""

_HOOK_ATTRS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def zip_data_pkl(path: Path) -> bytes:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            bad = zf.testzip()  # CRC of every record: a flipped byte must not become a silently wrong weight
            if bad is not None:
                raise CheckpointError(f"{path}: corrupted checkpoint: record {bad!r} fails its CRC check")
            if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
                raise CheckpointError(
                    f"{path}: a TorchScript archive, not a checkpoint; load it with torch.jit.load, or use the "
                    "original .pt weights"
                )
            pkl = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
            if not pkl:
                listed = ", ".join(names[:3]) + (f", ... ({len(names) - 3} more)" if len(names) > 3 else "")
                raise CheckpointError(
                    f"{path}: a zip archive but not a torch.save checkpoint (no <name>/data.pkl; it holds "
                    f"{listed or 'nothing'}); expected a .pt (torch.save zip archive) or a .safetensors file"
                )
            return zf.read(pkl[0])
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(
            f"{path}: truncated or corrupted checkpoint: its zip archive cannot be read ({e}); re-download or "
            "re-export it"
        ) from e


class _Global(str):
    """A global named by the pickle, as it travels through the simulated stack."""


_STRING_OPS = {"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}


def _python3_name(module: str, attr: str) -> str:
    """Protocol-2 pickles name Python 2 modules (``__builtin__``); the unpickler maps them as pickle does."""
    module, attr = _compat_pickle.NAME_MAPPING.get((module, attr), (module, attr))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attr}"


def scan_pickle(data: bytes) -> tuple[set[str], set[str]]:
    """Return (every global the pickle names, the globals it calls through REDUCE), without unpickling.

    A small stack machine over :func:`pickletools.genops`: it tracks only strings, globals and the memo, which is
    enough to know what each ``REDUCE`` calls even when the callable comes back from the memo.
    """
    names: set[str] = set()
    called: set[str] = set()
    stack: list[Any] = []
    metastack: list[list[Any]] = []
    memo: dict[int, Any] = {}
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name == "MARK":
            metastack.append(stack)
            stack = []
            continue
        if name in {"PUT", "BINPUT", "LONG_BINPUT"}:
            memo[arg] = stack[-1]
            continue
        if name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
            continue
        if name in {"GET", "BINGET", "LONG_BINGET"}:
            stack.append(memo.get(arg))
            continue
        if name == "DUP":
            stack.append(stack[-1])
            continue
        if name == "GLOBAL":
            g = _Global(_python3_name(*arg.split(" ", 1)))
            names.add(g)
            stack.append(g)
            continue
        if name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            if not (isinstance(module, str) and isinstance(attr, str)):
                raise ValueError("a STACK_GLOBAL whose name cannot be read statically")
            g = _Global(_python3_name(module, attr))
            names.add(g)
            stack.append(g)
            continue
        if name == "REDUCE" and isinstance(stack[-2], _Global):
            called.add(str(stack[-2]))
        before = op.stack_before
        if pickletools.markobject in before:
            stack = metastack.pop()
            del stack[len(stack) - (len(before) - 2) :]
        elif before:
            del stack[len(stack) - len(before) :]
        stack.extend([arg if name in _STRING_OPS else None] * len(op.stack_after))
    return names, called


def _plain_types() -> dict[str, Any]:
    """Non-module globals of real Ultralytics checkpoints: all data containers without side effects."""
    import pathlib

    import numpy as np
    from ultralytics.utils import IterableSimpleNamespace

    scalar = np.float64(0).__reduce__()[0]  # numpy's scalar reconstructor, pickled under two module names
    path = pathlib.WindowsPath if os.name == "nt" else pathlib.PosixPath  # a path pickled on the other OS
    allowed: dict[str, Any] = {
        "numpy.dtype": np.dtype,
        "numpy.core.multiarray.scalar": scalar,
        "numpy._core.multiarray.scalar": scalar,
        "ultralytics.utils.IterableSimpleNamespace": IterableSimpleNamespace,
        "ultralytics.yolo.utils.IterableSimpleNamespace": IterableSimpleNamespace,  # before ultralytics 8.0.44
    }
    for module in ("pathlib", "pathlib._local"):
        for cls in ("PosixPath", "WindowsPath"):
            allowed[f"{module}.{cls}"] = path
    return allowed


YOLOV5_PREFIXES = ("models.", "yolov5.models.")
"""Module paths of the original YOLOv5's layer classes (a clone's, the PyPI package's): resolved by its host."""

_yolov5_missing: list[str] = []  # why the YOLOv5 host could not resolve a name (for the refusal message)


def _yolov5_class(name: str) -> type | None:
    # Imported here, not at the top: the YOLOv5 host is optional, and it imports this package (a cycle otherwise).
    from attnyolo.hosts.yolov5 import YOLOv5HostError, resolve_class

    try:
        return resolve_class(name)
    except YOLOv5HostError as e:
        _yolov5_missing[:] = [str(e)]
        return None


def _module_class(name: str, moved: Mapping[str, Any]) -> type | None:
    """The ``nn.Module`` subclass a global names, if it lives in an allowed package (imports only those): defined
    under that name, or registered in torch's safe globals under it (``moved``: a class that moved since the
    checkpoint was written, e.g. attnyolo's adapters, once in ``attnyolo.graph.ultralytics``)."""
    if name.startswith(YOLOV5_PREFIXES):
        return _yolov5_class(name)
    module, _, attr = name.rpartition(".")
    if not name.startswith(MODULE_PREFIXES) or not module:
        return None
    try:
        obj = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None
    if isinstance(obj, type) and issubclass(obj, nn.Module) and (obj.__module__ == module or moved.get(name) is obj):
        return obj
    return None


def allow_list(path: Path, data_pkl: bytes) -> list[Any]:
    """The safe-globals entries this file needs, or a :class:`CheckpointError` naming what is refused."""
    try:
        names, called = scan_pickle(data_pkl)
    except (ValueError, IndexError, KeyError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint: its pickle cannot be read ({e})") from e
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint ({e})") from e
    # Globals that some other code registered process-wide are not reported by torch; vet them as well.
    registered = {e[1] if isinstance(e, tuple) else f"{e.__module__}.{e.__qualname__}" for e in registered_globals()}
    moved = {e[1]: e[0] for e in registered_globals() if isinstance(e, tuple)}
    needed |= {str(n) for n in names & registered}  # plain str: torch's allow-list rejects str subclasses
    plain = _plain_types()
    entries: list[Any] = []
    refused: list[str] = []
    _yolov5_missing.clear()
    for name in sorted(needed):
        cls = _module_class(name, moved)
        if cls is not None:
            if name in called:
                refused.append(f"{name} (called as a constructor with arguments chosen by the file)")
            else:
                entries.append((cls, name))
        elif name in plain:
            entries.append((plain[name], name))
        else:
            refused.append(name)
    if refused:
        yolov5 = _yolov5_missing and any(r.startswith(YOLOV5_PREFIXES) for r in refused)
        why = (
            f" (YOLOv5's layer classes are allowed once YOLOv5 can be imported: {_yolov5_missing[0]})" if yolov5 else ""
        )
        raise CheckpointError(
            f"{path}: refused to load: the checkpoint references code outside the safe allow-list: "
            f"{', '.join(refused)}{why}. Loading it would run that code; {TRUST_HINT}"
        )
    if "numpy.dtype" in needed:  # dtype instances are rebuilt as their concrete class, which the scan cannot see
        import numpy as np

        entries += [c for c in vars(np.dtypes).values() if isinstance(c, type) and issubclass(c, np.dtype)]
    return entries


def registered_globals() -> list[Any]:
    return list(torch.serialization.get_safe_globals())


def walk(obj: Any, seen: set[int] | None = None) -> Iterable[Any]:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if isinstance(obj, Mapping):
        for v in obj.values():
            yield from walk(v, seen)
    elif isinstance(obj, (list, tuple, set)):
        for v in obj:
            yield from walk(v, seen)


def check_no_hooks(path: Path, obj: Any) -> None:
    for item in walk(obj):
        if isinstance(item, nn.Module):
            for name, module in item.named_modules():
                hooks = [a for a in _HOOK_ATTRS if getattr(module, a, None)]
                if hooks or "forward" in vars(module):
                    where = f"{type(module).__name__} {name or '(root)'}"
                    raise CheckpointError(
                        f"{path}: refused to load: module {where} carries {', '.join(hooks) or 'a forward override'}"
                        f" (callables the model would run); {TRUST_HINT}"
                    )
