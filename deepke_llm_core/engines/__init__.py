"""Generation engines by name: one interface (``base.Engine``), three back ends.

* ``transformers`` (alias ``hf``): a local model, base + adapter or merged, batched (``local.py``);
* ``vllm``: the same prompts on vLLM (extra ``gpu``);
* ``ChatGPT`` (alias ``openai``) and ``DeepSeek``: any OpenAI-compatible endpoint (``openai.py``);
* ``Qwen``, ``LLaMA``, ``MiniCPM``, ``ChatGLM``: a local instruct model for in-context learning, with the default
  system message upstream's ICL scripts used.

Adding an engine is one subclass of :class:`Engine` and one line in ``ENGINES``.

>>> sorted(engine_names())[:3]
['ChatGLM', 'ChatGPT', 'DeepSeek']
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Completion, EndpointError, Engine, EngineOptions, Messages, Sampling, user_messages
from .local import ChatModelEngine, TransformersEngine
from .openai import SPANS_NEED_LOCAL, DeepSeekEngine, OpenAICompatibleEngine, resolve_api_key

__all__ = ["Completion", "EndpointError", "Engine", "EngineOptions", "Messages", "Sampling", "user_messages",
           "TransformersEngine", "OpenAICompatibleEngine", "DeepSeekEngine", "ENGINES", "ALIASES", "engine_names",
           "create_engine", "is_endpoint", "check_local_for_spans", "resolve_api_key"]


class LLaMAChatEngine(ChatModelEngine):
    name: ClassVar[str] = "LLaMA"
    default_system: ClassVar[str | None] = "You are a helpful assistant."


class MiniCPMChatEngine(LLaMAChatEngine):
    name: ClassVar[str] = "MiniCPM"


class ChatGLMChatEngine(LLaMAChatEngine):
    name: ClassVar[str] = "ChatGLM"


def _vllm(options: EngineOptions) -> Engine:
    from .vllm import VLLMEngine

    return VLLMEngine(options)


ENGINES: dict[str, Any] = {
    "transformers": TransformersEngine.from_options,
    "vllm": _vllm,
    "ChatGPT": OpenAICompatibleEngine,
    "DeepSeek": DeepSeekEngine,
    "Qwen": ChatModelEngine.from_options,
    "LLaMA": LLaMAChatEngine.from_options,
    "MiniCPM": MiniCPMChatEngine.from_options,
    "ChatGLM": ChatGLMChatEngine.from_options,
}
ALIASES = {"hf": "transformers", "openai": "ChatGPT"}


def engine_names() -> list[str]:
    return list(ENGINES)


def create_engine(name: str, options: EngineOptions | None = None, **fields: Any) -> Engine:
    """Build a registered engine (case-insensitive name); an unknown name lists the valid ones.

    ``fields`` are :class:`EngineOptions` fields, for calls from Python: ``create_engine("hf", model_id=path)``.
    """
    options = options or EngineOptions(**fields)
    match = _factory(name)
    if match is None:
        raise ValueError(f"unknown engine {name!r}; valid engines: {', '.join([*ENGINES, *ALIASES])}")
    return match(options)


def _factory(name: str) -> Any:
    """The registered factory of an engine name or alias (case-insensitive), or None."""
    wanted = ALIASES.get((name or "").lower(), name or "")
    return {key.lower(): make for key, make in ENGINES.items()}.get(wanted.lower())


def is_endpoint(name: str) -> bool:
    """Whether an engine name (or alias) is an OpenAI-compatible endpoint rather than a local model."""
    make = _factory(name)
    return isinstance(make, type) and issubclass(make, OpenAICompatibleEngine)


def check_local_for_spans(name: str, guided: str | None) -> None:
    """``--guided spans`` needs a local engine: refuse it with an endpoint before anything is read or loaded."""
    if guided == "spans" and is_endpoint(name):
        raise ValueError(SPANS_NEED_LOCAL)
