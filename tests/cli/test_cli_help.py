"""`--help` written to a file or pipe keeps every option name whole (issue 11: `--trust-checkpo…` at 80 columns)."""

from __future__ import annotations

import subprocess

import click
import pytest
import typer
from cli_helpers import ATTNYOLO
from typer import rich_utils

from attnyolo.cli import app, main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        out += _commands(command, path) if isinstance(command, click.Group) else [(path, command)]
    return out


COMMANDS = [(p, c) for p, c in _commands(typer.main.get_command(app)) if c.add_help_option]  # not `yolo`


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_option_name_is_printed_whole_without_a_terminal(monkeypatch, capsys, path, command):
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    monkeypatch.setattr(rich_utils, "MAX_WIDTH", None)  # as a fresh process starts
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    names = ["--help"] + [
        n for p in command.params if isinstance(p, click.Option) for n in (*p.opts, *p.secondary_opts)
    ]
    missing = [n for n in names if n not in out.replace("│", " ").split()]
    assert missing == [], out
    assert "…" not in out


def test_the_console_script_in_a_pipe_keeps_long_option_names(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k not in {"COLUMNS", "TERMINAL_WIDTH"}}
    out = subprocess.run([ATTNYOLO, "finetune", "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "--trust-checkpoint" in out.stdout and "--no-identity-start" in out.stdout and "…" not in out.stdout
