"""The vLLM engine (extra ``gpu``): the same prompts and records as the transformers engine, much faster.

Prompts are rendered and tokenized by the project's own code (``encoding.encode_prompt``) and passed to vLLM
as token ids, so both engines see exactly the same input. LoRA adapters are served through vLLM's LoRA
support (no merge needed); greedy decoding is ``temperature=0`` (upstream's "greedy" sampled at 0.2);
``--guided`` uses vLLM's structured outputs with the same per-record JSON Schema as the transformers engine.
Written against vLLM >= 0.12 (``StructuredOutputsParams``; the ``guided_*`` fields were removed there).
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["run_vllm"]


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise ImportError("--engine vllm needs vLLM and a GPU: pip install -e '.[gpu]'") from None
    return vllm


def _lora_rank(adapter: str) -> int:
    with open(os.path.join(adapter, "adapter_config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{adapter} is a {config.get('peft_type')} adapter; vLLM serves LoRA adapters only "
                         "(use --engine hf for P-Tuning)")
    return int(config.get("r", 8))


def run_vllm(args: Any, records: list[dict], todo: list[int], template: str, system: str | None,
             on_batch=None) -> dict[int, str]:
    """Generate for ``records[i]`` for every ``i`` in ``todo``; returns ``{index: text}``.

    vLLM schedules its own batches, so results arrive together; ``on_batch`` receives them in chunks of
    ``args.batch_size * 8`` records so that a kill loses at most one chunk.
    """
    vllm = _import_vllm()
    from transformers import AutoTokenizer

    from ..encoding import encode_prompt
    from .hf import stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint_dir or args.model_name_or_path,
                                              trust_remote_code=args.trust_remote_code)
    options: dict[str, Any] = {"model": args.model_name_or_path, "tokenizer": args.model_name_or_path,
                               "tensor_parallel_size": args.tensor_parallel_size, "trust_remote_code": args.trust_remote_code,
                               "dtype": "bfloat16" if args.bf16 else "float16" if args.fp16 else "auto"}
    lora = None
    if args.checkpoint_dir:
        from vllm.lora.request import LoRARequest

        options.update(enable_lora=True, max_lora_rank=max(16, _lora_rank(args.checkpoint_dir)))
        lora = LoRARequest("adapter", 1, args.checkpoint_dir)
    if args.bits == 4:
        options["quantization"] = "bitsandbytes"
    elif args.bits == 8:
        raise ValueError("--engine vllm loads bitsandbytes 4-bit only: use --bits 4, or --engine hf for 8-bit")
    llm = vllm.LLM(**options)

    class _ModelStub:  # stop ids need the model's generation config only for HF models
        generation_config = None

    stops = stop_token_ids(tokenizer, _ModelStub(), template)
    base = {"temperature": args.temperature, "top_p": args.top_p if args.temperature > 0 else 1.0,
            "max_tokens": args.max_new_tokens, "stop_token_ids": stops, "skip_special_tokens": True}
    results: dict[int, str] = {}
    chunk = max(args.batch_size * 8, 1)
    for start in range(0, len(todo), chunk):
        indices = todo[start:start + chunk]
        prompts = [{"prompt_token_ids": encode_prompt(records[i], tokenizer, template, system, args.cutoff_len)[0]}
                   for i in indices]
        if args.guided:
            from vllm.sampling_params import StructuredOutputsParams

            from .guided import output_schema_of

            params = [vllm.SamplingParams(**base, structured_outputs=StructuredOutputsParams(json=output_schema_of(records[i])))
                      for i in indices]
        else:
            params = vllm.SamplingParams(**base)
        outputs = llm.generate(prompts, params, lora_request=lora, use_tqdm=True)
        produced = {i: out.outputs[0].text for i, out in zip(indices, outputs)}
        results.update(produced)
        if on_batch is not None:
            on_batch(produced)
    return results
