"""``attnyolo search``: which attention, and where. Successive halving over attention names x placements on Ray Tune,
under cost limits and a budget, ending in a seeded ``ablate`` comparison of the best candidates against the control.

Modules: :mod:`.candidates` (names x places, checked), :mod:`.costs` (limits, pruning), :mod:`.schedule` (rungs,
budget), :mod:`.trainable` (one candidate's run reporting to Ray Tune), :mod:`.rungs` (the Tuner and ASHA),
:mod:`.store` (``search.sqlite``), :mod:`.report` (``report.md``), :mod:`.driver` (:func:`search`).
"""

from attnyolo.search.candidates import PLACES, Candidate, SearchError, candidates
from attnyolo.search.driver import SearchResult, search

__all__ = ["PLACES", "Candidate", "SearchError", "SearchResult", "candidates", "search"]
