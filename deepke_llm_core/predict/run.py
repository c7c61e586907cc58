"""``deepke-llm infer``: prediction records from a converted test file.

Loads the base model (plus an adapter from ``--checkpoint_dir``), checks that the template is the one the
adapter was trained with, renders and fits each prompt, generates with the chosen engine and writes each input
record with an added ``output`` field, in input order, resumably (``writer.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..args import parse_settings
from ..io import DataError, read_instruction_records
from ..run_info import require_chat_template, resolve_template, stored_run_info

__all__ = ["InferArguments", "parse_infer_args", "run_inference"]

@dataclass
class InferArguments:
    """The draft README's inference flags; the training-only ones upstream required are accepted and ignored."""

    model_name_or_path: str = field(metadata={"help": "base or merged model (a Hub id or a folder)"})
    input_file: str = field(metadata={"help": "converted test records (JSON Lines)"})
    output_file: str = field(metadata={"help": "prediction records to write (resumes if it exists)"})
    checkpoint_dir: str | None = field(default=None, metadata={"help": "LoRA or P-Tuning adapter folder"})
    model_name: str | None = None
    template: str | None = field(default=None, metadata={"help": "default: the adapter's stored template, else 'auto'"})
    system_prompt: str | None = None
    engine: str = field(default="hf", metadata={"help": "hf or vllm"})
    batch_size: int = 16
    max_new_tokens: int = 256
    cutoff_len: int = field(default=512, metadata={"help": "prompt budget in tokens; longer inputs are shortened"})
    temperature: float = field(default=0.0, metadata={"help": "0: greedy"})
    guided: bool = field(default=False, metadata={"help": "force JSON whose keys are the record's schema (lm-format-enforcer)"})
    ground: bool = field(default=False, metadata={"help": "add character offsets of extracted strings, and those not in the text"})
    top_p: float = 1.0
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM: GPUs one model is split over"})
    num_shards: int = field(default=1, metadata={"help": "split the input over N processes or machines"})
    shard_index: int = field(default=0, metadata={"help": "which shard this process runs (0-based)"})
    bits: int | None = None
    bf16: bool = False
    fp16: bool = False
    trust_remote_code: bool = False
    # accepted for compatibility with upstream's scripts
    stage: str = "sft"
    do_predict: bool = True
    predict_with_generate: bool = True
    finetuning_type: str = "lora"
    output_dir: str | None = field(default=None, metadata={"help": "ignored, as upstream"})


def parse_infer_args(argv: list[str] | None = None) -> InferArguments:
    """Flags, or a single YAML/JSON file."""
    return parse_settings([InferArguments], argv)[0]


def run_inference(args: InferArguments) -> dict[str, Any]:
    """Generate for every record not yet in ``output_file``; returns counts and records/s."""
    import time

    from tqdm import tqdm

    from ..encoding import encode_prompt
    from ..models import load_model_and_tokenizer
    from .writer import OrderedResumableWriter

    if args.engine not in ("hf", "vllm"):
        raise ValueError(f"unknown engine {args.engine!r}; valid engines: hf, vllm")
    if args.bits not in (None, 4, 8, 16, 32):
        raise ValueError(f"--bits must be 4, 8, 16 or 32, got {args.bits}")
    records = read_instruction_records(args.input_file)
    output_file = args.output_file
    if args.num_shards > 1:
        from .shards import shard_bounds, shard_path

        start, end = shard_bounds(len(records), args.num_shards, args.shard_index)
        records = records[start:end]
        output_file = shard_path(args.output_file, args.num_shards, args.shard_index)
    info = stored_run_info(args.checkpoint_dir, args.model_name_or_path)
    template = resolve_template(args.template, info, args.checkpoint_dir or args.model_name_or_path)
    system = args.system_prompt if args.system_prompt is not None else info.get("system_prompt")
    transform = None
    if args.ground:
        from .grounding import ground_record as transform
    writer = OrderedResumableWriter(output_file, records, transform)
    todo = writer.todo()
    stats = {"records": len(records), "already_done": len(records) - len(todo), "generated": 0, "template": template,
             "output_file": output_file}
    if not todo:
        writer.close()
        return stats

    dtype = "bf16" if args.bf16 else "fp16" if args.fp16 else "auto"
    if args.engine == "vllm":
        from .vllm import run_vllm

        run_vllm(args, records, todo, template, system, on_batch=writer.add)
    else:
        from .hf import HFEngine

        import torch

        from ..train import check_bf16, warn_if_template_markers_unknown

        check_bf16(args.bf16)
        model, tokenizer = load_model_and_tokenizer(args.model_name_or_path, args.checkpoint_dir, model_name=args.model_name,
                                                    bits=args.bits, dtype=dtype, trust_remote_code=args.trust_remote_code,
                                                    device_map="auto" if torch.cuda.is_available() else None)
        warn_if_template_markers_unknown(template, tokenizer)
        require_chat_template(template, tokenizer, args.model_name_or_path)
        prompts = {i: encode_prompt(records[i], tokenizer, template, system, args.cutoff_len)[0] for i in todo}
        engine = HFEngine(model, tokenizer, template, args.max_new_tokens, args.temperature, args.top_p, args.guided)
        schemas = None
        if args.guided:
            from .guided import output_schema_of

            schemas = {}
            for i in todo:
                try:
                    schemas[i] = output_schema_of(records[i])
                except DataError as exc:
                    raise DataError(args.input_file, None, f"record {i + 1}: {exc.field}", exc.reason) from None
        bar = tqdm(total=len(todo), unit="rec", desc="infer", disable=None)
        start = time.perf_counter()

        def on_batch(results: dict[int, str]) -> None:
            writer.add(results)
            bar.update(len(results))

        engine.run(prompts, args.batch_size, on_batch, schemas)
        bar.close()
        stats["seconds"] = time.perf_counter() - start
        stats["records_per_second"] = len(todo) / stats["seconds"]
    stats["generated"] = len(todo)
    stats["complete"] = writer.close()
    return stats
