"""``python -m attnyolo.bench <command> [options]``; ``--help`` on a command lists its options."""

from __future__ import annotations

import sys
from collections.abc import Sequence

COMMANDS = {"modules": "attnyolo.bench.modules", "neck": "attnyolo.bench.neck"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        known = ", ".join(COMMANDS)
        print(f"usage: python -m attnyolo.bench {{{known}}} [options]", file=sys.stderr)
        if argv and argv[0] not in {"-h", "--help"}:
            print(f"unknown command {argv[0]!r}; choose one of: {known}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    from importlib import import_module

    return import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
