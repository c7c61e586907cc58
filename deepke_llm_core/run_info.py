"""What a trained adapter or model remembers about how it was trained, and the check made at inference.

Written as ``deepke_llm.json`` next to every adapter, checkpoint and exported model this project writes. The
template matters most: a fine-tuned model prompted with another template emits text that is not JSON, and F1
silently drops to 0 (the most reported upstream failure). Inference therefore uses the stored template by
default and refuses a different one with the fix spelled out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["RUN_INFO_FILE", "write_run_info", "stored_run_info", "resolve_template", "require_chat_template"]

RUN_INFO_FILE = "deepke_llm.json"


def write_run_info(folder: str | os.PathLike, info: dict[str, Any]) -> None:
    """Store ``info`` as ``deepke_llm.json`` in ``folder``."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / RUN_INFO_FILE, "w", encoding="utf-8") as handle:
        json.dump(info, handle, ensure_ascii=False, indent=2)


def stored_run_info(*folders: str | os.PathLike | None) -> dict[str, Any]:
    """The run info of the first folder that has one (adapter first, then the model), or ``{}``.

    A ``checkpoint-N`` folder inside a training run finds the run's info in its parent.
    """
    for folder in folders:
        if not folder:
            continue
        for candidate in (Path(folder), Path(folder).parent):
            if (candidate / RUN_INFO_FILE).is_file():
                from .io import read_json

                info = read_json(candidate / RUN_INFO_FILE)
                if not isinstance(info, dict):
                    from .io import DataError

                    raise DataError(candidate / RUN_INFO_FILE, None, None, "expected a JSON object")
                return info
    return {}


def resolve_template(requested: str | None, info: dict[str, Any], where: str) -> str:
    """The template to use: the requested one, which must match the stored one, else the stored one, else auto."""
    stored = info.get("template")
    if requested is None:
        return stored or "auto"
    if stored and requested != stored:
        raise ValueError(f"{where} was trained with --template {stored}, not {requested}: pass --template {stored} "
                         "(or omit --template to use the stored one)")
    return requested


def require_chat_template(template: str, tokenizer: Any, model: str | os.PathLike, option: str = "--template") -> None:
    """``auto`` renders with the tokenizer's chat template; a base model without one needs a legacy template name."""
    if template == "auto" and not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{model} has no chat template: pass {option} with a legacy name (alpaca, llama2, llama2_zh, "
                         "qwen, ...) that matches how the model was trained")
