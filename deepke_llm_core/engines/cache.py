"""An on-disk answer cache keyed by the request, so a rerun (or a second output file) costs nothing.

Why a file per answer: batch requests finish concurrently and a run may be killed at any moment; writing each
answer to its own file with an atomic rename means no lock, no torn entries and no index to repair. The key is the
SHA-256 of the canonical JSON of engine identity (engine, model, endpoint), messages and sampling parameters.
The API key is not part of the request object and is never written.

>>> import tempfile
>>> cache = ResponseCache(tempfile.mkdtemp())
>>> key = cache.key({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
>>> cache.get(key) is None
True
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .base import Completion

__all__ = ["ResponseCache", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$DEEPKE_LLM_CACHE/icl`` (default ``~/.cache/deepke_llm/icl``), read when called, not at import."""
    from ..tiny import cache_root

    return cache_root() / "icl"


class ResponseCache:
    """``get``/``put`` completions by request key under ``root/<2 hex>/<key>.json``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        """The cached completion, or ``None`` (a missing or unreadable entry is a miss, never an error)."""
        try:
            with open(self._path(key), encoding="utf-8") as handle:
                entry = json.load(handle)
            return Completion(entry["text"], str(entry.get("finish_reason", "stop")), int(entry.get("prompt_tokens", 0)),
                              int(entry.get("completion_tokens", 0)))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, request: dict[str, Any], completion: Completion) -> None:
        """Store atomically (write a temporary file, then rename)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"request": request, "text": completion.text, "finish_reason": completion.finish_reason,
                 "prompt_tokens": completion.prompt_tokens,
                 "completion_tokens": completion.completion_tokens}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(entry, handle, ensure_ascii=False)
        os.replace(tmp, path)
