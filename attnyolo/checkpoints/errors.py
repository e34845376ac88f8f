"""The checkpoint layer's error and the hint every refusal ends with."""

from __future__ import annotations

from attnyolo.errors import AttnYoloError

TRUST_HINT = "pass trust=True (CLI: --trust-checkpoint) only if you trust where this file comes from"


class CheckpointError(AttnYoloError):
    """A checkpoint that cannot be loaded: missing, damaged, not a checkpoint, unsafe, or the wrong model."""
