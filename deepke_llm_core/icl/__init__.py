"""In-context learning: PromptCraft prompts, validated demonstrations, API and local engines, batch runs.

``deepke-llm icl`` (``run.py``) is the command; the pieces are usable alone:

>>> from deepke_llm_core.icl import build_icl_prompt
>>> build_icl_prompt("rte", "zh", "小明出生于杭州。").endswith("输入：小明出生于杭州。\\n输出：")
True

Importing this package loads neither ``openai`` nor ``torch``; engines (``deepke_llm_core.engines``) import them
when first used.
"""

from ..engines import (ENGINES, Completion, EndpointError, Engine, EngineOptions, OpenAICompatibleEngine, Sampling,
                       create_engine, engine_names, resolve_api_key)
from ..engines.cache import ResponseCache
from ..engines.runner import cached_complete
from .batch import read_batch_records, run_batch
from .demos import load_demos, normalize_demos
from .prompts import ICL_TASKS, build_icl_prompt, default_instruction, examples_block, query_text
from .run import main, parse_icl_args, run_icl

__all__ = [
    "ICL_TASKS", "build_icl_prompt", "default_instruction", "examples_block", "query_text",
    "load_demos", "normalize_demos",
    "ENGINES", "Engine", "EngineOptions", "Sampling", "Completion", "EndpointError", "OpenAICompatibleEngine",
    "create_engine", "engine_names", "resolve_api_key",
    "ResponseCache", "cached_complete", "read_batch_records", "run_batch",
    "parse_icl_args", "run_icl", "main",
]
