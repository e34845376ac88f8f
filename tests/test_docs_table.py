"""The README's generated parts match the code."""

from pathlib import Path

from attnyolo.docs_table import replace_in

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_zoo_table_is_up_to_date():
    text = README.read_text()
    assert replace_in(text) == text, "run: python -m attnyolo.docs_table --write"


def test_readme_has_exactly_two_setup_commands_first():
    text = README.read_text()
    setup = text.split("## Set-up: two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in setup.strip().splitlines()]
    assert commands == ["make demo", "make test"]
