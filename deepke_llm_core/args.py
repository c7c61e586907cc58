"""One way to read settings: every stage is a few small dataclasses, filled from flags, a YAML/JSON file, or code.

The same dataclasses serve the CLI, a YAML recipe in ``cookbook/`` and a notebook's parameters cell
(DESIGN.md §2). transformers' ``HfArgumentParser`` does the parsing (``--flag``/``--flag false`` booleans, lists,
types from the annotations, ``choices`` and ``help`` from field metadata) and rejects unknown settings. Two rules
are ours: a flag is never matched by a prefix (``allow_abbrev=False``: ``--api_key X`` must not silently become
``--api_key_env X``), and ``--no-flag``/``--no_flag`` switch a boolean off, as the draft README's scripts wrote it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any

from .io import DataError

__all__ = ["parse_settings", "settings_from_file"]


def settings_from_file(path: str) -> dict[str, Any]:
    """A YAML/JSON settings file as a mapping; a bad file is a located :class:`DataError` (YAML is read safely:
    ``!!python`` tags are refused)."""
    import json

    if os.path.isdir(path):
        raise DataError(path, None, None, "is a directory; expected a YAML or JSON settings file")
    try:
        with open(path, encoding="utf-8") as handle:
            if path.endswith(".json"):
                settings = json.load(handle)
            else:
                import yaml

                settings = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise DataError(path, None, None, "settings file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, exc.lineno, None, f"not valid JSON: {exc.msg}") from None
    except UnicodeDecodeError:
        raise DataError(path, None, None, "not UTF-8; save the file as UTF-8") from None
    except Exception as exc:  # yaml.YAMLError (imported lazily); its mark says where
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(path, mark.line + 1 if mark else None, None, f"not valid YAML: {problem}") from None
    if not isinstance(settings, dict):
        raise DataError(path, None, None, "expected a mapping of setting names to values")
    return settings


def _file_as_flags(path: str) -> list[str]:
    """A settings file as ``--key value`` flags, so argparse checks and converts every value.

    (Parsing the file straight into the dataclasses would keep ``learning_rate: 5e-5`` as a string: YAML reads
    it so.)
    """
    import json

    flags: list[str] = []
    for key, value in settings_from_file(path).items():
        if value is None:
            continue
        flags += [f"--{key}", json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)]
    return flags


def _boolean_fields(classes: Sequence[type]) -> set[str]:
    import typing

    names = set()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints.get(f.name) in (bool, typing.Optional[bool]):
                names.add(f.name)
    return names


def _negations(argv: list[str], booleans: set[str]) -> list[str]:
    """``--no-progress`` / ``--no_progress`` -> ``--progress false`` for boolean settings."""
    out = []
    for token in argv:
        name = token[5:].replace("-", "_") if token.startswith(("--no-", "--no_")) else None
        out += [f"--{name}", "false"] if name in booleans else [token]
    return out


def parse_settings(classes: Sequence[type], argv: Sequence[str] | None = None, *, prog: str | None = None,
                   description: str | None = None) -> tuple:
    """One instance per dataclass, from flags, or from a ``.yaml``/``.yml``/``.json`` file plus flags that override it.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo:
    ...     learning_rate: float = 1e-4
    ...     progress: bool = True
    >>> parse_settings([Demo], ["--learning_rate", "5e-5", "--no-progress"])[0]
    Demo(learning_rate=5e-05, progress=False)
    """
    parser = _hf_argument_parser()(list(classes), prog=prog, description=description, allow_abbrev=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")) and not argv[0].startswith("-"):
        argv = _file_as_flags(os.path.abspath(argv[0])) + argv[1:]
    argv = _negations(argv, _boolean_fields(classes))
    namespace, unknown = parser.parse_known_args(args=argv)
    if unknown:
        # Name the unknown flags only: a value after a mistyped flag may be a secret (``--api_key sk-...``), and it
        # must not be echoed into a terminal or a log.
        flags = [token.split("=", 1)[0] for token in unknown if token.startswith("-")] or ["(a value without a flag)"]
        known = sorted(action.option_strings[0] for action in parser._actions if action.option_strings
                       and action.option_strings[0] not in ("-h", "--help"))
        near = [k for k in known if any(k.startswith(f[:6]) or f.startswith(k[:6]) for f in flags)][:5]
        raise ValueError(f"unknown setting{'s' if len(flags) > 1 else ''}: {', '.join(flags)}"
                         + (f" (did you mean {', '.join(near)}?)" if near else "") + f"; see {prog or 'the stage'} --help")
    return tuple(parser.parse_args_into_dataclasses(args=argv))


def _hf_argument_parser() -> type:
    """transformers' ``HfArgumentParser``, without importing the transformers package when it is not loaded yet.

    ``import transformers`` builds its lazy-import table by scanning every model folder (about 0.75 s here), which
    is most of the start-up of ``convert`` and ``evaluate``, stages that never touch a model. The parser's module
    uses only the standard library and PyYAML, so it is loaded from transformers' own file under a private name.
    If that ever fails (a future transformers gives it package-relative imports), the normal import is used.
    """
    if "transformers" in sys.modules:
        from transformers import HfArgumentParser

        return HfArgumentParser
    module = sys.modules.get(_PARSER_MODULE)
    if module is None:
        import importlib.util

        try:
            found = importlib.util.find_spec("transformers")  # locates the package without running its __init__
            path = os.path.join(found.submodule_search_locations[0], "hf_argparser.py")  # type: ignore[union-attr]
            spec = importlib.util.spec_from_file_location(_PARSER_MODULE, path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[_PARSER_MODULE] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - any failure: fall back to the package import
            sys.modules.pop(_PARSER_MODULE, None)
            from transformers import HfArgumentParser

            return HfArgumentParser
    return module.HfArgumentParser


_PARSER_MODULE = "deepke_llm_core._hf_argparser"
