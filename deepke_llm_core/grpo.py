"""Reinforcement fine-tuning with the extraction reward (``deepke-llm finetune --stage grpo``), through TRL's GRPO.

Supervised fine-tuning shows the model the gold answer; GRPO lets it answer (``num_generations`` sampled answers
per prompt), scores each answer with the evaluator's own measure (``rewards.py``: task F1 against the record's
gold, a format term and a grounding penalty) and moves the model towards the answers that scored above their
group's mean. It runs on the same converted training files as SFT, and usually continues an SFT adapter
(``--checkpoint_dir``), which it keeps training; a base or merged model gets a new LoRA adapter (or, with
``--finetuning_type full``, is trained whole).

TRL's ``GRPOTrainer`` does the work (sampling, advantages, the clipped policy loss, the optional KL term against
the starting policy, checkpoints, resume, DeepSpeed, torchrun and vLLM generation). We deviate in one place:
``GRPOTrainer`` tokenizes plain-text prompts itself, with the tokenizer's special tokens added and no prompt
budget, so a llama-style tokenizer would put a second BOS in front of our rendered prompt and a long input would
not be shortened the way SFT and inference shorten it. ``_tokenize_prompts`` is therefore overridden to hand TRL
the token ids ``encoding.encode_prompt`` makes for inference, so the policy is trained on exactly the prompts it
is later asked with (the template is the adapter's stored one; a different ``--template`` is refused).

Batch sizes count *answers*, not prompts (TRL's convention): ``per_device_train_batch_size`` x processes x
``steps_per_generation`` must be divisible by ``num_generations``; 8 and 8 is one prompt per step.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .rewards import REWARD_FUNCTIONS, RewardWeights
from .run_info import require_chat_template, resolve_template, stored_run_info, write_run_info

__all__ = ["GrpoArguments", "finetune_grpo", "build_prompts"]


@dataclass
class GrpoArguments:
    """GRPO-only settings (``--stage grpo``); everything else is SFT's (model, data, method, training)."""

    num_generations: int = field(default=8, metadata={"help": "answers sampled per prompt (the group whose mean is the baseline)"})
    steps_per_generation: int | None = field(default=None, metadata={"help": "optimizer steps per sampled batch; default gradient_accumulation_steps"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the answers"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling of the answers (1: off)"})
    beta: float = field(default=0.0, metadata={"help": "KL weight against the starting policy (the SFT adapter or the base); 0: none"})
    epsilon: float = field(default=0.2, metadata={"help": "clipping range of the policy ratio"})
    loss_type: str = field(default="dapo", metadata={"help": "TRL loss: dapo, grpo, dr_grpo, bnpo, ..."})
    scale_rewards: str = field(default="group", metadata={"help": "divide advantages by the reward std of the group, batch, or none"})
    num_iterations: int = field(default=1, metadata={"help": "optimisation passes over each sampled batch"})
    mask_truncated_completions: bool = field(default=False, metadata={"help": "leave answers cut at max_target_length out of the loss"})
    f1_weight: float = field(default=1.0, metadata={"help": "weight of the task F1 term (the reward of a perfect answer)"})
    format_weight: float = field(default=0.2, metadata={"help": "weight of the format penalty (0 / -0.5 / -1)"})
    grounding_weight: float = field(default=0.5, metadata={"help": "weight of the penalty for extracted strings not in the input"})
    use_vllm: bool = field(default=False, metadata={"help": "sample with vLLM (GPU, pip install vllm); TRL syncs the weights"})
    vllm_mode: str = field(default="colocate", metadata={"help": "colocate (same GPUs) or server (trl vllm-serve)"})
    vllm_gpu_memory_utilization: float = field(default=0.3, metadata={"help": "colocate: the GPU memory share vLLM takes"})
    log_completions: bool = field(default=False, metadata={"help": "print sampled answers and their rewards at each log"})

    def weights(self) -> RewardWeights:
        return RewardWeights(f1=self.f1_weight, format=self.format_weight, grounding=self.grounding_weight)


