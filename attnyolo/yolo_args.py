"""Ultralytics ``key=value`` arguments checked before Ultralytics sees them, so a typo is one line, not a traceback.

Ultralytics' own checks (``check_dict_alignment`` in ``ultralytics/cfg/__init__.py``) print its whole CLI help and
raise ``SyntaxError`` from deep inside the entrypoint; ``attnyolo finetune`` and ``attnyolo yolo`` check first and
raise :class:`YoloArgumentError` naming the bad key and the closest valid ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from attnyolo.errors import AttnYoloError

DEPRECATED_KEYS = frozenset(
    {"boxes", "hide_labels", "hide_conf", "line_thickness", "end2end", "half", "int8"}
    | {"label_smoothing", "save_hybrid", "crop_fraction", "keras"}
)
"""Keys Ultralytics still accepts and maps or drops with a warning (its ``_handle_deprecation``)."""

SPECIAL_COMMANDS = ("checks", "version", "settings", "cfg", "login", "logout", "copy-cfg", "solutions", "help")
"""Words that make ``yolo`` run a command of its own and ignore the rest (its ``entrypoint``'s ``special``)."""


class YoloArgumentError(AttnYoloError):
    """An Ultralytics argument with an unknown key or a value of the wrong type."""


def unknown_key_message(key: str, valid: Iterable[str], what: str = "an Ultralytics argument") -> str:
    """``'epoch' is not an Ultralytics argument; did you mean epochs?`` (up to three close matches)."""
    close = difflib.get_close_matches(key, sorted(valid), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"{key!r} is not {what}{hint}"


def check_values(overrides: Mapping[str, Any]) -> None:
    """Type-check values with Ultralytics' own ``get_cfg`` (``epochs=abc`` fails here)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, get_cfg

    try:
        get_cfg(DEFAULT_CFG_DICT, dict(overrides))
    except (TypeError, ValueError, SyntaxError) as e:
        raise YoloArgumentError(f"bad yolo argument: {' '.join(str(e).split())}") from None


def _special_words() -> set[str]:
    # the spellings Ultralytics accepts: help, h, -h, --help, checks, check, --version, ...
    words = set(SPECIAL_COMMANDS)
    words |= {w[0] for w in SPECIAL_COMMANDS} | {w[:-1] for w in SPECIAL_COMMANDS if w.endswith("s")}
    return words | {f"-{w}" for w in words} | {f"--{w}" for w in words}


def check_cli_args(tokens: list[str]) -> None:
    """Check the arguments of ``yolo TASK MODE key=value ...`` as Ultralytics' entrypoint will read them.

    Raises:
        YoloArgumentError: an unknown key or word (with the closest valid ones), a non-boolean key without a
            value, or a value of the wrong type.
    """
    from ultralytics.cfg import DEFAULT_CFG_DICT, MODES, TASKS, merge_equals_args, smart_value

    keys = set(DEFAULT_CFG_DICT) | DEPRECATED_KEYS | {"cfg"}
    words = set(TASKS) | set(MODES)
    special = _special_words()
    overrides: dict[str, Any] = {}
    for token in merge_equals_args(list(tokens)):
        a = token[2:] if token.startswith("--") and "=" in token else token
        a = a[:-1] if a.endswith(",") else a
        if "=" in a:
            key, _, value = a.partition("=")
            key = key.strip()
            if key not in keys:
                raise YoloArgumentError(unknown_key_message(key, keys))
            if key in DEFAULT_CFG_DICT:
                overrides[key] = smart_value(value.strip())
        elif a in words or a in DEPRECATED_KEYS:
            continue
        elif a.lower() in special:
            return  # Ultralytics runs that command and ignores what follows
        elif a in DEFAULT_CFG_DICT:
            if not isinstance(DEFAULT_CFG_DICT[a], bool):
                raise YoloArgumentError(f"{a!r} needs a value: {a}={DEFAULT_CFG_DICT[a]}")
        else:
            raise YoloArgumentError(unknown_key_message(a, keys | words, "an Ultralytics argument, task or mode"))
    check_values(overrides)
