"""See what attention does: attention maps captured through each module's ``gate``, CAMs, comparisons.

- :func:`attention_maps` — every inserted attention's weights for one image, keyed by a readable layer name;
- :func:`eigen_cam` — a class-activation map of the detector (EigenCAM, from the ``grad-cam`` package);
- :mod:`attnyolo.viz.figures` — matplotlib figures (returned, never shown);
- :func:`attnyolo.viz.gallery.write_gallery` — what ``attnyolo viz`` writes: PNGs and a self-contained index.html.
"""

from attnyolo.viz.cam import eigen_cam
from attnyolo.viz.capture import AttentionMap, attention_maps, capture_attention, inserted_attention
from attnyolo.viz.images import load_image, prepare
from attnyolo.viz.models import load_model

__all__ = [
    "AttentionMap",
    "attention_maps",
    "capture_attention",
    "eigen_cam",
    "inserted_attention",
    "load_image",
    "load_model",
    "prepare",
]
