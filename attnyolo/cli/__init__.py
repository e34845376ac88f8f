"""The ``attnyolo`` command line: ``app.py`` holds the Typer app and :func:`main` (the one place where errors
become one line); each other file holds one command group and adds it with ``register_commands(app)``."""

from attnyolo.cli.app import app, main

__all__ = ["app", "main"]
