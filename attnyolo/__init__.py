"""attnyolo: attention modules for YOLO detectors, inserted correctly and measured honestly.

``import attnyolo`` first configures Ultralytics for offline use (:mod:`attnyolo.runtime`), then registers
the zoo with Ultralytics (:func:`attnyolo.graph.register`), so edited YAMLs and saved checkpoints build
and load anywhere after this import.
"""

from attnyolo import runtime as _runtime

_runtime.configure()  # before anything imports Ultralytics: offline, no auto-install, local font
_runtime.import_ultralytics()  # its first-run settings notice on stderr: stdout stays data

from attnyolo._version import __version__  # noqa: E402
from attnyolo.checkpoints import load_checkpoint, load_safetensors_model, save_safetensors  # noqa: E402
from attnyolo.experiments import ablate  # noqa: E402
from attnyolo.finetune import FinetuneResult, finetune  # noqa: E402
from attnyolo.graph import IndexMap, dump, index_map, insert, load, register, remove, replace  # noqa: E402
from attnyolo.hosts.build import build  # noqa: E402  (Ultralytics, or YOLOv5's Model for an original YAML)
from attnyolo.registry import ModuleSpec, available, create, describe  # noqa: E402
from attnyolo.search import search  # noqa: E402  (the function; Ray Tune is imported when it runs)
from attnyolo.weights import TransferReport, transfer  # noqa: E402

register()

__all__ = [
    "FinetuneResult",
    "IndexMap",
    "ModuleSpec",
    "TransferReport",
    "__version__",
    "ablate",
    "available",
    "build",
    "create",
    "describe",
    "dump",
    "finetune",
    "index_map",
    "insert",
    "load",
    "load_checkpoint",
    "load_safetensors_model",
    "register",
    "remove",
    "replace",
    "save_safetensors",
    "search",
    "transfer",
]
