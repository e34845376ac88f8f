"""`attnyolo list` and `attnyolo describe` print the registry: every module, filtered by category."""

import pytest

import attnyolo
from attnyolo.cli import main
from attnyolo.registry import CATEGORIES


def cli_output(capsys, *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_list_shows_every_registered_module(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = cli_output(capsys, "list")
    names = attnyolo.available()
    assert f"attnyolo zoo: {len(names)} modules" in out
    listed = {line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")}
    assert listed == set(names)


@pytest.mark.parametrize("category", CATEGORIES)
def test_list_filters_by_category(capsys, category, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = cli_output(capsys, "list", "--category", category)
    rows = [line.split("│") for line in out.splitlines() if line.startswith("│")]
    assert {r[1].strip() for r in rows} == set(attnyolo.available(category))
    assert {r[2].strip() for r in rows} == {category}


def test_every_family_of_the_survey_is_populated():
    assert all(attnyolo.available(c) for c in CATEGORIES)


def test_describe_prints_the_spec(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = cli_output(capsys, "describe", "cbam")
    spec = attnyolo.describe("cbam")
    assert spec.paper in out and str(spec.year) in out
    assert "rd_ratio=0.0625" in out


def test_describe_unknown_name_is_one_line_with_close_names(capsys):
    assert main(["describe", "cbma"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown attention 'cbma'" in err[0] and "cbam" in err[0]


def test_list_unknown_category_is_one_line(capsys):
    assert main(["list", "--category", "colour"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown category 'colour'" in err[0]
