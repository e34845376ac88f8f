"""Where the YOLOv5 code comes from, and importing it offline.

Two layouts of the same v7.0 code:

- **the PyPI package** ``yolov5`` (7.0.x): its code lives under the top-level package ``yolov5``
  (``yolov5.models.yolo``). Importing ``yolov5.models.yolo`` appends the package folder to ``sys.path`` (its own
  ``ROOT`` line), which is how checkpoints that pickle ``models.yolo.DetectionModel`` find a module there too.
- **a clone** of github.com/ultralytics/yolov5: top-level ``models.yolo``, ``utils``, ``train.py``; chosen with
  ``--yolov5 PATH`` or the environment variable ``ATTNYOLO_YOLOV5``. Its folder goes first on ``sys.path``.

One process holds one of them: both own the top-level names ``models`` and ``utils``.

Version: v7.0 is what is supported and tested. A clone is recognised by its ``models/yolo.py``: v7.0 added
``class Segment(Detect)`` and ``class SegmentationModel`` and keeps ``def parse_model(d, ch)`` (v6.2 and earlier
lack the first two); the package must report ``yolov5.__version__`` 7.0.x.

Importing offline, without editing any installed file:

- ``pkg_resources``: YOLOv5 imports it at module level for ``parse_version`` only; setuptools 81+ no longer ships
  it. When it is missing, a stand-in with ``parse_version`` (``packaging.version.parse``) is put in
  ``sys.modules`` only while the YOLOv5 modules are imported (they keep their reference), then removed.
- ``roboflow`` (package only): ``yolov5.train`` imports ``yolov5.utils.roboflow`` at module level, which imports
  the Roboflow cloud client; it is used only for datasets hosted on roboflow.com. When ``roboflow`` is not
  installed, ``yolov5.utils.roboflow`` is a module whose ``RoboflowConnector`` raises a one-line error.
- fonts: YOLOv5 downloads ``Arial.ttf`` into ``$YOLOV5_CONFIG_DIR`` when absent; attnyolo points that variable
  (unless the user set it) at the folder where :mod:`attnyolo.runtime` already placed local fonts by those names.
- weights and checks: ``attempt_download`` / ``attempt_download_from_hub`` (GitHub releases, the Hugging Face hub)
  are replaced, as attributes of every imported YOLOv5 module that holds them, by a local-only lookup that names the
  missing file instead of downloading it; ``check_online``, ``check_git_status`` and ``check_requirements`` (a
  connectivity probe, ``git fetch``, ``pip install``) by offline stand-ins (:data:`OFFLINE`).
- numpy 2.4 and torch 2.9+: YOLOv5's modules get a view of numpy that still has ``trapz``
  (:class:`_NumpyForYOLOv5`), and its ``export`` module a view of torch whose ``onnx.export`` defaults to the
  TorchScript exporter (:class:`_TorchForYOLOv5`); numpy and torch themselves are not changed.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy
import torch
from packaging.version import parse as parse_version

from attnyolo import runtime
from attnyolo.hosts.yolov5.errors import INSTALL_HINT, SUPPORTED, YOLOv5HostError

ENV_VAR = "ATTNYOLO_YOLOV5"
"""Environment variable naming a YOLOv5 clone folder (the CLI's ``--yolov5 PATH`` sets it for the process)."""

PACKAGE = "package"
CLONE = "clone"
_CLONE_FILES = ("models/yolo.py", "models/common.py", "utils/general.py", "train.py", "val.py", "export.py")
_V7_MARKERS = (r"^class Segment\(Detect\)", r"^class SegmentationModel\(", r"^def parse_model\(d, ch\)")


@dataclass(frozen=True)
class YOLOv5Code:
    """One importable YOLOv5 v7.0: the PyPI package or a clone.

    Attributes:
        root: the folder that holds ``models/``, ``utils/``, ``train.py``.
        kind: ``"package"`` or ``"clone"``.
        prefix: module-name prefix of its code: ``"yolov5."`` for the package, ``""`` for a clone.
    """

    root: Path
    kind: str
    prefix: str

    def module(self, name: str) -> ModuleType:
        """``models.yolo``, ``train``... of this YOLOv5, imported offline (see the module docstring)."""
        with _import_shims(self):
            module = importlib.import_module(self.prefix + name)
        offline_downloads(self)
        return module

    @property
    def yolo(self) -> ModuleType:
        return self.module("models.yolo")

    def owns(self, module_name: str) -> bool:
        """True when ``module_name`` (``models.common``, ``yolov5.models.common``) is this YOLOv5's code."""
        module = sys.modules.get(module_name)
        file = getattr(module, "__file__", None)
        return file is not None and Path(file).resolve().is_relative_to(self.root)


_located: dict[str, YOLOv5Code] = {}


def locate(path: str | os.PathLike | None = None) -> YOLOv5Code:
    """The YOLOv5 to use: ``path`` (a clone), else ``$ATTNYOLO_YOLOV5``, else the installed ``yolov5`` package.

    Raises:
        YOLOv5HostError: no YOLOv5 installed, a path that is not a YOLOv5 v7.0 clone, or a second YOLOv5 in a process
            that already imported another one.
    """
    given = path if path is not None else os.environ.get(ENV_VAR) or None
    key = str(Path(given).expanduser().resolve()) if given else PACKAGE
    if key in _located:
        return _located[key]
    code = _clone(Path(given).expanduser()) if given else _package()
    other = next((c for c in _located.values() if c != code), None)
    if other is not None:
        raise YOLOv5HostError(
            f"{code.root}: this process already uses the YOLOv5 at {other.root}; both own the module names 'models' "
            "and 'utils', so use one YOLOv5 per process"
        )
    _located[key] = code
    return code


def _package() -> YOLOv5Code:
    try:
        spec = importlib.util.find_spec("yolov5")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise YOLOv5HostError(f"the YOLOv5 host needs YOLOv5, which is not installed; {INSTALL_HINT}")
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    init = root / "__init__.py"
    found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", init.read_text(), re.M) if init.is_file() else None
    version = found.group(1) if found else "unknown"
    if not (parse_version("7.0") <= parse_version(version) < parse_version("7.1")):
        raise YOLOv5HostError(f"{root}: the installed yolov5 package is version {version}; supported: {SUPPORTED}")
    missing = [f for f in _CLONE_FILES if not (root / f).is_file()]
    if missing:
        raise YOLOv5HostError(
            f"{root}: broken yolov5 installation (missing {', '.join(missing)}); reinstall it: {INSTALL_HINT}"
        )
    return YOLOv5Code(root, PACKAGE, "yolov5.")


def _clone(path: Path) -> YOLOv5Code:
    if not path.is_dir():
        raise YOLOv5HostError(f"{path}: no such folder; --yolov5 / {ENV_VAR} must name a clone of YOLOv5 v7.0")
    root = path.resolve()
    missing = [f for f in _CLONE_FILES if not (root / f).is_file()]
    if missing:
        raise YOLOv5HostError(
            f"{root}: not a YOLOv5 clone (missing {', '.join(missing)}); --yolov5 / {ENV_VAR} must name the folder "
            "that holds train.py and models/"
        )
    source = (root / "models" / "yolo.py").read_text(errors="replace")
    if not all(re.search(marker, source, re.M) for marker in _V7_MARKERS):
        raise YOLOv5HostError(
            f"{root}: a YOLOv5 clone of another version (its models/yolo.py lacks the v7.0 Segment head, "
            f"SegmentationModel or parse_model(d, ch)); supported: {SUPPORTED}; `git checkout v7.0` in the clone"
        )
    return YOLOv5Code(root, CLONE, "")


@contextlib.contextmanager
def _import_shims(code: YOLOv5Code):
    """The temporary import-time environment of the YOLOv5 modules (see the module docstring)."""
    runtime.configure()  # places the local fonts
    os.environ.setdefault("YOLOV5_CONFIG_DIR", str(runtime.ultralytics_config_dir()))
    if code.kind == CLONE and str(code.root) not in sys.path:
        sys.path.insert(0, str(code.root))
    _check_top_level(code)
    added = []
    if importlib.util.find_spec("pkg_resources") is None and "pkg_resources" not in sys.modules:
        shim = types.ModuleType("pkg_resources", "attnyolo's stand-in while YOLOv5 imports: parse_version only")
        shim.parse_version = parse_version
        sys.modules["pkg_resources"] = shim
        added.append("pkg_resources")
    roboflow = f"{code.prefix}utils.roboflow"
    if code.kind == PACKAGE and roboflow not in sys.modules and importlib.util.find_spec("roboflow") is None:
        sys.modules[roboflow] = _roboflow_stand_in(roboflow)
    try:
        yield
    except ImportError as e:
        hint = (
            f"install the clone's requirements (pip install -r {code.root / 'requirements.txt'})"
            if code.kind == CLONE
            else INSTALL_HINT
        )
        raise YOLOv5HostError(f"{code.root}: YOLOv5 cannot be imported ({type(e).__name__}: {e}); {hint}") from e
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _check_top_level(code: YOLOv5Code) -> None:
    # A clone's models/utils must not be shadowed by another package of that name imported earlier.
    if code.kind != CLONE:
        return
    for name in ("models", "utils"):
        module = sys.modules.get(name)
        where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", []) or []), None)
        if module is not None and where and not Path(where).resolve().is_relative_to(code.root):
            raise YOLOv5HostError(
                f"{code.root}: another top-level '{name}' ({where}) is already imported in this process; run the "
                "YOLOv5 host in its own process"
            )


def _roboflow_stand_in(name: str) -> ModuleType:
    module = types.ModuleType(name, "attnyolo: roboflow is not installed; datasets on roboflow.com are unavailable")

    class RoboflowConnector:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise YOLOv5HostError(
                "this run asks for a roboflow.com dataset or upload; attnyolo runs offline and without the roboflow "
                "package: give a local data YAML"
            )

    module.RoboflowConnector = RoboflowConnector
    module.extract_roboflow_metadata = RoboflowConnector
    return module


def _local_file(file: Any, *args: Any, **kwargs: Any) -> Any:
    """attnyolo's ``attempt_download``: the file when it exists locally, else a one-line error (never a download)."""
    text = str(file).strip().replace("'", "")
    if not text or Path(text).is_file():
        return file if isinstance(file, Path) else text
    raise YOLOv5HostError(
        f"{text}: no such file; attnyolo runs YOLOv5 offline and never downloads weights: give the path of a local "
        "checkpoint (make one with `attnyolo yolov5 init`)"
    )


def _not_on_hub(*args: Any, **kwargs: Any) -> None:
    return None  # "not a Hugging Face repository": YOLOv5 then looks for a local file


def _offline(*args: Any, **kwargs: Any) -> bool:
    return False  # check_online: attnyolo never goes online


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None  # check_git_status (git fetch), check_requirements (pip install): not at run time, never online


OFFLINE = {
    "attempt_download": _local_file,
    "attempt_download_from_hub": _not_on_hub,
    "check_online": _offline,
    "check_git_status": _nothing,
    "check_requirements": _nothing,
}
"""YOLOv5 helpers that reach the network, and attnyolo's offline stand-ins (see :func:`offline_downloads`)."""


class _NumpyForYOLOv5(types.ModuleType):
    """numpy as YOLOv5 v7.0's modules see it: numpy 2.4 removed ``trapz`` (renamed ``trapezoid`` in 2.0), which its
    ``utils/metrics.py::compute_ap`` calls for every mAP. Everything else is numpy itself."""

    trapz = staticmethod(getattr(numpy, "trapezoid", None) or getattr(numpy, "trapz", None))

    def __getattr__(self, name: str) -> Any:
        return getattr(numpy, name)


_NUMPY = _NumpyForYOLOv5("numpy")


class _OnnxForYOLOv5(types.ModuleType):
    """``torch.onnx`` as YOLOv5's ``export.py`` sees it: ``export`` with ``dynamo=False`` unless given. YOLOv5 v7.0
    calls ``torch.onnx.export`` without ``dynamo``, and since torch 2.9 the default is the dynamo exporter (which
    needs the onnxscript package); Ultralytics passes ``dynamo=False`` for the same reason."""

    def export(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("dynamo", False)
        return torch.onnx.export(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.onnx, name)


class _TorchForYOLOv5(types.ModuleType):
    """torch as YOLOv5's ``export.py`` sees it: ``torch.onnx`` is :class:`_OnnxForYOLOv5`, the rest is torch."""

    onnx = _OnnxForYOLOv5("torch.onnx")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


_TORCH = _TorchForYOLOv5("torch")


def offline_downloads(code: YOLOv5Code) -> None:
    """Replace the network helpers (:data:`OFFLINE`) in every imported module of ``code`` (idempotent).

    ``check_requirements`` pip-installs what it finds missing (after a connectivity probe) and ``check_git_status``
    runs ``git fetch``: installing is the user's step (README), so at run time they do nothing.
    """
    for name, module in list(sys.modules.items()):
        if module is None or not code.owns(name):  # the package's modules, and its top-level alias (models.yolo)
            continue
        for attr, stand_in in OFFLINE.items():
            if callable(getattr(module, attr, None)):
                setattr(module, attr, stand_in)
        if getattr(module, "np", None) is numpy and not hasattr(numpy, "trapz"):
            module.np = _NUMPY
        if name == f"{code.prefix}export" and getattr(module, "torch", None) is torch:
            module.torch = _TORCH
