"""``attnyolo.search()``: which attention, where. Successive halving on Ray Tune, then a seeded confirmation.

Order of work, so that bad input never trains and never touches a stored search:

1. candidates (names x places), cost limits, the data and the start, every candidate inserted into the base;
2. costs measured on the built models, candidates over a limit pruned (none left: one line);
3. the rungs planned for the candidates left (a budget too small for one rung: one line), the grid of the runs
   resolved (recipe keys, seeds, attention recipe);
4. the folder: a new one, or the same search again (resume; another search's folder is refused);
5. the rungs on Ray Tune (:mod:`attnyolo.search.rungs`), every rung of every candidate a row of ``search.sqlite``;
6. the top ``k`` (highest rung reached, then its score) through an ordinary seeded ``ablate`` grid against the
   control in ``SEARCH_DIR/confirm`` (resumable as any grid), its verdicts (paired bootstrap intervals, Holm);
7. ``SEARCH_DIR/report.md``.

Running the same search again on the same folder resumes it: candidates whose rungs finished are not trained again
(their scores are replayed to ASHA), a killed candidate continues from its ``last.pt``, the confirmation grid
keeps its finished runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from attnyolo.atomic import write_atomically
from attnyolo.data.check import check_data
from attnyolo.errors import AttnYoloError
from attnyolo.experiments import ray_executor
from attnyolo.experiments.driver import ablate
from attnyolo.experiments.executors import default_threads
from attnyolo.experiments.grid import Grid, differences, resolve
from attnyolo.finetune import load_base
from attnyolo.finetune.recipe import recipe_from
from attnyolo.report import Analysis, write_report
from attnyolo.search import costs as search_costs
from attnyolo.search.candidates import Candidate, SearchError, candidates, check_candidates
from attnyolo.search.report import write_search_report
from attnyolo.search.schedule import Schedule, plan
from attnyolo.search.store import DB_NAME, RUNS, SearchStore

SEARCH_YAML = "search.yaml"
CONFIRM = "confirm"
DEFAULT_IMGSZ = 640  # Ultralytics' default: the FLOPs of a recipe that sets no imgsz


@dataclass
class SearchResult:
    """What a search found: its folder, the ranking by rungs, the top candidates and their verdicts."""

    folder: Path
    ranking: list[dict]
    """``label, rung, epoch, map50_95`` of every candidate scored, best first (highest rung, then its score)."""
    top: list[str]
    failed: dict[str, str]
    """``label -> error`` of candidates whose training failed in this session."""
    verdicts: Analysis | None
    """The confirmation grid's analysis (``None`` with ``confirm=False``)."""
    report: Path


def _positive(value: Any, what: str, kind: type = int) -> Any:
    ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int) and value > 0
    if not ok:
        raise SearchError(f"{what} must be {'a number' if kind is float else 'an integer'} > 0, got {value!r}")
    return value


def rank(rows: list[dict], order: list[str]) -> list[dict]:
    """Every scored candidate's furthest rung and its score there, best first: the furthest rung (ASHA's
    decisions), then the score at it, then the candidates' order (ties keep it)."""
    furthest: dict[str, dict] = {}
    for r in rows:
        if r["label"] not in furthest or r["rung"] > furthest[r["label"]]["rung"]:
            furthest[r["label"]] = r
    return sorted(
        ({k: r[k] for k in ("label", "rung", "epoch", "map50_95")} for r in furthest.values()),
        key=lambda r: (-r["rung"], -r["map50_95"], order.index(r["label"])),
    )


def confirmation_seeds(seeds: Any, rung_seed: int) -> Any:
    """A count of confirmation seeds starts after the rungs' seed: the confirmation then never re-runs a rung's own
    run (same start, seed and recipe: the same numbers), which picked the candidate; a list is taken as given."""
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds > 0:
        return list(range(rung_seed + 1, rung_seed + 1 + seeds))
    return seeds


