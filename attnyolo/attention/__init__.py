"""The attention zoo, one file per family of ideas (``channel.py``, ``spatial.py``, ``coordinate.py``...).

Each module's survey category is data in its spec (:mod:`attnyolo.registry`), not its file name.
Importing this package imports every file in it, which runs every ``@register`` decorator once.
"""

import pkgutil
from importlib import import_module

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        import_module(f"{__name__}.{_info.name}")
