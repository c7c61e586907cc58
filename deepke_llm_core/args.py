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


def parse_settings(classes: Sequence[type], argv: Sequence[str] | None = None) -> tuple:
    """One instance per dataclass, from ``argv`` flags or from a single ``.yaml``/``.yml``/``.json`` path."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(list(classes))
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return tuple(parser.parse_yaml_file(os.path.abspath(argv[0])))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return tuple(parser.parse_json_file(os.path.abspath(argv[0])))
    return tuple(parser.parse_args_into_dataclasses(args=argv))
