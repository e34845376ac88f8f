"""Bad input to a search: one line each, before anything trains or any folder is written."""

from __future__ import annotations

import pytest

from attnyolo.cli.app import main
from attnyolo.registry import UnknownModuleError
from attnyolo.search import SearchError, candidates, search
from attnyolo.search.candidates import INSIDE, PLACES


def test_candidates_are_names_times_places_in_order():
    found = candidates("se,ECA", ["neck", "inside"])
    assert [c.label for c in found] == ["se@neck", "se@inside", "eca@neck", "eca@inside"]
    # `inside` is what ablate writes as the variant with hparams inside=true in the neck
    assert found[1].variant.as_dict() == {"attention": "se", "where": "neck", "hparams": {"inside": True}}
    assert found[0].variant.as_dict() == {"attention": "se", "where": "neck", "hparams": {}}
    assert set(PLACES) == {"neck", "backbone", "before_head", INSIDE}


@pytest.mark.parametrize(
    ("attention", "where", "error", "message"),
    [
        ("", "neck", SearchError, "no attention to search"),
        ("se", [], SearchError, "no placement to search"),
        ("se", "neck,nekc", SearchError, "unknown placement 'nekc' (did you mean neck?)"),
        ("sse", "neck", UnknownModuleError, "unknown attention 'sse'; did you mean"),
    ],
)
def test_bad_candidates_are_one_line(attention, where, error, message):
    with pytest.raises(error) as e:
        candidates(attention, where)
    assert message in str(e.value) and "\n" not in str(e.value)


def run_search(tmp_path, default_data, **kwargs):
    options = {"attention": "se,eca", "where": "neck", "data": default_data, "model": "yolov8n.yaml",
               "out": tmp_path / "s", "recipe": {"imgsz": 64}}  # fmt: skip
    return search(**{**options, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget_epochs": 1}, "a budget of 1 epochs is too small for one rung: 2 candidates x 1 epoch(s) need 2"),
        (
            {"max_params": 10},
            "no candidate meets the cost limits (added params <= 10): the cheapest, eca@neck, adds 16",
        ),
        ({"max_params": "ten"}, "--max-params must be a count of added parameters (20000) or a share"),
        ({"max_gflops_ratio": 0}, "--max-gflops-ratio must be a ratio > 0"),
        ({"recipe": {"epochs": 5}}, "epochs= is set by the rungs"),
        ({"recipe": {"imgsz": 64, "sed": 1}}, "sed"),
        ({"top": 0}, "top (candidates confirmed) must be an integer > 0, got 0"),
        ({"where": "inside,backbone,top"}, "unknown placement 'top'"),
        ({"model": None}, "give exactly one start"),
        ({"address": "ray://head:10001"}, "--address ray://head:10001: a search's driver must run on a node"),
        ({"concurrency": 0}, "concurrency must be an integer > 0, got 0"),
    ],
)
def test_bad_search_input_is_one_line_before_anything_is_written(tmp_path, default_data, kwargs, message):
    with pytest.raises(Exception) as e:  # noqa: PT011  (SearchError or the grid's own errors: the message matters)
        run_search(tmp_path, default_data, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "s").exists()


def test_the_cli_prints_bad_input_as_one_line(tmp_path, default_data, capsys):
    code = main(["search", "-a", "se", "-w", "neck,middle", "--model", "yolov8n.yaml", "--data", str(default_data),
                 "-o", str(tmp_path / "s")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("attnyolo: error: unknown placement 'middle'") and "\n" not in err


def test_a_folder_holding_another_search_is_refused_in_one_line(tmp_path):
    from attnyolo.search.driver import _open

    config = {"arguments": {"attention": ["se"], "top": 3}, "rungs": [1, 3]}
    _open(tmp_path / "s", config).close()
    _open(tmp_path / "s", config).close()  # the same search: reopened (resume)
    with pytest.raises(SearchError) as e:
        _open(tmp_path / "s", {**config, "rungs": [1, 3, 9]})
    assert str(e.value).startswith(f"{tmp_path / 's'} holds another search (rungs: stored [1, 3], given [1, 3, 9])")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SearchError, match="is not empty and holds no search.sqlite"):
        _open(tmp_path / "other", config)
