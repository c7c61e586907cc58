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

from .args import parse_settings
from .encoding import tokenize_example
from .io import read_instruction_records
from .run_info import require_chat_template, write_run_info

__all__ = [
    "ModelArguments", "DataArguments", "FinetuningArguments", "TrainingArguments",
    "parse_finetune_args", "finetune", "load_training_records",
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

    stage: str = "sft"
    finetuning_type: str = field(default="lora", metadata={"help": "lora, full or p_tuning"})
    lora_r: int = 8
    lora_alpha: int | None = field(default=None, metadata={"help": "default: 2 * lora_r"})
    lora_dropout: float = 0.05
    lora_target: str | None = field(default=None, metadata={"help": "comma list of modules, or 'all'"})
    ptuning_type: str = field(default="prompt_encoder", metadata={"help": "prompt_encoder (P-Tuning) or prefix (P-Tuning v2)"})
    num_virtual_tokens: int = 16


@dataclass
class TrainingArguments:
    """The trainer settings the draft README's scripts pass (a small subset of transformers')."""

    output_dir: str = field(metadata={"help": "adapter / model / checkpoints folder"})
    do_train: bool = True
    do_eval: bool = False
    per_device_train_batch_size: int = 2
    per_device_eval_batch_size: int = 2
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 1e-4
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    warmup_steps: float = field(default=0, metadata={"help": "warm-up steps, or a ratio of all steps when < 1"})
    lr_scheduler_type: str = "linear"
    optim: str = "adamw_torch"
    eval_strategy: str = "no"
    evaluation_strategy: str | None = field(default=None, metadata={"help": "old name of eval_strategy"})
    eval_steps: int | None = None
    save_strategy: str = "epoch"
    save_steps: int = 500
    save_total_limit: int | None = None
    logging_steps: int = 10
    bf16: bool = False
    fp16: bool = False
    deepspeed: str | None = None
    resume_from_checkpoint: str | None = None
    overwrite_output_dir: bool = False
    group_by_length: bool = True
    gradient_checkpointing: bool = False
    seed: int = 42
    report_to: str = "none"


ARGUMENT_CLASSES = (ModelArguments, DataArguments, FinetuningArguments, TrainingArguments)


def parse_finetune_args(argv: list[str] | None = None):
    """Parse flags, or a single YAML/JSON file (``deepke-llm finetune cookbook/qwen/lora_sft.yaml``)."""
    return parse_settings(ARGUMENT_CLASSES, argv)


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
    if method.stage != "sft":
        raise ValueError(f"only --stage sft is implemented (got {method.stage!r})")
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


def _last_checkpoint(output_dir: str) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None


def finetune(model_args: ModelArguments, data_args: DataArguments, method: FinetuningArguments,
             train_args: TrainingArguments) -> dict[str, Any]:
    """Train and save the adapter (or model) with its tokenizer and run info; returns the final metrics.

    A rerun on the same ``output_dir`` resumes from its last checkpoint (a kill loses at most one save
    interval) unless ``overwrite_output_dir`` is set.
    """
    from transformers import Trainer
    from transformers import TrainingArguments as HfTrainingArguments

    from .models import load_model_and_tokenizer

    _check_arguments(model_args, method, train_args)
    # Seed before anything random is built: LoRA/P-Tuning weights are initialised by get_peft_model, before
    # Trainer would seed, so without this two runs of the same command start from different adapters.
    from transformers import set_seed

    set_seed(train_args.seed)
    train_records = load_training_records(data_args.train_file)
    dtype = "bf16" if train_args.bf16 else "fp16" if train_args.fp16 else "fp32"
    model, tokenizer = load_model_and_tokenizer(
        model_args.model_name_or_path, model_args.checkpoint_dir, model_name=model_args.model_name, bits=model_args.bits,
        dtype=dtype, double_quant=model_args.double_quant, quant_type=model_args.quant_type, is_trainable=True,
        padding_side="right", trust_remote_code=model_args.trust_remote_code)
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

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=train_args.gradient_checkpointing)
    if not hasattr(model, "peft_config"):  # a LoRA adapter given by --checkpoint_dir is already loaded, trainable
        config = peft_config(model, model_args, method)
        if config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, config)

    eval_strategy = train_args.evaluation_strategy or train_args.eval_strategy
    if eval_set is None:
        eval_strategy = "no"
    import torch

    # Without a GPU, transformers only forms a multi-process (torchrun) group when told to use the CPU.
    on_cpu = not torch.cuda.is_available()
    hf_args = HfTrainingArguments(
        use_cpu=on_cpu, ddp_backend="gloo" if on_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        output_dir=train_args.output_dir,
        per_device_train_batch_size=train_args.per_device_train_batch_size,
        per_device_eval_batch_size=train_args.per_device_eval_batch_size,
        gradient_accumulation_steps=train_args.gradient_accumulation_steps,
        num_train_epochs=train_args.num_train_epochs, max_steps=train_args.max_steps,
        learning_rate=train_args.learning_rate, max_grad_norm=train_args.max_grad_norm,
        weight_decay=train_args.weight_decay, warmup_steps=train_args.warmup_steps,
        lr_scheduler_type=train_args.lr_scheduler_type, optim=train_args.optim,
        eval_strategy=eval_strategy, eval_steps=train_args.eval_steps,
        save_strategy=train_args.save_strategy, save_steps=train_args.save_steps, save_total_limit=train_args.save_total_limit,
        logging_steps=train_args.logging_steps, bf16=train_args.bf16, fp16=train_args.fp16,
        deepspeed=train_args.deepspeed, seed=train_args.seed, report_to=train_args.report_to,
        gradient_checkpointing=train_args.gradient_checkpointing,
        train_sampling_strategy="group_by_length" if train_args.group_by_length else "random",
        remove_unused_columns=False, disable_tqdm=not sys.stderr.isatty(),
    )
    from .packing import training_collator, use_packing

    packed = use_packing(data_args.packing, model, method.finetuning_type)
    print(f"[finetune] batches: {'packed (padding-free)' if packed else 'padded'}", file=sys.stderr)
    collator = training_collator(tokenizer, model, method.finetuning_type, packed)
    trainer = Trainer(model=model, args=hf_args, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=collator, processing_class=tokenizer)

    if trainer.is_world_process_zero():  # written first, so checkpoints of an interrupted run carry it too
        run_info = {
            "template": model_args.template, "system_prompt": model_args.system_prompt,
            "base_model": model_args.model_name_or_path, "model_name": model_args.model_name,
            "finetuning_type": method.finetuning_type, "continued_from": model_args.checkpoint_dir, "bits": model_args.bits,
        }
        write_run_info(train_args.output_dir, run_info)
    resume = train_args.resume_from_checkpoint
    if resume is None and not train_args.overwrite_output_dir:
        resume = _last_checkpoint(train_args.output_dir)
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
    trainer.save_model(train_args.output_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(train_args.output_dir)
        with open(Path(train_args.output_dir) / "training_history.json", "w", encoding="utf-8") as handle:
            json.dump(trainer.state.log_history, handle, indent=2)
    return metrics


def run_from_argv(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse, train, print the metrics (the ``deepke-llm finetune`` body)."""
    model_args, data_args, method, train_args = parse_finetune_args(argv)
    try:
        metrics = finetune(model_args, data_args, method, train_args)
        _leave_process_group(wait_for_all=True)
    finally:
        _leave_process_group(wait_for_all=False)  # after an error: no barrier, the other ranks may be gone
    print(json.dumps({k: v for k, v in metrics.items()}, indent=2, default=str))
    return metrics


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