def lead_in(attention_recipe: Any, weights: str | None, freeze_epochs: int) -> int:
    """Epochs each run trains before its rungs count: the attention warm-up or ``freeze_epochs`` (one at most).

    During it only the new tensors train on a frozen base, where the candidates barely differ. The recipe is read
    for a long run (the default's warm-up needs 2 epochs; a search's runs are the lead-in plus at least one);
    a bad value counts 0 here and is named by the grid's resolve.
    """
    if weights is None:
        return 0  # from scratch: nothing is new to a base (the grid refuses a recipe or freezing)
    try:
        recipe = recipe_from(attention_recipe, None, freeze_epochs)
    except AttnYoloError:
        return 0
    return (recipe.warmup_epochs if recipe is not None else 0) + int(freeze_epochs or 0)


def _plan_search(args: Mapping[str, Any]) -> tuple[list[Candidate], dict, Schedule, Grid, list[str]]:
    """Steps 1-3 of the module docstring: ``(candidates, costs by label, schedule, grid of survivors, survivors)``."""
    found = candidates(args["attention"], args["where"])
    lim = search_costs.limits(args["max_params"], args["max_gflops_ratio"], args["max_latency_ratio"])
    _positive(args["top"], "top (candidates confirmed)")
    _positive(args["seed"] + 1, "seed (>= 0)")
    if args["budget_hours"] is not None:
        _positive(args["budget_hours"], "budget_hours", float)
    recipe = dict(args["recipe"] or {})
    if "epochs" in recipe:
        raise SearchError("epochs= is set by the rungs (--grace, --eta, --rungs, --budget-epochs), not by the recipe")
    if not args["data"]:
        raise SearchError("a search needs data: an Ultralytics data YAML (`attnyolo data default` is the embedded one)")
    if (args["weights"] is None) == (args["model"] is None):
        raise SearchError("give exactly one start: --weights BASE.pt (fine-tune) or --model MODEL.yaml (scratch)")
    info = check_data(str(args["data"]))
    base = load_base(args["weights"], args["model"], trust=args["trust"], user="search")
    edited = check_candidates(base.cfg, found, args["identity_start"])
    imgsz = int(recipe.get("imgsz", DEFAULT_IMGSZ))
    measured = search_costs.measure(base.cfg, edited, int(info["nc"]), imgsz, latency=lim.max_latency_ratio is not None)
    base_params = next(iter(measured.values())).params - next(iter(measured.values())).added_params
    search_costs.prune(measured, base_params, lim)
    survivors = [c for c in found if not measured[c.label].pruned]
    schedule = plan(
        len(survivors), grace=args["grace"], eta=args["eta"], rung_count=args["rungs"],
        budget_epochs=args["budget_epochs"],
    )  # fmt: skip
    chosen = "default" if args["attention_recipe"] is None else args["attention_recipe"]  # as a new ablate grid
    schedule = replace(schedule, lead_in=lead_in(chosen, args["weights"], args["freeze_epochs"]))
    grid = resolve(
        {
            "data": str(args["data"]),
            "weights": None if args["weights"] is None else str(args["weights"]),
            "model": args["model"],
            "recipe": {**recipe, "epochs": schedule.run_epochs},
            "seeds": confirmation_seeds(args["seeds"], args["seed"]),
            "variants": [c.variant.as_dict() for c in survivors],
            "identity_start": args["identity_start"],
            "trust": args["trust"],
            "freeze_epochs": args["freeze_epochs"],
            "attention_recipe": chosen,
        }
    )
    return found, measured, schedule, grid, [c.label for c in survivors]


def _open(folder: Path, config: dict) -> SearchStore:
    if (folder / DB_NAME).is_file():
        with SearchStore(folder) as stored:
            diff = differences(stored.config(), config)
        if diff:
            raise SearchError(
                f"{folder} holds another search ({'; '.join(diff[:3])}): give another --out folder, or the same "
                f"arguments to resume it"
            )
        return SearchStore(folder)
    if folder.exists() and any(folder.iterdir()):
        raise SearchError(f"{folder} is not empty and holds no {DB_NAME}: give an empty or new --out folder")
    store = SearchStore.create(folder, config)
    write_atomically(folder / SEARCH_YAML, lambda tmp: tmp.write_text(yaml.safe_dump(config, sort_keys=False)))
    return store


