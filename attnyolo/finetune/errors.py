"""The fine-tuning layer's error (its own module, so :mod:`.start` and :mod:`.callbacks` share it without importing
each other)."""

from attnyolo.errors import AttnYoloError


class FinetuneError(AttnYoloError):
    """A fine-tuning run that cannot start: no architecture in the base checkpoint, bad arguments."""