_TRL_SETTINGS = ("num_generations", "steps_per_generation", "temperature", "top_p", "beta", "epsilon", "loss_type",
                 "scale_rewards", "num_iterations", "mask_truncated_completions", "use_vllm", "vllm_mode",
                 "vllm_gpu_memory_utilization", "log_completions")


def build_prompts(records: list[dict], tokenizer: Any, template: str, system: str | None, budget: int) -> tuple[list[dict], dict[str, list[int]]]:
    """Dataset rows (``prompt`` text plus the columns the reward reads) and each prompt text's token ids.

    The ids are ``encode_prompt``'s, the ones ``deepke-llm infer`` generates from; the text is only their
    decoding, a key for TRL's logs.
    """
    from .encoding import encode_prompt

    rows, ids_by_text, shortened = [], {}, 0
    for record in records:
        ids, cut = encode_prompt(record, tokenizer, template, system, budget)
        shortened += cut
        text = tokenizer.decode(ids)
        ids_by_text[text] = ids
        output = record["output"] if isinstance(record["output"], str) else json.dumps(record["output"], ensure_ascii=False)
        rows.append({"prompt": text, "task": record.get("task"), "instruction": record["instruction"], "output": output})
    missing = [i + 1 for i, row in enumerate(rows) if not isinstance(row["task"], str)]
    if missing:
        raise ValueError(f"--stage grpo needs each record's task to score its answers (records {missing[:5]} have none); "
                         "convert the data with deepke-llm convert")
    print(f"[grpo] {len(rows)} prompts; {shortened} inputs shortened to max_source_length={budget}", file=sys.stderr)
    return rows, ids_by_text


def _trainer_class():
    """GRPOTrainer that generates from our prompt ids (see the module docstring for why)."""
    from trl import GRPOTrainer

    if not hasattr(GRPOTrainer, "_tokenize_prompts"):
        raise ImportError("this TRL version's GRPOTrainer has no _tokenize_prompts, which --stage grpo overrides to "
                          "keep prompts identical to inference; install trl>=1.0,<2 (tested with 1.16)")

    class ExtractionGRPOTrainer(GRPOTrainer):
        prompt_ids: dict[str, list[int]]  # prompt text -> its ids; set after construction

        def _tokenize_prompts(self, prompts: list):
            return [list(self.prompt_ids[p]) for p in prompts], None, {}

    return ExtractionGRPOTrainer


def _grpo_config(train_args: Any, grpo_args: GrpoArguments, max_completion_length: int):
    """TRL's GRPOConfig from SFT's training settings (the same names) plus the GRPO ones."""
    import torch
    from trl import GRPOConfig

    accepted = {f.name for f in fields(GRPOConfig)}
    # Set below (or by TRL's sampler): the device policy, evaluation, columns, progress bars, batch order.
    ours = {"resume_from_checkpoint", "use_cpu", "ddp_backend", "remove_unused_columns", "disable_tqdm",
            "eval_strategy", "train_sampling_strategy"}
    training = {k: v for k, v in asdict(train_args).items() if k in accepted and k not in ours}
    training["eval_strategy"] = "no"
    on_cpu = not torch.cuda.is_available()  # as in train.py: torchrun on CPU forms a gloo group only when told
    return GRPOConfig(
        **training, **{name: getattr(grpo_args, name) for name in _TRL_SETTINGS},
        use_cpu=on_cpu, ddp_backend="gloo" if on_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        max_completion_length=max_completion_length, reward_weights=list(asdict(grpo_args.weights()).values()),
        remove_unused_columns=False, disable_tqdm=not sys.stderr.isatty())


