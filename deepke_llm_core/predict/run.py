"""``deepke-llm infer``: prediction records from a converted test file, with any engine.

The base model (plus an adapter from ``--checkpoint_dir``) answers with the template it was trained with (stored
beside the adapter; a different ``--template`` is refused), through the transformers engine by default, vLLM with
``--engine vllm``, or any OpenAI-compatible endpoint with ``--engine openai --base_url URL --model_id NAME`` (the
key from ``$OPENAI_API_KEY``), so API models and fine-tuned models are scored on the same converted file. Each
input record is written back with an ``output`` field, in input order, resumably (``engines.runner``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..args import parse_settings
from ..io import DataError, read_instruction_records

__all__ = ["InferArguments", "parse_infer_args", "run_inference", "build_engine"]


@dataclass
class InferArguments:
    """The draft README's inference flags; the training-only ones upstream required are accepted and ignored."""

    model_name_or_path: str = field(metadata={"help": "base or merged model (a Hub id or a folder); for --engine openai "
                                                      "the model name the endpoint serves"})
    input_file: str = field(metadata={"help": "converted test records (JSON Lines)"})
    output_file: str = field(metadata={"help": "prediction records to write (resumes the same run if it exists)"})
    checkpoint_dir: str | None = field(default=None, metadata={"help": "LoRA or P-Tuning adapter folder"})
    model_name: str | None = None
    template: str | None = field(default=None, metadata={"help": "default: the adapter's stored template, else 'auto'"})
    system_prompt: str | None = None
    engine: str = field(default="hf", metadata={"help": "hf (transformers), vllm, or openai (an OpenAI-compatible endpoint)"})
    base_url: str | None = field(default=None, metadata={"help": "--engine openai: the endpoint, e.g. http://127.0.0.1:8000/v1"})
    concurrency: int = field(default=4, metadata={"help": "--engine openai: requests in flight"})
    batch_size: int = 16
    max_new_tokens: int = 256
    cutoff_len: int = field(default=512, metadata={"help": "prompt budget in tokens; longer inputs are shortened"})
    temperature: float = field(default=0.0, metadata={"help": "0: greedy"})
    guided: str | None = field(default=None, metadata={
        "help": "schema (the flag alone): force JSON whose keys are the record's schema; spans: also force every "
                "extracted string to be a substring of the input", "nargs": "?", "const": "schema"})
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

    def __post_init__(self) -> None:
        from .guided import guided_mode

        self.guided = guided_mode(self.guided)  # True / "true" (a YAML recipe, older code) mean "schema"


def parse_infer_args(argv: list[str] | None = None) -> InferArguments:
    """Flags, or a single YAML/JSON file."""
    return parse_settings([InferArguments], argv)[0]


def _check(args: InferArguments) -> None:
    for name in ("batch_size", "max_new_tokens", "cutoff_len", "num_shards", "concurrency", "tensor_parallel_size"):
        value = getattr(args, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name} must be a positive integer, got {value!r}")
    if not 0 <= args.shard_index < args.num_shards:
        raise ValueError(f"--shard_index must be in 0..{args.num_shards - 1}, got {args.shard_index}")
    if args.bf16 and args.fp16:
        raise ValueError("choose one of --bf16 and --fp16")
    from ..engines import check_local_for_spans

    check_local_for_spans(args.engine, args.guided)


def build_engine(args: InferArguments):
    """The engine ``args`` describe (the model is loaded here)."""
    from ..engines import EngineOptions, create_engine, is_endpoint

    endpoint = is_endpoint(args.engine)
    if endpoint and args.checkpoint_dir:
        raise ValueError("--checkpoint_dir needs a local engine (hf or vllm); an endpoint serves its own model")
    dtype = "bf16" if args.bf16 else "fp16" if args.fp16 else "auto"
    options = EngineOptions(model_id=args.model_name_or_path, checkpoint_dir=args.checkpoint_dir, template=args.template,
                            system_prompt=args.system_prompt, model_name=args.model_name, bits=args.bits, dtype=dtype,
                            trust_remote_code=args.trust_remote_code, cutoff_len=args.cutoff_len,
                            batch_size=args.batch_size, guided=args.guided, tensor_parallel_size=args.tensor_parallel_size,
                            base_url=args.base_url)
    return create_engine(args.engine, options)


def run_inference(args: InferArguments, engine: Any = None) -> dict[str, Any]:
    """Generate for every record not yet in ``output_file``; returns counts and records/s.

    ``engine`` may be given ready-made (a notebook that keeps one model loaded); else it is built from ``args``.
    """
    from ..engines import Sampling
    from ..engines.runner import run_to_file
    from ..prompts import query_of

    _check(args)
    from ..io import check_input_file, check_output_path

    check_input_file(args.input_file, "--input_file")
    check_output_path(args.output_file, "--output_file", (args.input_file, "--input_file"))
    sampling = Sampling(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_new_tokens)
    records = read_instruction_records(args.input_file)
    output_file = args.output_file
    if args.num_shards > 1:
        from .shards import shard_bounds, shard_path

        start, end = shard_bounds(len(records), args.num_shards, args.shard_index)
        records = records[start:end]
        output_file = shard_path(args.output_file, args.num_shards, args.shard_index)
    schema_of = None
    if args.guided:
        from .guided import output_schema_of

        def schema_of(record: dict) -> dict:
            try:
                return output_schema_of(record, args.guided)
            except DataError as exc:
                raise DataError(args.input_file, None, exc.field, exc.reason) from None

    transform, added = None, ["output"]
    if args.ground:
        from .grounding import ground_record as transform

        added.append("grounding")
    engine = engine or build_engine(args)
    settings = {"stage": "infer", "cutoff_len": args.cutoff_len, "guided": args.guided, "ground": args.ground}
    stats = run_to_file(records, output_file, engine, sampling, lambda r: engine.messages(query_of(r)),
                        schema_of=schema_of, transform=transform, added=added, settings=settings,
                        concurrency=args.concurrency, desc="infer")
    stats["template"] = getattr(engine, "template", None)
    stats["generated"] = stats["answered"]
    if getattr(engine, "shortened", 0):
        stats["shortened_inputs"] = engine.shortened
    return stats
