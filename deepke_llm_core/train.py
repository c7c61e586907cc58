"""Supervised fine-tuning on instruction records (``deepke-llm finetune``): LoRA, QLoRA, P-Tuning, full.

One training function; the method is a config (DESIGN.md §2). Examples are tokenized here (prompt and answer
separately, so the loss covers the answer only and the prompt's input text can be shortened without touching
its schema), then handed as ``input_ids``/``labels`` to transformers' ``Trainer``, which does the rest:
batching, checkpoints, resume, DeepSpeed, torchrun.

Why ``Trainer`` and not TRL's ``SFTTrainer``: with the examples already tokenized and masked, SFTTrainer adds
nothing to the training itself, while its loss goes through a chunked log-prob function (for its entropy and
accuracy metrics) that made a training step about 10x slower on CPU in our measurement (0.64 s against 0.065 s
for the same tiny model and batch).

Settings come from the command line, a YAML file or a notebook, through the same dataclasses.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainingArguments as _HfTrainingArguments

from .args import parse_settings
from .encoding import tokenize_example
from .io import read_instruction_records
from .run_info import require_chat_template, write_run_info

__all__ = [
    "ModelArguments", "DataArguments", "FinetuningArguments", "TrainingArguments", "hf_training_arguments",
    "parse_finetune_args", "finetune", "run_finetune", "load_training_records",
]

@dataclass
class ModelArguments:
    """Which model to start from and how to talk to it."""

    model_name_or_path: str = field(metadata={"help": "base model: a Hub id or a local folder (not an adapter)"})
    model_name: str | None = field(default=None, metadata={"help": "family (llama, qwen2, mistral, ...): default LoRA targets"})
    template: str = field(default="auto", metadata={"help": "'auto' (the tokenizer's chat template) or a legacy name"})
    system_prompt: str | None = field(default=None, metadata={"help": "system text; default: the template's"})
    checkpoint_dir: str | None = field(default=None, metadata={"help": "LoRA adapter(s) to continue from (comma list)"})
    bits: int | None = field(default=None, metadata={"help": "4 or 8: quantized base (QLoRA)"})
    quant_type: str = "nf4"
    double_quant: bool = True
    trust_remote_code: bool = False


@dataclass
class DataArguments:
    """Where the instruction records are and how long they may be (in tokens)."""

    train_file: str = field(metadata={"help": "instruction records (JSON Lines) with instruction and output"})
    valid_file: str | None = None
    val_set_size: int = field(default=0, metadata={"help": "without valid_file: hold out this many training records"})
    max_source_length: int = field(default=512, metadata={"help": "prompt budget; longer inputs are shortened"})
    max_target_length: int = field(default=256, metadata={"help": "answers longer than this are reported"})
    cutoff_len: int = field(default=1024, metadata={"help": "prompt + answer; longer examples are skipped and reported"})
    preprocessing_num_workers: int | None = field(default=None, metadata={
        "help": "tokenize in this many processes (datasets.map num_proc); worth it from about 100k records"})
    packing: str = field(default="auto", metadata={
        "help": "auto, true or false: a batch's examples in one row without padding, attention kept within each "
                "(exact; auto: with flash-attention, where it is also faster; see packing.py)"})


@dataclass
class FinetuningArguments:
    """The fine-tuning method: a PEFT config, or none for full fine-tuning."""

    stage: str = field(default="sft", metadata={"help": "sft, or grpo: reinforcement with the extraction reward (grpo.py)"})
    finetuning_type: str = field(default="lora", metadata={"help": "lora, full or p_tuning"})
    lora_r: int = 8
    lora_alpha: int | None = field(default=None, metadata={"help": "default: 2 * lora_r"})
    lora_dropout: float = 0.05
    lora_target: str | None = field(default=None, metadata={"help": "comma list of modules, or 'all'"})
    ptuning_type: str = field(default="prompt_encoder", metadata={"help": "prompt_encoder (P-Tuning) or prefix (P-Tuning v2)"})
    num_virtual_tokens: int = 16


# This project's defaults for transformers' training options (small batches, a LoRA-sized learning rate, a save
# per epoch, frequent logs, no reporting), and three names upstream's scripts use.
_DEFAULTS: dict[str, Any] = {"per_device_train_batch_size": 2, "per_device_eval_batch_size": 2, "learning_rate": 1e-4,
                             "optim": "adamw_torch", "save_strategy": "epoch", "logging_steps": 10.0, "report_to": "none",
                             "remove_unused_columns": False}
_EXTRA = (
    ("output_dir", str, field(metadata={"help": "adapter / model / checkpoints folder"})),
    ("evaluation_strategy", str | None, field(default=None, metadata={"help": "old name of eval_strategy"})),
    ("overwrite_output_dir", bool, field(default=False, metadata={"help": "start over instead of resuming from the last checkpoint"})),
    ("group_by_length", bool, field(default=True, metadata={"help": "batches of similar length (less padding)"})),
)


def _training_arguments_class() -> type:
    """Every option of transformers' ``TrainingArguments`` (so none is copied here by hand), with our defaults.

    A plain dataclass rather than a subclass: transformers' ``__post_init__`` sets up devices and DeepSpeed, which
    must happen once, in :func:`finetune`, not when a flag is parsed (under torchrun it would form the process
    group before the backend is chosen). :func:`hf_training_arguments` builds the real object from it.
    """
    import dataclasses

    own = {name for name, _, _ in _EXTRA}
    fields: list[tuple[str, Any, Any]] = list(_EXTRA)
    for f in dataclasses.fields(_HfTrainingArguments):
        if not f.init or f.name in own or f.name.startswith("_"):
            continue
        if f.name in _DEFAULTS:
            spec = field(default=_DEFAULTS[f.name], metadata=f.metadata)
        elif f.default_factory is not dataclasses.MISSING:
            spec = field(default_factory=f.default_factory, metadata=f.metadata)
        else:
            spec = field(default=f.default, metadata=f.metadata)
        fields.append((f.name, f.type, spec))
    doc = ("transformers' TrainingArguments, every option passed through, with this project's defaults "
           "(see train.py's _DEFAULTS) and upstream's overwrite_output_dir, evaluation_strategy, group_by_length.")
    return dataclasses.make_dataclass("TrainingArguments", fields, namespace={"__doc__": doc, "__module__": __name__})


TrainingArguments = _training_arguments_class()


def hf_training_arguments(args: Any, **overrides: Any) -> Any:
    """The transformers object for our settings: the device policy (CPU without a GPU, gloo under torchrun on
    CPUs) and the old names resolved."""
    import dataclasses

    import torch

    own = {name for name, _, _ in _EXTRA} - {"output_dir"}
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.name not in own}
    if args.evaluation_strategy:
        values["eval_strategy"] = args.evaluation_strategy
    if args.group_by_length:
        values["train_sampling_strategy"] = "group_by_length"
    if not torch.cuda.is_available():
        values["use_cpu"] = True
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # transformers forms a CPU process group only when told gloo
            values["ddp_backend"] = values.get("ddp_backend") or "gloo"
    return _HfTrainingArguments(**{**values, **overrides})


ARGUMENT_CLASSES = (ModelArguments, DataArguments, FinetuningArguments, TrainingArguments)


def parse_finetune_args(argv: list[str] | None = None):
    """Parse flags, or a single YAML/JSON file (``deepke-llm finetune cookbook/qwen/lora_sft.yaml``).

    With ``--stage grpo`` a fifth object holds the GRPO settings (``grpo.GrpoArguments``).
    """
    return _split_grpo(*parse_settings(finetune_classes(), argv, prog="deepke-llm finetune"))


def finetune_classes() -> tuple[type, ...]:
    """Every settings class of ``deepke-llm finetune``: the four of SFT and GRPO's."""
    from .grpo import GrpoArguments

    return (*ARGUMENT_CLASSES, GrpoArguments)


