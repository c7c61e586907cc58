"""``make quickstart`` / ``deepke-llm quickstart``: the main job end to end, printing F1 before and after.

convert -> predict with the base (F1 before) -> LoRA fine-tune -> predict with base + adapter -> evaluate (F1
after). By default it runs on the committed tiny IE base (``tiny_base.py``) on CPU in a few minutes, adapting
it to a "new domain": English NER sentences built from templates the base never trained on (the same closed
entity vocabulary a tiny model can handle). With ``--model <hf id or path>`` the same steps run on a real model
over the repository's English NER sample (``data/en/NER``); expect to want a GPU for that.

The scores are printed for the fine-tuning examples themselves (can the pipeline fit what it is shown?) and
for other sentences of the domain (does it generalise?); on the tiny model the second moves little, if at all.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from .convert import ConvertConfig, convert_file
from .evaluate import evaluate_file, EvalConfig
from .io import write_jsonl

__all__ = ["run_quickstart", "QUICKSTART_STEPS"]

QUICKSTART_STEPS = 400


def _prepare_tiny_data(root: Path, seed: int) -> Path:
    """16 training and 24 other sentences of the "new domain" (templates the tiny base never trained on)."""
    from . import synthetic
    from .schema import Schema, write_schema
    from .tiny_base import HELD_OUT_TYPE

    folder = root / "data" / "quickstart-ner"
    folder.mkdir(parents=True, exist_ok=True)
    train = synthetic.make_records("NER", "en", 16, seed=seed, split="test", exclude=(HELD_OUT_TYPE,))
    seen = {r["text"] for r in train}
    others = synthetic.make_records("NER", "en", 40, seed=seed + 1000, split="test", exclude=(HELD_OUT_TYPE,))
    write_jsonl(folder / "sample.json", train)
    write_jsonl(folder / "heldout.json", [r for r in others if r["text"] not in seen][:24])
    # Types in sorted order, so test instructions (schema-file order) ask exactly what training ones (sorted) did.
    types, roles, type_roles = synthetic.schema_lines("NER", "en")
    write_schema(Schema(sorted(types), roles, type_roles), folder / "schema.json")
    return folder


def _convert(folder: Path, raw: str, out: Path, split: str, language: str) -> Path:
    report = convert_file(ConvertConfig(src_path=str(folder / raw), tgt_path=str(out), schema_path=str(folder / "schema.json"),
                                        task="NER", language=language, split=split, split_num=6, progress=False))
    print(f"  {raw} -> {out.name} ({split}): {report.summary()}")
    return out


def _score(model: str, adapter: str | None, test_file: Path, out: Path, template: str | None) -> dict:
    from .predict import InferArguments, run_inference

    stats = run_inference(InferArguments(model_name_or_path=model, checkpoint_dir=adapter, input_file=str(test_file),
                                         output_file=str(out), template=template, max_new_tokens=128, batch_size=16))
    total = evaluate_file(EvalConfig(path1=str(out), task="NER"))[0]["total"]
    rate = stats.get("records_per_second")
    print(f"  {out.name}: P {total['P']}  R {total['R']}  F1 {total['F1']}  parse errors {total['错误数']}"
          + (f"  ({rate:.0f} records/s)" if rate else ""))
    return total


def run_quickstart(workdir: str | None = None, model: str | None = None, data_dir: str | None = None,
                   steps: int = QUICKSTART_STEPS, seed: int = 0) -> int:
    """Run the walk-through; returns a process exit status. Quiet unless ``DEEPKE_LLM_VERBOSE=1`` (``quiet.py``)."""
    from .quiet import quiet
    from .resources import data_dir as bundled_data

    quiet()
    from .train import DataArguments, FinetuningArguments, ModelArguments, TrainingArguments, finetune

    started = time.perf_counter()
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="deepke-llm-quickstart-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"[1/4] convert (outputs in {root})")
    if model is None:
        from .tiny_base import tiny_base_path

        base, template, language = str(tiny_base_path()), None, "en"
        folder = _prepare_tiny_data(root, seed)
        heldout = _convert(folder, "heldout.json", root / "heldout_test.json", "test", language)
    else:
        base, template, language = model, None, "en"
        folder = Path(data_dir or bundled_data()) / "en" / "NER"
        heldout = None
    train = _convert(folder, "sample.json", root / "train.json", "train", language)
    train_as_test = _convert(folder, "sample.json", root / "train_test.json", "test", language)

    print(f"[2/4] predict with the base model {base}")
    before = {"fine-tuning examples": _score(base, None, train_as_test, root / "pred_base_train.json", template)}
    if heldout:
        before["other domain sentences"] = _score(base, None, heldout, root / "pred_base_heldout.json", template)

    print(f"[3/4] LoRA fine-tune, {steps} steps")
    adapter = root / "lora"
    metrics = finetune(
        ModelArguments(model_name_or_path=base),
        DataArguments(train_file=str(train), cutoff_len=1024),
        FinetuningArguments(finetuning_type="lora", lora_r=16, lora_alpha=32, lora_target="all", lora_dropout=0.0),
        TrainingArguments(output_dir=str(adapter), max_steps=steps, learning_rate=3e-3, per_device_train_batch_size=8,
                          lr_scheduler_type="cosine", save_strategy="no", logging_steps=20, overwrite_output_dir=True, seed=seed))
    print(f"  train loss {metrics['train_loss']:.3f} in {metrics['train_runtime']:.0f} s; adapter in {adapter}")

    print("[4/4] predict with base + adapter, evaluate")
    after = {"fine-tuning examples": _score(base, str(adapter), train_as_test, root / "pred_lora_train.json", template)}
    if heldout:
        after["other domain sentences"] = _score(base, str(adapter), heldout, root / "pred_lora_heldout.json", template)

    print("\nF1 before -> after LoRA fine-tuning")
    for name in before:
        print(f"  {name:<22} {before[name]['F1']:>6} -> {after[name]['F1']:>6}")
    summary = {"before": before, "after": after, "seconds": round(time.perf_counter() - started, 1)}
    (root / "quickstart_scores.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"done in {summary['seconds']} s; scores in {root / 'quickstart_scores.json'}")
    return 0
