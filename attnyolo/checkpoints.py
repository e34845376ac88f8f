"""Checkpoint loading that never runs code from the file unless the user says so, and a pickle-free model format.

Why attnyolo needs its own loader: Ultralytics' ``torch_safe_load`` (``ultralytics/nn/tasks.py``) loads a
``.pt`` with a full pickle (``torch.load(weights_only=False)``) by default; its restricted ``_SafeLoad`` path is
opt-in through the ``ULTRALYTICS_SAFE_LOAD`` environment variable. A ``.pt`` downloaded from a model hub or a
forum post can therefore run any code when a user fine-tunes from it. attnyolo inverts the default:

- :func:`load_checkpoint` loads with ``torch.load(weights_only=True)`` and an allow-list computed per file
  (``torch.serialization.get_unsafe_globals_in_checkpoint``): layer classes (``nn.Module`` subclasses defined in
  ``torch.nn.*``, ``ultralytics.nn.*`` or ``attnyolo.*``) plus the few plain types Ultralytics checkpoints carry
  (numpy scalars and dtypes, ``pathlib`` paths, ``IterableSimpleNamespace``). Anything else (``os.system``,
  ``builtins.exec``, ``builtins.getattr``...) is refused with an error naming the file and the global.
- Layer classes are admitted as *data* only. A pickle may ``REDUCE`` an allowed class, which calls its
  constructor with arguments chosen by the file; ``DetectionModel(cfg)`` would then ``eval()`` the YAML's
  ``activation`` string. The loader disassembles the pickle first and refuses any constructor call on a layer
  class (real checkpoints build modules with ``NEWOBJ`` + state, never their constructor), and refuses
  pickled modules that carry hooks (callables the model would run later).
- ``trust=True`` (CLI ``--trust-checkpoint``) does a full pickle load, for files the user vouches for.

:func:`save_safetensors` / :func:`load_safetensors_model` store a model as safetensors tensors plus its
architecture YAML in the header metadata: no pickle at all. The YAML is checked before it is built, because
Ultralytics' ``parse_model`` would ``eval()`` an ``activation`` string and look layer names up in its module
globals (which also hold functions such as ``torch_load``).

Every failure raises :class:`CheckpointError` naming the file and the problem; nothing is returned half-loaded.
"""

from __future__ import annotations

import _compat_pickle
import ast
import importlib
import json
import os
import pickle
import pickletools
import struct
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from attnyolo.errors import AttnYoloError

TRUST_HINT = "pass trust=True (CLI: --trust-checkpoint) only if you trust where this file comes from"
MODULE_PREFIXES = ("torch.nn.", "ultralytics.nn.", "attnyolo.")
"""Packages whose ``nn.Module`` subclasses a safe load may reconstruct (as data, never through a constructor)."""

FORMAT = "attnyolo.model"
"""``format`` value in the metadata of files written by :func:`save_safetensors`."""

_ZIP_MAGIC = b"PK\x03\x04"
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
_load_lock = threading.Lock()  # the weights_only allow-list is process-global: one safe load at a time


class CheckpointError(AttnYoloError):
    """A checkpoint that cannot be loaded: missing, damaged, not a checkpoint, unsafe, or the wrong model."""


# --------------------------------------------------------------------------------------------------- format sniffing


def _check_file(path: Path) -> int:
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file (a checkpoint is a .pt or .safetensors file)")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); re-download or re-export it")
    return size


def _head(path: Path, n: int = 64) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _unrecognised(path: Path, head: bytes) -> CheckpointError:
    decoded = None
    for cut in range(4):  # the 64-byte head may end inside a multi-byte character
        try:
            decoded = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if decoded and decoded.strip() and all(c.isprintable() or c in "\t\r\n" for c in decoded):
        first = decoded.strip().splitlines()[0]
        return CheckpointError(
            f"{path}: not a checkpoint but a text file (starts with {first[:40]!r}); expected a .pt (torch.save zip "
            "archive) or a .safetensors file"
        )
    return CheckpointError(
        f"{path}: not a checkpoint (unrecognised format, first bytes {head[:8].hex(' ')}); expected a .pt "
        "(torch.save zip archive) or a .safetensors file"
    )


# ------------------------------------------------------------------------------------------------------ safetensors


def _safetensors_header(path: Path, size: int) -> dict[str, Any]:
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
    size = _check_file(path)
    return dict(_safetensors_header(path, size).get("__metadata__", {}))


def _load_safetensors(path: Path, size: int) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _safetensors_header(path, size)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({e})") from e


# ------------------------------------------------------------------------------------------------- pickle inspection


class _Global(str):
    """A global named by the pickle, as it travels through the simulated stack."""


_STRING_OPS = {"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}


def _python3_name(module: str, attr: str) -> str:
    """Protocol-2 pickles name Python 2 modules (``__builtin__``); the unpickler maps them as pickle does."""
    module, attr = _compat_pickle.NAME_MAPPING.get((module, attr), (module, attr))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attr}"


