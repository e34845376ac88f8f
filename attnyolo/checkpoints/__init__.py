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

Layout: :mod:`.sniff` (what a file is, from its first bytes), :mod:`.pickle_scan` (the pickle disassembly and
allow-list), :mod:`.safetensors_io` (header validation, metadata, export), :mod:`.loading` (the loaders and the
model YAML check), :mod:`.model_yaml` (a checkpoint's YAML and class names, :func:`architecture`),
:mod:`.ultralytics_pt` (writing the ``.pt`` Ultralytics loads), :mod:`.errors`.
"""

from attnyolo.checkpoints.errors import TRUST_HINT, CheckpointError
from attnyolo.checkpoints.loading import check_model_yaml, load_checkpoint, load_safetensors_model
from attnyolo.checkpoints.model_yaml import Architecture, architecture
from attnyolo.checkpoints.pickle_scan import MODULE_PREFIXES
from attnyolo.checkpoints.safetensors_io import FORMAT, safetensors_metadata, safetensors_model_yaml, save_safetensors
from attnyolo.checkpoints.ultralytics_pt import save_ultralytics_checkpoint

__all__ = [
    "FORMAT",
    "MODULE_PREFIXES",
    "TRUST_HINT",
    "Architecture",
    "CheckpointError",
    "architecture",
    "check_model_yaml",
    "load_checkpoint",
    "load_safetensors_model",
    "safetensors_metadata",
    "safetensors_model_yaml",
    "save_safetensors",
    "save_ultralytics_checkpoint",
]
