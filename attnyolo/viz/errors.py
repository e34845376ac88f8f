"""Errors of the visualisation layer (one line each in the CLI)."""

from attnyolo.errors import AttnYoloError


class VizError(AttnYoloError):
    """An image, model, layer or output folder that cannot be visualised; the message names it."""
