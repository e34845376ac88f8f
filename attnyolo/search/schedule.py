"""The rungs of a search and its budget: ASHA's milestones, planned before anything trains.

Ray Tune's :class:`~ray.tune.schedulers.ASHAScheduler` (``time_attr = "epoch"``) decides at each rung: a candidate
that reaches a rung's epoch goes on when its mAP50-95 is at least the ``1 - 1/eta`` quantile of the scores recorded
at that rung so far (ties go on), else it stops. The rungs are ``grace, grace*eta, grace*eta^2, ...``; the last one
is the longest training a candidate gets.

A budget in epochs picks the number of rungs: the most rungs whose successive-halving plan (every candidate the
first rung, ``ceil(n / eta^k)`` of them each later rung) fits the budget. ASHA is asynchronous, so early
candidates may go further than that plan; once the epochs trained reach the budget,
:class:`attnyolo.search.rungs.EpochBudget` lets no candidate go beyond its first rung, whatever the order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from attnyolo.search.candidates import SearchError

EPOCH = "epoch"
"""ASHA's ``time_attr``: the 1-based epoch each report is for."""
METRIC = "map50_95"
"""What ASHA ranks: Ultralytics' per-epoch validation mAP50-95."""
MAX_RUNGS = 10


@dataclass(frozen=True)
class Schedule:
    """The rungs (epochs at which ASHA decides), the reduction factor, and the lead-in: the epochs every run trains
    before the rungs count (the attention warm-up or ``freeze_epochs``; see :func:`attnyolo.search.driver.lead_in`)."""

    rungs: tuple[int, ...]
    eta: int
    lead_in: int = 0

    @property
    def run_epochs(self) -> int:
        """Epochs of a run that reaches the last rung (and of each confirmation run): the lead-in, then the rungs."""
        return self.lead_in + self.rungs[-1]

    @property
    def max_epochs(self) -> int:
        return self.rungs[-1]

    @property
    def grace(self) -> int:
        return self.rungs[0]

    def planned_epochs(self, n: int) -> int:
        """Epochs of synchronous successive halving over ``n`` candidates (the plan the budget is checked against)."""
        return planned_epochs(n, self.rungs, self.eta)

    def rung_of(self, epoch: int) -> int | None:
        """Index of the rung at ``epoch`` (``None`` between rungs)."""
        return self.rungs.index(epoch) if epoch in self.rungs else None


def rungs(grace: int, eta: int, count: int) -> tuple[int, ...]:
    return tuple(grace * eta**k for k in range(count))


def planned_epochs(n: int, rung_epochs: tuple[int, ...], eta: int) -> int:
    total, before = 0, 0
    for k, epochs in enumerate(rung_epochs):
        total += math.ceil(n / eta**k) * (epochs - before)
        before = epochs
    return total


def _positive_int(value: object, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SearchError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def plan(
    n: int, *, grace: int = 1, eta: int = 3, rung_count: int | None = None, budget_epochs: int | None = None
) -> Schedule:
    """The schedule of a search over ``n`` candidates.

    Args:
        grace: epochs of the first rung (ASHA's grace period).
        eta: reduction factor (ASHA keeps the best ``1/eta`` at each rung).
        rung_count: the number of rungs; default: as many as ``budget_epochs`` allows (at most until one candidate
            is left), or 3 without a budget.
        budget_epochs: total training epochs over all candidates.

    Raises:
        SearchError: bad numbers, or a budget too small for every candidate's first rung.
    """
    grace, eta = _positive_int(grace, "grace (epochs of the first rung)"), _positive_int(eta, "eta", 2)
    if rung_count is not None:
        _positive_int(rung_count, "rungs")
    if budget_epochs is not None:
        _positive_int(budget_epochs, "budget (epochs)")
        if budget_epochs < n * grace:
            raise SearchError(
                f"a budget of {budget_epochs} epochs is too small for one rung: {n} candidates x {grace} epoch(s) "
                f"need {n * grace}"
            )
    if rung_count is None:
        # without a budget: three rungs; with one: the most that fit, up to the rung where one candidate is left
        useful = min(MAX_RUNGS, 1 + (math.ceil(math.log(n, eta)) if n > 1 else 0))
        rung_count = 3 if budget_epochs is None else 1
        if budget_epochs is not None:
            while rung_count < useful and planned_epochs(n, rungs(grace, eta, rung_count + 1), eta) <= budget_epochs:
                rung_count += 1
    schedule = Schedule(rungs(grace, eta, rung_count), eta)
    if budget_epochs is not None and schedule.planned_epochs(n) > budget_epochs:
        raise SearchError(
            f"{rung_count} rungs {list(schedule.rungs)} need {schedule.planned_epochs(n)} epochs over {n} candidates, "
            f"more than the budget of {budget_epochs}: give fewer rungs or a larger budget"
        )
    return schedule