def _split_grpo(*parsed: Any) -> tuple:
    """SFT's four objects, plus the GRPO settings with ``--stage grpo``; GRPO settings without it are refused."""
    from .grpo import GrpoArguments

    *parsed, grpo_args = parsed
    if parsed[2].stage == "grpo":
        return (*parsed, grpo_args)
    if grpo_args != GrpoArguments():
        raise ValueError("GRPO settings (num_generations, beta, the reward weights, ...) need --stage grpo")
    return tuple(parsed)


# ---- data --------------------------------------------------------------------------------------------------


def load_training_records(path: str) -> list[dict]:
    """Instruction records with a string ``instruction`` and an ``output``; errors name file, line and field."""
    return read_instruction_records(path, need_output=True)


def build_dataset(records: list[dict], tokenizer: Any, model_args: ModelArguments, data_args: DataArguments, name: str):
    """Tokenize (in ``preprocessing_num_workers`` processes when set), and report (not silently cut) what did not fit."""
    from datasets import Dataset

    def tokenize(record: dict) -> dict:
        row, cut = tokenize_example(record, tokenizer, model_args.template, model_args.system_prompt, data_args.max_source_length)
        answer = sum(1 for x in row["labels"] if x != -100)
        return {**row, "length": len(row["input_ids"]), "shortened": cut, "answer_length": answer}

    workers = data_args.preprocessing_num_workers
    if workers and workers > 1:
        columns = sorted({key for record in records for key in record})
        records = [{key: record.get(key) for key in columns} for record in records]  # Arrow needs one schema
        table = Dataset.from_list(records).map(tokenize, num_proc=min(workers, len(records)), remove_columns=columns,
                                               desc=f"tokenizing {name}")
        rows = table.to_list()
    else:
        rows = [tokenize(record) for record in records]
    longest = max((row["length"] for row in rows), default=0)
    shortened = sum(row.pop("shortened") for row in rows)
    long_answers = sum(row.pop("answer_length") > data_args.max_target_length for row in rows)
    kept = [row for row in rows if row["length"] <= data_args.cutoff_len]
    too_long = len(rows) - len(kept)
    print(f"[finetune] {name}: {len(kept)} examples; {shortened} inputs shortened to max_source_length="
          f"{data_args.max_source_length}; {long_answers} answers longer than max_target_length={data_args.max_target_length}; "
          f"{too_long} longer than cutoff_len={data_args.cutoff_len} skipped (longest {longest} tokens)", file=sys.stderr)
    if not kept:
        raise ValueError(f"no {name} example fits cutoff_len={data_args.cutoff_len} (longest is {longest} tokens); raise --cutoff_len")
    return Dataset.from_list(kept)


