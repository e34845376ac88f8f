"""attnyolo: attention modules for YOLO detectors, inserted correctly and measured honestly."""

from attnyolo import runtime as _runtime

_runtime.configure()  # before anything imports Ultralytics: offline, no auto-install, local font

from attnyolo._version import __version__  # noqa: E402
from attnyolo.registry import ModuleSpec, available, create, describe  # noqa: E402

__all__ = ["ModuleSpec", "__version__", "available", "create", "describe"]