def load_arguments(folder: str | os.PathLike) -> dict:
    """The arguments a search folder was started with (``search.yaml``): what ``--resume`` runs again."""
    path = Path(folder) / SEARCH_YAML
    if not path.is_file():
        raise SearchError(f"--resume: {path} does not exist, nothing to resume; give the search's arguments")
    return dict(yaml.safe_load(path.read_text())["arguments"])


def search(
    attention: Any = None,
    where: Any = "neck",
    *,
    data: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    model: str | None = None,
    out: str | os.PathLike = "runs/search",
    recipe: Mapping[str, Any] | None = None,
    grace: int = 1,
    eta: int = 3,
    rungs: int | None = None,
    budget_epochs: int | None = None,
    budget_hours: float | None = None,
    top: int = 3,
    seeds: Any = 3,
    max_params: int | str | None = None,
    max_gflops_ratio: float | None = None,
    max_latency_ratio: float | None = None,
    identity_start: bool = True,
    trust: bool = False,
    freeze_epochs: int = 0,
    attention_recipe: str | Mapping[str, Any] | None = None,
    seed: int = 0,
    concurrency: int = 1,
    threads: int | None = None,
    address: str | None = None,
    ray_num_cpus: int | None = None,
    ray_timeout: float = ray_executor.RAY_CONNECT_TIMEOUT_S,
    confirm: bool = True,
    resamples: int = 10_000,
    console: Any = None,
) -> SearchResult:
    """Search attention names x placements by successive halving (Ray Tune's ASHA), then confirm the best.

    Args:
        attention: zoo names (``"se,eca"`` or a list).
        where: placements: ``neck``, ``backbone``, ``before_head``, ``inside`` (``"neck,inside"`` or a list).
        data, weights, model: the data YAML and the start (a base checkpoint to fine-tune, or a model YAML).
        out: the search folder (``search.sqlite``, ``runs/<candidate>``, ``tune/``, ``confirm/``, ``report.md``).
        recipe: Ultralytics training arguments of every run (not ``epochs``: the rungs set it).
        grace, eta, rungs: epochs of the first rung, the reduction factor, the number of rungs (default: what
            ``budget_epochs`` allows, else 3); rung k is ``grace * eta**k`` epochs after the lead-in (the attention
            warm-up or ``freeze_epochs``, which every run trains first: :func:`lead_in`).
        budget_epochs: total epochs over all candidates (once reached, no candidate goes past its first rung);
            budget_hours: wall hours of the rungs of one session (Ray Tune's ``time_budget_s``).
        top, seeds: candidates confirmed, and the confirmation grid's seeds (a count or a list).
        max_params, max_gflops_ratio, max_latency_ratio: cost limits applied before training (see
            :func:`attnyolo.search.costs.limits`).
        identity_start, trust, freeze_epochs, attention_recipe: as the ``ablate`` grid keys (``attention_recipe``:
            ``"default"``, ``"none"`` or a mapping; ``None``: the default with ``weights``).
        seed: the seed of every rung run (same data order for every candidate).
        concurrency, threads: candidates training at once, and torch threads (Ray CPUs) of each.
        address, ray_num_cpus, ray_timeout: Ray cluster address (``None``: a local instance of ``ray_num_cpus``).
        confirm: run the confirmation grid (default); ``False`` stops after the rungs.

    Raises:
        SearchError and the engine's errors: bad input, before anything trains.
    """
    args = {k: v for k, v in locals().items() if k not in {"out", "console", "address", "ray_timeout", "resamples"}}
    args = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in args.items()}
    args["recipe"] = dict(recipe or {})
    if isinstance(attention_recipe, Mapping):
        args["attention_recipe"] = dict(attention_recipe)  # else default, none or None: the grid checks it
    folder = Path(out)
    _positive(concurrency, "concurrency")
    if isinstance(address, str) and address.strip().lower().startswith("ray://"):
        # the keeper of the run folders lives on the driver's node: a Ray Client driver has none in the cluster
        raise SearchError(
            f"--address {address}: a search's driver must run on a node of the cluster (Ray Client, ray://, is not "
            "supported): run attnyolo search on the head node with --address auto or HEAD_IP:6379"
        )
    found, measured, schedule, grid, survivors = _plan_search(args)
    config = json.loads(
        json.dumps(
            {
                "arguments": {k: v for k, v in args.items() if k not in {"concurrency", "threads", "ray_num_cpus"}},
                "candidates": [c.label for c in found],
                "rungs": list(schedule.rungs),
                "eta": schedule.eta,
                "lead_in": schedule.lead_in,
                "grid": grid.config(),
            }
        )
    )
    store = _open(folder, config)
    try:
        store.add_candidates(
            [
                {
                    "label": c.label,
                    "position": i,
                    "attention": c.attention,
                    "place": c.place,
                    **asdict(measured[c.label]),
                }
                for i, c in enumerate(found)
            ]
        )
        threads = threads or default_threads(concurrency)
        run_rungs, train_candidate, start_keeper, kill_actor = _ray_tune_parts()
        owned = ray_executor.init_ray(address, ray_num_cpus, ray_timeout)
        keeper = None
        try:
            gpus = ray_executor.ray_gpus({"config": grid.config()})
            ray_executor.check_fits(threads, gpus)
            token, keeper = start_keeper(folder / RUNS)
            failed = run_rungs(
                store,
                survivors,
                schedule,
                train_candidate,
                {
                    "search_dir": str(folder.resolve()),
                    "grid": grid.config(),
                    "variants": {c.label: c.variant.as_dict() for c in found if c.label in survivors},
                    "seed": seed,
                    "threads": threads,
                    "token": token,
                    "lead_in": schedule.lead_in,
                },
                concurrency=concurrency,
                cpus_per_trial=threads,
                gpus_per_trial=gpus,
                budget_epochs=budget_epochs,
                budget_seconds=None if budget_hours is None else budget_hours * 3600,
            )
        finally:
            if keeper is not None:
                kill_actor(keeper)
            if owned:
                ray_executor.shutdown()
        ranking = rank(store.rungs(), survivors)
        chosen = [r["label"] for r in ranking[:top]]
        analysis = None
        if confirm and chosen:
            analysis = _confirm(
                folder, grid, found, chosen, address, ray_num_cpus, concurrency, threads, resamples, console
            )  # fmt: skip
        complete = analysis is not None or not confirm
        if complete:
            store.mark_finished()
        report = write_search_report(folder, store, schedule, config, ranking, chosen, analysis, failed)
    finally:
        store.close()
    return SearchResult(folder, ranking, chosen, failed, analysis, report)


