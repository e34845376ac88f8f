"""The candidates of a search: attention names x placements, checked before anything trains.

Placements are ``ablate``'s named regions (``neck``, ``backbone``, ``before_head``) plus ``inside``: the attention
inside the residual bottlenecks of the neck's blocks, which ``ablate`` writes as the variant
``{attention: NAME, where: neck, hparams: {inside: true}}`` (:mod:`attnyolo.graph.inside`). A candidate is such an
``ablate`` variant, so the confirmation grid of the top candidates runs exactly what the search scored.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from attnyolo.errors import AttnYoloError
from attnyolo.experiments.grid import Variant, check_variant
from attnyolo.graph.placement import NAMED
from attnyolo.registry import describe

INSIDE = "inside"
PLACES = (*NAMED, INSIDE)
"""The placements a search takes: ``ablate``'s named regions and ``inside`` (blocks of the neck)."""


class SearchError(AttnYoloError):
    """A search that cannot run: no candidates, unknown names or places, a budget or a cost limit nothing meets."""


@dataclass(frozen=True)
class Candidate:
    """One attention at one placement."""

    attention: str
    place: str

    @property
    def variant(self) -> Variant:
        """The ``ablate`` variant that trains this candidate."""
        if self.place == INSIDE:
            return Variant(self.attention, "neck", {"inside": True})
        return Variant(self.attention, self.place)

    @property
    def label(self) -> str:
        """``se@neck``, ``se@inside``: short, unique, safe as a folder name."""
        return f"{self.attention}@{self.place}"


def _names(value: Any, what: str) -> list[str]:
    if value is None:
        items: list = []
    elif isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, Iterable):
        items = [s for v in value for s in str(v).split(",")]
    else:
        raise SearchError(f"{what} must be a list of names, got {value!r}")
    return list(dict.fromkeys(str(s).strip().lower() for s in items if str(s).strip()))


def candidates(attention: Any, where: Any) -> list[Candidate]:
    """Every attention x placement, in the order given (attention-major), after checking the names and places.

    Raises:
        SearchError: an empty list, or a placement that is not one of :data:`PLACES`.
        UnknownModuleError: an attention name that is not in the zoo (the closest names suggested).
    """
    names, places = _names(attention, "attention"), _names(where, "where")
    if not names:
        raise SearchError("no attention to search: give at least one name (--attention se,eca,cbam)")
    if not places:
        raise SearchError(f"no placement to search: give at least one of {', '.join(PLACES)} (--where neck,inside)")
    for place in places:
        if place not in PLACES:
            close = difflib.get_close_matches(place, PLACES, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SearchError(f"unknown placement {place!r}{hint}; a search takes {', '.join(PLACES)}")
    for name in names:
        describe(name)  # unknown names: one line with the closest names
    return [Candidate(name, place) for name in names for place in places]


def check_candidates(base_cfg: Mapping, found: list[Candidate], identity_start: bool = True) -> dict[str, dict]:
    """Insert every candidate into the base architecture: ``label -> edited cfg``; the engine's one-line error names
    the candidate that cannot be placed (a module that does not fit a place, a place that matches nothing)."""
    edited = {}
    for c in found:
        try:
            edited[c.label], _ = check_variant(base_cfg, c.variant, identity_start)
        except AttnYoloError as e:
            raise SearchError(f"candidate {c.label}: {e}") from None
    return edited