# ---- model and method ----------------------------------------------------------------------------------------


def peft_config(model: Any, model_args: ModelArguments, method: FinetuningArguments):
    """The PEFT config of the method, or ``None`` for full fine-tuning."""
    from peft import LoraConfig, PrefixTuningConfig, PromptEncoderConfig, TaskType

    from .models import lora_targets

    kind = method.finetuning_type
    if kind == "full":
        return None
    if kind == "lora":
        if method.lora_target in ("all", "all-linear"):
            targets: Any = "all-linear"
        else:
            targets = lora_targets(model_args.model_name or getattr(model.config, "model_type", None), method.lora_target)
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=method.lora_r, lora_alpha=method.lora_alpha or 2 * method.lora_r,
                          lora_dropout=method.lora_dropout, target_modules=targets)
    if kind == "p_tuning":
        if method.ptuning_type == "prefix":
            return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=method.num_virtual_tokens)
        if method.ptuning_type == "prompt_encoder":
            return PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=method.num_virtual_tokens,
                                       encoder_hidden_size=model.config.hidden_size)
        raise ValueError(f"ptuning_type must be prompt_encoder or prefix, got {method.ptuning_type!r}")
    raise ValueError(f"finetuning_type must be lora, full or p_tuning, got {kind!r}")


def _check_arguments(model_args: ModelArguments, method: FinetuningArguments, train_args: TrainingArguments) -> None:
    if method.stage not in ("sft", "grpo"):
        raise ValueError(f"--stage must be sft or grpo (got {method.stage!r})")
    if model_args.bits not in (None, 4, 8, 16, 32):
        raise ValueError(f"--bits must be 4, 8, 16 or 32, got {model_args.bits}")
    if model_args.bits in (4, 8) and method.finetuning_type != "lora":
        raise ValueError("--bits 4/8 trains LoRA adapters on a quantized base (QLoRA); use --finetuning_type lora")
    if model_args.checkpoint_dir and method.finetuning_type != "lora":
        raise ValueError("--checkpoint_dir continues a LoRA adapter; to continue a full model pass it as --model_name_or_path")
    if train_args.bf16 and train_args.fp16:
        raise ValueError("choose one of --bf16 and --fp16")
    check_bf16(train_args.bf16)
    from .prompts import template_names

    if model_args.template not in template_names():
        raise ValueError(f"unknown template {model_args.template!r}; valid names: {', '.join(template_names())}")