def _scan_pickle(data: bytes) -> tuple[set[str], set[str]]:
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


def _module_class(name: str) -> type | None:
    """The ``nn.Module`` subclass a global names, if it lives in an allowed package (imports only those)."""
    module, _, attr = name.rpartition(".")
    if not name.startswith(MODULE_PREFIXES) or not module:
        return None
    try:
        obj = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None
    if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == module:
        return obj
    return None


def _allow_list(path: Path, data_pkl: bytes) -> list[Any]:
    """The safe-globals entries this file needs, or a :class:`CheckpointError` naming what is refused."""
    try:
        names, called = _scan_pickle(data_pkl)
    except (ValueError, IndexError, KeyError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint: its pickle cannot be read ({e})") from e
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint ({e})") from e
    # Globals that some other code registered process-wide are not reported by torch; vet them as well.
    registered = {e[1] if isinstance(e, tuple) else f"{e.__module__}.{e.__qualname__}" for e in _registered()}
    needed |= {str(n) for n in names & registered}  # plain str: torch's allow-list rejects str subclasses
    plain = _plain_types()
    entries: list[Any] = []
    refused: list[str] = []
    for name in sorted(needed):
        cls = _module_class(name)
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
        raise CheckpointError(
            f"{path}: refused to load: the checkpoint references code outside the safe allow-list: "
            f"{', '.join(refused)}. Loading it would run that code; {TRUST_HINT}"
        )
    if "numpy.dtype" in needed:  # dtype instances are rebuilt as their concrete class, which the scan cannot see
        import numpy as np

        entries += [c for c in vars(np.dtypes).values() if isinstance(c, type) and issubclass(c, np.dtype)]
    return entries


def _registered() -> list[Any]:
    return list(torch.serialization.get_safe_globals())


def _walk(obj: Any, seen: set[int] | None = None) -> Iterable[Any]:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if isinstance(obj, Mapping):
        for v in obj.values():
            yield from _walk(v, seen)
    elif isinstance(obj, (list, tuple, set)):
        for v in obj:
            yield from _walk(v, seen)


def _check_no_hooks(path: Path, obj: Any) -> None:
    for item in _walk(obj):
        if isinstance(item, nn.Module):
            for name, module in item.named_modules():
                hooks = [a for a in _HOOK_ATTRS if getattr(module, a, None)]
                if hooks or "forward" in vars(module):
                    where = f"{type(module).__name__} {name or '(root)'}"
                    raise CheckpointError(
                        f"{path}: refused to load: module {where} carries {', '.join(hooks) or 'a forward override'}"
                        f" (callables the model would run); {TRUST_HINT}"
                    )


# ------------------------------------------------------------------------------------------------------ .pt loading


def _zip_data_pkl(path: Path) -> bytes:
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
                raise CheckpointError(f"{path}: a zip archive but not a torch.save checkpoint (no data.pkl)")
            return zf.read(pkl[0])
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(
            f"{path}: truncated or corrupted checkpoint: its zip archive cannot be read ({e}); re-download or "
            "re-export it"
        ) from e


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
        CheckpointError: missing, empty, truncated or corrupted file; not a checkpoint; or (safe mode) a
            checkpoint that references globals outside the allow-list. The message names the file.
    """
    path = Path(path)
    size = _check_file(path)
    head = _head(path)
    if head.startswith(_ZIP_MAGIC):
        data_pkl = _zip_data_pkl(path)
        if trust:
            return _as_checkpoint_dict(path, _torch_load(path, weights_only=False))
        entries = _allow_list(path, data_pkl)
        with _load_lock:
            # Register only what is not registered yet, so leaving the context never removes someone else's entry.
            new = [e for e in entries if e not in set(_registered())]
            with torch.serialization.safe_globals(new):
                obj = _torch_load(path, weights_only=True)
        _check_no_hooks(path, obj)
        return _as_checkpoint_dict(path, obj)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head, size):
        return _load_safetensors(path, size)
    if head[:1] == b"\x80":  # pickle protocol marker: a raw pickle or a pre-1.6 torch file
        if trust:
            return _as_checkpoint_dict(path, _torch_load(path, weights_only=False))
        raise CheckpointError(
            f"{path}: refused to load: a raw pickle (or legacy pre-1.6 torch file), which cannot be inspected "
            f"without running it; re-save it with torch.save or as .safetensors, or {TRUST_HINT}"
        )
    raise _unrecognised(path, head)


# --------------------------------------------------------------------------------------------- pickle-free export


def _unwrap(model: Any) -> nn.Module:
    """The torch model inside an Ultralytics ``YOLO`` object (or the model itself)."""
    from ultralytics.engine.model import Model

    if isinstance(model, Model):
        return model.model
    if isinstance(model, nn.Module):
        return model
    raise TypeError(f"expected a torch model or an Ultralytics YOLO object, got {type(model).__name__}")


def _register_attnyolo_layers() -> None:
    """Make attnyolo's layers buildable by Ultralytics' ``parse_model`` (no-op until the engine provides it)."""
    try:
        hooks = importlib.import_module("attnyolo.graph.ultralytics")
    except ModuleNotFoundError as e:
        if e.name != "attnyolo.graph.ultralytics":
            raise
        return
    register = getattr(hooks, "register", None)
    if callable(register):
        register()


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

    from attnyolo import __version__

    net = _unwrap(model)
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        umask = os.umask(0)  # mkstemp creates 0600; give the file the mode the umask gives, like any other
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _check_activation(path: Path, act: str) -> None:
    """Accept only ``[torch.]nn.<Layer>(literal args)``: ``parse_model`` would ``eval()`` anything else."""
    try:
        call = ast.parse(act.strip(), mode="eval").body
        assert isinstance(call, ast.Call)
        node, parts = call.func, []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        assert isinstance(node, ast.Name)
        parts.append(node.id)
        assert parts[1:] in (["nn"], ["nn", "torch"])
        layer = getattr(nn, parts[0], None)
        assert isinstance(layer, type) and issubclass(layer, nn.Module)
        for a in [*call.args, *(k.value for k in call.keywords)]:
            ast.literal_eval(a)
    except (AssertionError, SyntaxError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"{path}: refused model YAML: activation {act!r} is not of the form nn.<Layer>(literal arguments)"
        ) from e


def _check_model_yaml(path: Path, cfg: Any) -> None:
    """Refuse a YAML that ``parse_model`` would turn into code execution or a non-layer call."""
    import torchvision
    from ultralytics.nn import tasks

    if not isinstance(cfg, dict) or not isinstance(cfg.get("backbone"), list) or not isinstance(cfg.get("head"), list):
        raise CheckpointError(f"{path}: the metadata's model_yaml is not a model YAML (no backbone/head lists)")
    if cfg.get("activation"):
        _check_activation(path, str(cfg["activation"]))
    for i, row in enumerate(cfg["backbone"] + cfg["head"]):
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[2], str) and isinstance(row[3], list)):
            raise CheckpointError(f"{path}: model_yaml layer {i} is not a [from, repeats, module, args] row: {row!r}")
        name = row[2]
        if name.startswith("nn."):
            layer = getattr(nn, name[3:], None)
        elif name.startswith("torchvision.ops."):
            layer = getattr(torchvision.ops, name[16:], None)
        else:
            layer = vars(tasks).get(name)
        if not (isinstance(layer, type) and issubclass(layer, nn.Module)):
            hint = " (attnyolo layers need attnyolo's Ultralytics registration)" if name.startswith("ay_") else ""
            raise CheckpointError(f"{path}: model_yaml layer {i} names {name!r}, which is not a known layer{hint}")


def load_safetensors_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild a model written by :func:`save_safetensors`: architecture from its YAML, then every tensor, strictly.

    No pickle is involved; the YAML is validated before Ultralytics builds it. The model is returned in eval mode,
    in the dtype its tensors were saved in, and produces the same outputs as the model that was saved.

    Raises:
        CheckpointError: damaged file, no attnyolo metadata, a YAML that is refused or cannot be built, or
            tensors that do not fit the architecture (missing, unexpected, wrong shape).
    """
    from ultralytics.nn import tasks

    path = Path(path)
    size = _check_file(path)
    head = _head(path)
    if head.startswith(_ZIP_MAGIC):
        raise CheckpointError(f"{path}: a .pt checkpoint, not a safetensors model; use load_checkpoint or transfer()")
    if path.suffix != ".safetensors" and not _looks_like_safetensors(head, size):
        raise _unrecognised(path, head)
    header = _safetensors_header(path, size)
    meta = header.get("__metadata__", {})
    if "model_yaml" not in meta:
        raise CheckpointError(
            f"{path}: no model_yaml in the safetensors metadata (not written by attnyolo's save_safetensors); "
            "build the model yourself and copy the tensors with attnyolo.transfer()"
        )
    try:
        cfg = yaml.safe_load(meta["model_yaml"])
        names = {int(k): v for k, v in json.loads(meta.get("names", "{}")).items()}
        fused = json.loads(meta.get("fused", "false"))
        nc = int(meta["nc"]) if meta.get("nc") else None
    except (yaml.YAMLError, json.JSONDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt attnyolo metadata ({e})") from e
    _register_attnyolo_layers()
    _check_model_yaml(path, cfg)
    task = meta.get("task") or tasks.guess_model_task(cfg) or "detect"
    classes = {
        "detect": tasks.DetectionModel,
        "segment": tasks.SegmentationModel,
        "pose": tasks.PoseModel,
        "obb": tasks.OBBModel,
        "classify": tasks.ClassificationModel,
    }
    if task not in classes:
        raise CheckpointError(f"{path}: unsupported task {task!r} in the metadata; expected one of {sorted(classes)}")
    state = _load_safetensors(path, size)
    try:
        model = classes[task](cfg, ch=int(cfg.get("channels", 3)), nc=nc, verbose=False)
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