def finetune_grpo(model_args: Any, data_args: Any, method: Any, train_args: Any,
                  grpo_args: GrpoArguments | None = None) -> dict[str, Any]:
    """Train with GRPO and save the adapter (or model), tokenizer, run info and history; returns the metrics.

    The arguments are ``train.py``'s dataclasses plus :class:`GrpoArguments`. A rerun on the same ``output_dir``
    resumes from its last checkpoint unless ``overwrite_output_dir`` is set.
    """
    from .checkpoints import check_output_dir, last_complete_checkpoint, run_fingerprint
    from .engines.local import stop_token_ids
    from .train import (_check_arguments, load_seeded_model, load_training_records, peft_config, save_run,
                        warn_if_template_markers_unknown)

    from .io import check_input_file

    grpo_args = grpo_args or GrpoArguments()
    check_input_file(data_args.train_file, "--train_file")
    _check_arguments(model_args, method, train_args)
    fingerprint = {**run_fingerprint(model_args, data_args, method, train_args), "grpo": asdict(grpo_args)}
    check_output_dir(train_args.output_dir, fingerprint, train_args.overwrite_output_dir)
    if method.finetuning_type == "p_tuning":
        raise ValueError("--stage grpo trains LoRA (--finetuning_type lora, QLoRA with --bits 4) or the full model; "
                         "P-Tuning's virtual tokens are not supported by it")
    if data_args.valid_file or data_args.val_set_size:
        raise ValueError("--stage grpo has no held-out evaluation: drop --valid_file/--val_set_size and score the "
                         "result with deepke-llm infer + evaluate")
    info = stored_run_info(model_args.checkpoint_dir, model_args.model_name_or_path)
    template = resolve_template(model_args.template, info, model_args.checkpoint_dir or model_args.model_name_or_path)
    records = load_training_records(data_args.train_file)
    model, tokenizer = load_seeded_model(model_args, train_args, padding_side="left")
    require_chat_template(template, tokenizer, model_args.model_name_or_path)
    warn_if_template_markers_unknown(template, tokenizer)
    rows, ids_by_text = build_prompts(records, tokenizer, template, model_args.system_prompt, data_args.max_source_length)
    # Sampling stops where inference stops: EOS and the template's end-of-turn marker (TRL reads these ids).
    model.generation_config.eos_token_id = stop_token_ids(tokenizer, model, template)
    if model_args.bits in (4, 8):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(train_args.gradient_checkpointing))
    # A continued adapter is already a trainable PeftModel; TRL then keeps a frozen copy as the KL reference.
    config = None if hasattr(model, "peft_config") else peft_config(model, model_args, method)

    from datasets import Dataset

    trainer = _trainer_class()(model=model, reward_funcs=list(REWARD_FUNCTIONS), args=_grpo_config(
        train_args, grpo_args, data_args.max_target_length), train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer, peft_config=config)
    trainer.prompt_ids = ids_by_text
    if hasattr(trainer.model, "peft_config"):  # the LoRA layers exist once TRL has wrapped the model
        from .cpu_lora import use_cpu_lora

        use_cpu_lora(trainer.model)
    if trainer.is_world_process_zero():  # written first, so checkpoints of an interrupted run carry it too
        write_run_info(train_args.output_dir, {
            "template": template, "system_prompt": model_args.system_prompt, "base_model": model_args.model_name_or_path,
            "model_name": model_args.model_name, "finetuning_type": method.finetuning_type,
            "continued_from": model_args.checkpoint_dir, "bits": model_args.bits, "stage": "grpo",
            "reward_weights": asdict(grpo_args.weights()), "fingerprint": fingerprint})
    resume = train_args.resume_from_checkpoint
    if resume is None and not train_args.overwrite_output_dir:
        resume = last_complete_checkpoint(train_args.output_dir)
        if resume:
            print(f"[grpo] resuming from {resume}", file=sys.stderr)
    metrics = trainer.train(resume_from_checkpoint=resume).metrics
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(unwrapped, "peft_config", {}):  # TRL's frozen KL reference, not part of the result
        unwrapped.delete_adapter("ref")
    save_run(trainer, tokenizer, train_args.output_dir)
    return metrics
