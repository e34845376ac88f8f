"""`attnyolo ablate`'s attention-recipe flags: what they put into the grid, and bad values in one line."""

from __future__ import annotations

import pytest

from attnyolo.cli import main
from attnyolo.data.base_checkpoint import base_path
from attnyolo.experiments import driver


class _Stop(Exception):
    """Raised by the stand-in for the grid driver: the grid options the CLI built are all these tests need."""


@pytest.fixture
def options_given(monkeypatch):
    given = []

    def capture(grid, **kwargs):
        given.append(kwargs)
        raise _Stop

    monkeypatch.setattr(driver, "ablate", capture)
    return given


def _argv(data, out, *flags):
    return ["ablate", "--weights", str(base_path()), "--data", str(data), "-a", "se", "-o", str(out), *flags]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], None),  # not named: the driver decides (default for a new grid, the stored one when resuming)
        (["--attention-recipe", "none"], "none"),
        (["--attention-recipe", "default"], "default"),
        (["--gamma-lr-scale", "1000"], {"warmup_epochs": 1, "new_lr_scale": 100.0, "gamma_lr_scale": 1000.0,
                                         "new_max_lr": 0.01, "gamma_max_lr": 0.03}),
        (["--attention-warmup", "0", "epochs=1"], {"new_lr_scale": 100.0, "gamma_lr_scale": 300.0,
                                                    "new_max_lr": 0.01, "gamma_max_lr": 0.03}),
    ],
)  # fmt: skip
def test_recipe_flags_reach_the_grid(default_data, tmp_path, options_given, flags, expected):
    with pytest.raises(_Stop):
        main(_argv(default_data, tmp_path / "g", *flags, *([] if "epochs=1" in flags else ["epochs=2"])))
    assert options_given[0].get("attention_recipe") == expected


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--attention-recipe", "none", "--attention-warmup", "1"],
         "--attention-recipe none takes no --attention-warmup"),
        (["--attention-warmup", "3"], "warmup_epochs=3 is longer than the run (epochs=2)"),
        (["--new-lr-scale", "-5"], "new_lr_scale must be a learning-rate factor > 0 (e.g. 10 or 100), got -5.0"),
    ],
)  # fmt: skip
def test_bad_recipe_flags_are_one_line_before_the_grid(capsys, default_data, tmp_path, options_given, flags, message):
    rc = main(_argv(default_data, tmp_path / "g", *flags, "epochs=2"))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("attnyolo: error: ") and err.count("\n") == 1, err
    assert message in err and options_given == [] and not (tmp_path / "g").exists()


def test_an_unknown_recipe_value_is_one_line_naming_it(capsys, default_data, tmp_path):
    rc = main(_argv(default_data, tmp_path / "g", "--attention-recipe", "fast", "epochs=2"))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "attention_recipe must be default or none or a mapping" in err and "got 'fast'" in err
    assert not (tmp_path / "g").exists()