def check_bf16(bf16: bool) -> None:
    """bf16 on a GPU without it (V100, T4) fails deep inside a kernel or runs out of memory; say so up front."""
    if not bf16:
        return
    import torch

    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--bf16: {torch.cuda.get_device_name()} has no bfloat16 support; use --fp16 instead")


def warn_if_template_markers_unknown(template: str, tokenizer: Any) -> None:
    """A legacy template whose markers the tokenizer splits as plain text is probably the wrong template."""
    if template == "auto":
        return
    from .prompts import missing_special_tokens

    missing = missing_special_tokens(template, tokenizer)
    if missing:
        print(f"[deepke-llm] warning: template {template!r} uses {', '.join(missing)}, which this tokenizer does not "
              "know as special tokens; check that the template matches the model", file=sys.stderr)


def load_seeded_model(model_args: ModelArguments, train_args: TrainingArguments, padding_side: str) -> tuple[Any, Any]:
    """Seed, then load the base (+ adapter) for training, for SFT and GRPO alike.

    Seeding comes first because LoRA/P-Tuning weights are initialised by ``get_peft_model``, before ``Trainer``
    would seed: without it two runs of the same command start from different adapters.
    """
    from transformers import set_seed

    from .models import load_model_and_tokenizer

    set_seed(train_args.seed)
    dtype = "bf16" if train_args.bf16 else "fp16" if train_args.fp16 else "fp32"
    return load_model_and_tokenizer(
        model_args.model_name_or_path, model_args.checkpoint_dir, model_name=model_args.model_name, bits=model_args.bits,
        dtype=dtype, double_quant=model_args.double_quant, quant_type=model_args.quant_type, is_trainable=True,
        padding_side=padding_side, trust_remote_code=model_args.trust_remote_code)


