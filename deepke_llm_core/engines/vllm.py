"""The vLLM engine (extra ``gpu``): the same prompts as the transformers engine, much faster on a GPU.

Prompts are rendered and tokenized by the project's own code (``encoding.encode_messages``, the template stored
with the adapter) and passed to vLLM as token ids, so both engines read exactly the same input. LoRA adapters
are served through vLLM's LoRA support (no merge needed); greedy decoding is ``temperature=0`` (upstream's
"greedy" sampled at 0.2); guided decoding uses vLLM's structured outputs with the same per-record constraint as
the transformers engine: the JSON Schema (``--guided schema``) or the EBNF grammar whose extractive strings are
substrings of the input (``--guided spans``, ``predict.spans``), both compiled by xgrammar, vLLM's default
structured-output back end. Written against vLLM >= 0.12 (``StructuredOutputsParams``; the ``guided_*``
fields were removed there). vLLM schedules its own batches, so results are reported in chunks of
``batch_size * 8`` prompts: a kill loses at most one chunk. Looping generations are stopped by vLLM's own
repetition detection (``SamplingParams.repetition_detection``, vLLM >= 0.17) with the transformers engine's rule
(``local.REPETITION_RULE``); their ``finish_reason`` is ``repetition``. An older vLLM has no such check and runs a
loop to ``max_tokens``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from .base import Completion, Engine, EngineOptions, Messages, Sampling

__all__ = ["VLLMEngine"]


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise ImportError("the vllm engine needs vLLM and a GPU: pip install -e '.[gpu]'") from None
    return vllm


def _lora_rank(adapter: str) -> int:
    with open(os.path.join(adapter, "adapter_config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{adapter} is a {config.get('peft_type')} adapter; vLLM serves LoRA adapters only "
                         "(use the transformers engine for P-Tuning)")
    return int(config.get("r", 8))


def _finish(reason: Any) -> str:
    """vLLM's finish reason in the project's words: ``length``, ``repetition`` (its repetition detection) or ``stop``."""
    return reason if reason in ("length", "repetition") else "stop"


class VLLMEngine(Engine):
    """A vLLM ``LLM`` with an optional LoRA adapter."""

    name: ClassVar[str] = "vllm"

    def __init__(self, options: EngineOptions):
        vllm = _import_vllm()
        from transformers import AutoTokenizer

        from ..run_info import resolve_template, stored_run_info
        from .local import stop_token_ids

        if not options.model_id:
            raise ValueError("the vllm engine needs a model: a local folder or a Hugging Face id")
        info = stored_run_info(options.checkpoint_dir, options.model_id)
        self.template = resolve_template(options.template, info, options.checkpoint_dir or options.model_id)
        self.system_prompt = options.system_prompt if options.system_prompt is not None else info.get("system_prompt")
        self.options = options
        self.tokenizer = AutoTokenizer.from_pretrained(options.checkpoint_dir or options.model_id,
                                                       trust_remote_code=options.trust_remote_code)
        settings: dict[str, Any] = {"model": options.model_id, "tokenizer": options.model_id,
                                    "tensor_parallel_size": options.tensor_parallel_size,
                                    "trust_remote_code": options.trust_remote_code,
                                    "dtype": {"bf16": "bfloat16", "fp16": "float16"}.get(options.dtype, "auto")}
        self.lora = None
        if options.checkpoint_dir:
            from vllm.lora.request import LoRARequest

            settings.update(enable_lora=True, max_lora_rank=max(16, _lora_rank(options.checkpoint_dir)))
            self.lora = LoRARequest("adapter", 1, options.checkpoint_dir)
        if options.bits == 4:
            settings["quantization"] = "bitsandbytes"
        elif options.bits == 8:
            raise ValueError("the vllm engine loads bitsandbytes 4-bit only: use bits 4, or the transformers engine for 8-bit")
        self.llm = vllm.LLM(**settings)

        class _NoGenerationConfig:  # stop ids read a model's generation config only for transformers models
            generation_config = None

        self.stop_ids = stop_token_ids(self.tokenizer, _NoGenerationConfig(), self.template)

    def identity(self) -> dict[str, Any]:
        from .local import path_signature

        return {"engine": self.name, "model": path_signature(self.options.model_id),
                "adapter": path_signature(self.options.checkpoint_dir), "template": self.template,
                "system": self.system_prompt}

    def messages(self, query: str) -> Messages:
        from .base import user_messages

        return user_messages(query, self.system_prompt)

    def stream(self, prompts: Sequence[Messages], sampling: Sampling,
               schemas: Sequence[dict | None] | None = None) -> Iterator[dict[int, Completion]]:
        vllm = _import_vllm()
        from ..encoding import encode_messages

        base = {"temperature": sampling.temperature, "top_p": sampling.top_p if sampling.temperature > 0 else 1.0,
                "max_tokens": sampling.max_tokens, "stop_token_ids": self.stop_ids, "skip_special_tokens": True,
                "stop": list(sampling.stop) if sampling.stop else None, "seed": sampling.seed}
        try:  # vLLM >= 0.17
            from vllm.sampling_params import RepetitionDetectionParams

            from .local import REPETITION_RULE

            base["repetition_detection"] = RepetitionDetectionParams(**REPETITION_RULE)
        except ImportError:
            pass
        chunk = max(self.options.batch_size * 8, 1)
        for start in range(0, len(prompts), chunk):
            indices = list(range(start, min(start + chunk, len(prompts))))
            inputs = [{"prompt_token_ids": encode_messages(prompts[i], self.tokenizer, self.template,
                                                           self.options.cutoff_len)[0]} for i in indices]
            if schemas and any(schemas[i] is not None for i in indices):
                from vllm.sampling_params import StructuredOutputsParams

                from ..predict.guided import engine_constraint

                def constrained(schema: dict) -> Any:
                    kind, spec = engine_constraint(schema)  # ("json", JSON Schema) or ("grammar", EBNF)
                    return vllm.SamplingParams(**base, structured_outputs=StructuredOutputsParams(**{kind: spec}))

                params: Any = [constrained(schemas[i]) if schemas[i] is not None else vllm.SamplingParams(**base)
                               for i in indices]
            else:
                params = vllm.SamplingParams(**base)
            outputs = self.llm.generate(inputs, params, lora_request=self.lora, use_tqdm=False)
            yield {i: Completion(out.outputs[0].text, _finish(out.outputs[0].finish_reason),
                                 len(inp["prompt_token_ids"]), len(out.outputs[0].token_ids),
                                 tuple(out.outputs[0].token_ids))
                   for i, inp, out in zip(indices, inputs, outputs)}

    def close(self) -> None:
        self.llm = None
