"""``deepke-llm export``: merge a LoRA adapter into its base and save a standalone model.

The result loads with plain ``AutoModelForCausalLM.from_pretrained`` (and vLLM), carries the tokenizer and the
run info (so inference still knows its template), and generates exactly what base + adapter generated.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from .run_info import stored_run_info, write_run_info

__all__ = ["ExportArguments", "export_model"]


@dataclass
class ExportArguments:
    """Upstream's ``export_model.py`` flags (training-only ones accepted and ignored)."""

    model_name_or_path: str = field(metadata={"help": "the base model the adapter was trained on"})
    checkpoint_dir: str = field(metadata={"help": "the LoRA adapter folder (comma list: merged in order)"})
    export_dir: str = field(metadata={"help": "where the merged model goes"})
    model_name: str | None = None
    template: str | None = None
    bf16: bool = False
    fp16: bool = False
    max_shard_size: str = "10GB"
    trust_remote_code: bool = False
    stage: str = "sft"
    output_dir: str | None = field(default=None, metadata={"help": "ignored, as upstream"})


def _check_export_dir(args: ExportArguments) -> None:
    """Never write into the base model or an adapter, nor into a non-empty folder this command did not create."""
    import os

    from .io import same_file

    target = args.export_dir
    for source, flag in [(args.model_name_or_path, "--model_name_or_path"),
                         *((a, "--checkpoint_dir") for a in args.checkpoint_dir.split(","))]:
        if same_file(target, source):
            raise ValueError(f"--export_dir {target} is {flag}: the merged weights would overwrite it; choose a new folder")
    if os.path.isfile(target):
        raise ValueError(f"--export_dir {target} is a file; choose a folder")
    from .run_info import RUN_INFO_FILE

    ours = os.path.isfile(os.path.join(target, RUN_INFO_FILE)) and "merged_from" in stored_run_info(target)
    if os.path.isdir(target) and os.listdir(target) and not ours:
        raise ValueError(f"--export_dir {target} is a non-empty folder that deepke-llm export did not create; "
                         "choose a new or empty folder")


def export_model(args: ExportArguments) -> str:
    """Merge and save; returns the export folder."""
    from .models import load_model_and_tokenizer
    from .run_info import resolve_template

    _check_export_dir(args)
    info = stored_run_info(args.checkpoint_dir.split(",")[-1])
    template = resolve_template(args.template, info, args.checkpoint_dir)
    if info.get("finetuning_type") == "p_tuning":
        raise ValueError("a P-Tuning adapter adds virtual tokens at run time and cannot be merged into the weights; "
                         "predict with --checkpoint_dir instead")
    if info.get("bits") in (4, 8):
        print("[export] the adapter was trained on a quantized base; it is merged into the full-precision base",
              file=sys.stderr)
    dtype = "bf16" if args.bf16 else "fp16" if args.fp16 else "auto"
    model, tokenizer = load_model_and_tokenizer(args.model_name_or_path, args.checkpoint_dir, model_name=args.model_name,
                                                dtype=dtype, merge_adapters=True, trust_remote_code=args.trust_remote_code)
    model.config.use_cache = True
    model.save_pretrained(args.export_dir, max_shard_size=args.max_shard_size)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(args.export_dir)
    merged: dict[str, Any] = {**info, "template": template, "merged_from": args.checkpoint_dir,
                              "base_model": args.model_name_or_path, "finetuning_type": "full"}
    write_run_info(args.export_dir, merged)
    return args.export_dir
