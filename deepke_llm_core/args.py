"""Settings from the command line or from one YAML/JSON file, into the stage's config dataclasses.

The same dataclasses serve the CLI, a YAML recipe in ``cookbook/`` and a notebook's parameters cell
(DESIGN.md §2); transformers' ``HfArgumentParser`` does the parsing, including ``--flag``/``--no_flag`` booleans,
and rejects unknown settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["parse_settings"]


def _file_as_flags(path: str) -> list[str]:
    """A YAML/JSON settings file as ``--key value`` flags, so argparse checks and converts every value.

    (Parsing the file straight into the dataclasses would keep ``learning_rate: 5e-5`` as a string: YAML reads
    it so.)
    """
    import json

    with open(path, encoding="utf-8") as handle:
        if path.endswith(".json"):
            settings = json.load(handle)
        else:
            import yaml

            settings = yaml.safe_load(handle) or {}
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: expected a mapping of setting names to values")
    flags: list[str] = []
    for key, value in settings.items():
        if value is None:
            continue
        flags += [f"--{key}", json.dumps(value) if isinstance(value, (list, dict)) else str(value)]
    return flags


def parse_settings(classes: Sequence[type], argv: Sequence[str] | None = None) -> tuple:
    """One instance per dataclass, from flags, or from a ``.yaml``/``.yml``/``.json`` file plus flags that override it.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo:
    ...     learning_rate: float = 1e-4
    >>> parse_settings([Demo], ["--learning_rate", "5e-5"])[0].learning_rate
    5e-05
    """
    from transformers import HfArgumentParser

    parser = HfArgumentParser(list(classes))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")) and not argv[0].startswith("-"):
        argv = _file_as_flags(os.path.abspath(argv[0])) + argv[1:]
    return tuple(parser.parse_args_into_dataclasses(args=argv))