def finetune(model_args: ModelArguments, data_args: DataArguments, method: FinetuningArguments,
             train_args: TrainingArguments, grpo_args: Any = None) -> dict[str, Any]:
    """Train and save the adapter (or model) with its tokenizer and run info; returns the final metrics.

    A rerun on the same ``output_dir`` resumes from its last checkpoint (a kill loses at most one save
    interval) unless ``overwrite_output_dir`` is set. ``method.stage == "grpo"`` hands over to ``grpo.py``.
    """
    if method.stage == "grpo":
        from .grpo import finetune_grpo

        return finetune_grpo(model_args, data_args, method, train_args, grpo_args)
    from transformers import Trainer

    from .checkpoints import check_output_dir, last_complete_checkpoint, run_fingerprint

    _check_arguments(model_args, method, train_args)
    from .io import check_input_file

    check_input_file(data_args.train_file, "--train_file")
    if data_args.valid_file:
        check_input_file(data_args.valid_file, "--valid_file")
    fingerprint = run_fingerprint(model_args, data_args, method, train_args)
    check_output_dir(train_args.output_dir, fingerprint, train_args.overwrite_output_dir)
    train_records = load_training_records(data_args.train_file)
    model, tokenizer = load_seeded_model(model_args, train_args, padding_side="right")
    require_chat_template(model_args.template, tokenizer, model_args.model_name_or_path)

    warn_if_template_markers_unknown(model_args.template, tokenizer)
    train_set = build_dataset(train_records, tokenizer, model_args, data_args, "train")
    eval_set = None
    if data_args.valid_file:
        eval_set = build_dataset(load_training_records(data_args.valid_file), tokenizer, model_args, data_args, "valid")
    elif data_args.val_set_size > 0:
        split = train_set.train_test_split(test_size=min(data_args.val_set_size, len(train_set) // 2 or 1), seed=train_args.seed)
        train_set, eval_set = split["train"], split["test"]

    if model_args.bits in (4, 8):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(train_args.gradient_checkpointing))
    if not hasattr(model, "peft_config"):  # a LoRA adapter given by --checkpoint_dir is already loaded, trainable
        config = peft_config(model, model_args, method)
        if config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, config)
    if hasattr(model, "peft_config"):
        from .cpu_lora import use_cpu_lora

        use_cpu_lora(model)

    eval_strategy = train_args.evaluation_strategy or train_args.eval_strategy
    hf_args = hf_training_arguments(train_args, eval_strategy="no" if eval_set is None else eval_strategy,
                                    disable_tqdm=not sys.stderr.isatty() if train_args.disable_tqdm is None else train_args.disable_tqdm)
    from .packing import packed_attention, restore_attention, training_collator, use_packing

    packed = use_packing(data_args.packing, model, method.finetuning_type)
    attention_before = packed_attention(model) if packed else None  # sdpa/eager: example-by-example attention
    print(f"[finetune] batches: {'packed (padding-free)' if packed else 'padded'}", file=sys.stderr)
    collator = training_collator(tokenizer, model, method.finetuning_type, packed)
    trainer = Trainer(model=model, args=hf_args, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=collator, processing_class=tokenizer)

    if trainer.is_world_process_zero():  # written first, so checkpoints of an interrupted run carry it too
        run_info = {
            "template": model_args.template, "system_prompt": model_args.system_prompt,
            "base_model": model_args.model_name_or_path, "model_name": model_args.model_name,
            "finetuning_type": method.finetuning_type, "continued_from": model_args.checkpoint_dir, "bits": model_args.bits,
            "fingerprint": fingerprint,
        }
        write_run_info(train_args.output_dir, run_info)
    resume = train_args.resume_from_checkpoint
    if resume is None and not train_args.overwrite_output_dir:
        resume = last_complete_checkpoint(train_args.output_dir)
        if resume:
            print(f"[finetune] resuming from {resume}", file=sys.stderr)
    # bitsandbytes repacks 4-bit weights for CPU inference on the first eval pass, after which its training
    # matmul fails (bitsandbytes 0.50); so a quantized base on CPU is not evaluated before training.
    # DeepSpeed is initialised for training by train(); an evaluation before it fails under ZeRO-2 and breaks ZeRO-3.
    quantized_cpu = model_args.bits in (4, 8) and next(model.parameters()).device.type == "cpu"
    pre_eval = eval_set is not None and not resume and not quantized_cpu and not train_args.deepspeed
    before = trainer.evaluate(metric_key_prefix="eval_before") if pre_eval else {}
    result = trainer.train(resume_from_checkpoint=resume)
    metrics = {**before, **result.metrics}
    if eval_set is not None:
        metrics.update(trainer.evaluate())
    if attention_before is not None:
        restore_attention(model, attention_before)
    save_run(trainer, tokenizer, train_args.output_dir)
    return metrics


def save_run(trainer: Any, tokenizer: Any, output_dir: str) -> None:
    """What every fine-tuning stage leaves in its output folder: the model or adapter, the tokenizer beside it and
    the trainer's log history (``training_history.json``, which ``viz`` plots); files from rank 0 only."""
    trainer.save_model(output_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(output_dir)
        with open(Path(output_dir) / "training_history.json", "w", encoding="utf-8") as handle:
            json.dump(trainer.state.log_history, handle, indent=2)


def run_finetune(*settings: Any) -> dict[str, Any]:
    """Train and print the metrics (the ``deepke-llm finetune`` body); under torchrun, leave the group cleanly.

    ``settings`` are what :func:`parse_finetune_args` returns (or the five objects of ``finetune_classes``).
    """
    if len(settings) == 5:
        settings = _split_grpo(*settings)
    try:
        metrics = finetune(*settings)
        _leave_process_group(wait_for_all=True)
    finally:
        _leave_process_group(wait_for_all=False)  # after an error: no barrier, the other ranks may be gone
    print(json.dumps({k: v for k, v in metrics.items()}, indent=2, default=str))
    return metrics


def run_from_argv(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse flags (or a YAML file) and train."""
    return run_finetune(*parse_finetune_args(argv))


def _leave_process_group(wait_for_all: bool) -> None:
    """Under torchrun, tear the process group down (after every rank is done) before the interpreter exits.

    Left to interpreter shutdown, a rank of a DeepSpeed run on CPU once aborted after saving ("terminate called
    without an active exception": a communication thread destroyed while still running), failing the job.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()