def _ray_tune_parts():
    """``(run_rungs, train_candidate, start_keeper, kill_actor)``: imported here, not at the top, because Ray Tune
    is optional (the ``ray`` extra) and slow to import; ``import attnyolo`` (which exports :func:`search`) must need
    neither."""
    try:
        from ray import kill as kill_actor

        from attnyolo.search.run_mirror import start_keeper
        from attnyolo.search.rungs import run_rungs
        from attnyolo.search.trainable import train_candidate
    except ImportError as e:
        raise SearchError(f"attnyolo search runs on Ray Tune ({e}): pip install 'attnyolo[ray]'") from None
    return run_rungs, train_candidate, start_keeper, kill_actor


def _confirm(
    folder: Path,
    grid: Grid,
    found: list[Candidate],
    chosen: list[str],
    address: str | None,
    ray_num_cpus: int | None,
    concurrency: int,
    threads: int,
    resamples: int,
    console: Any,
) -> Analysis:
    """The top candidates against the control: an ordinary seeded ablate grid (same start, same recipe and epochs
    as the last rung), and its report's verdicts. On this machine it runs ``concurrency`` runs at once, as the rungs
    did (local worker processes of ``threads`` torch threads each)."""
    by_label = {c.label: c for c in found}
    config = {**grid.config(), "variants": [by_label[label].variant.as_dict() for label in chosen]}
    config.pop("weights_sha256", None)  # resolve() computes it again
    config["attention_recipe"] = dict(grid.attention_recipe) or "none"  # the rungs' own, never ablate's default
    executor = "ray" if address else "local"
    ablate(
        config, out=folder / CONFIRM, executor=executor, address=address, ray_num_cpus=ray_num_cpus,
        workers=concurrency if executor == "local" else 1, threads=threads, console=console,
    ).close()  # fmt: skip
    analysis, _, _ = write_report(folder / CONFIRM, resamples=resamples, gallery=0, progress=None)
    return analysis
