"""``make quickstart`` / ``deepke-llm quickstart``: the main job end to end, printing F1 before and after.

convert -> predict with the base (F1 before) -> LoRA fine-tune -> predict with base + adapter -> evaluate (F1
after). By default it runs on the committed tiny IE base (``tiny_base.py``) on CPU in under a minute, adapting it
to a "new domain": English sentences in styles the base never trained on (``synthetic`` split ``new``), about
products (an entity type held out of the base) and people, places and organisations whose names the base never
saw. With ``--model <hf id or path>`` the same steps run on a real model over the repository's English NER sample
(``data/en/NER``); expect to want a GPU for that.

The scores are printed for the fine-tuning examples themselves (can the pipeline fit what it is shown?) and,
what matters, for *other* sentences of the domain (does it generalise?). Those other sentences share no text with
the fine-tuning examples and mention none of their products, so a gain there is not memorisation.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from .convert import ConvertConfig, convert_file
from .evaluate import evaluate_file, EvalConfig
from .io import write_jsonl

__all__ = ["run_quickstart", "new_domain_records", "QUICKSTART_STEPS", "QUICKSTART_RECIPE"]

QUICKSTART_STEPS = 300
# LoRA on the tiny base: raises F1 on other sentences of the new domain by +47.07 and +28.29 (seeds 0 and 1;
# tests/test_learning.py asserts at least +15).
QUICKSTART_RECIPE = {"language": "en", "records": 48, "others": 48, "lr": 3e-3, "batch_size": 8, "lora_r": 16}


def new_domain_records(seed: int, n_train: int, n_others: int, language: str = "en") -> tuple[list[dict], list[dict]]:
    """NER records of the "new domain": ``n_train`` to fine-tune on and ``n_others`` to check on.

    The others share no sentence and no product name with the fine-tuning records (products are the type being
    taught, so a product seen in training would make the check partly one of memory).
    """
    from . import synthetic

    train = synthetic.make_records("NER", language, n_train, seed=seed, split="new")
    texts = {r["text"] for r in train}
    products = {e["entity"] for r in train for e in r["entity"] if e["entity_type"] == "product"}
    candidates = synthetic.make_records("NER", language, 6 * n_others, seed=seed + 1000, split="new")
    others = [r for r in candidates if r["text"] not in texts and not products & {e["entity"] for e in r["entity"]}]
    if len(others) < n_others:
        raise ValueError(f"only {len(others)} other sentences without a fine-tuning product; asked for {n_others}")
    return train, others[:n_others]


def _prepare_tiny_data(root: Path, seed: int, n_train: int, n_others: int, language: str) -> Path:
    """The new domain's fine-tuning sentences (``sample.json``), other sentences (``heldout.json``) and schema."""
    from . import synthetic
    from .schema import Schema, write_schema

    folder = root / "data" / "quickstart-ner"
    folder.mkdir(parents=True, exist_ok=True)
    train, others = new_domain_records(seed, n_train, n_others, language)
    write_jsonl(folder / "sample.json", train)
    write_jsonl(folder / "heldout.json", others)
    # Types in sorted order, so test instructions (schema-file order) ask exactly what training ones (sorted) did.
    types, roles, type_roles = synthetic.schema_lines("NER", language)
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


def _verdict(before: float, after: float, n: int) -> str:
    """One plain sentence on what fine-tuning did to sentences it never saw."""
    gain = round(after - before, 2)
    if gain >= 10:
        return f"Fine-tuning generalised: on {n} sentences it never saw, F1 rose by {gain} points ({before} -> {after})."
    if gain > 0:
        return f"Fine-tuning helped a little: on {n} sentences it never saw, F1 rose by {gain} points ({before} -> {after})."
    return f"Fine-tuning did not generalise here: on {n} sentences it never saw, F1 went {before} -> {after}."


def run_quickstart(workdir: str | None = None, model: str | None = None, data_dir: str | None = None,
                   steps: int = QUICKSTART_STEPS, seed: int = 0) -> int:
    """Run the walk-through; returns a process exit status. Quiet unless ``DEEPKE_LLM_VERBOSE=1`` (``quiet.py``)."""
    from .quiet import quiet
    from .resources import data_dir as bundled_data

    quiet()
    from .train import DataArguments, FinetuningArguments, ModelArguments, TrainingArguments, finetune

    started = time.perf_counter()
    recipe = QUICKSTART_RECIPE
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="deepke-llm-quickstart-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"[1/4] convert (outputs in {root})")
    if model is None:
        from .tiny_base import tiny_base_path

        base, template, language = str(tiny_base_path()), None, recipe["language"]
        folder = _prepare_tiny_data(root, seed, recipe["records"], recipe["others"], language)
        print(f"  new domain: {recipe['records']} sentences to fine-tune on and {recipe['others']} other sentences, "
              "in styles the base never trained on, about products (a type the base never learned)")
        heldout = _convert(folder, "heldout.json", root / "heldout_test.json", "test", language)
    else:
        base, template, language = model, None, "en"
        folder = Path(data_dir or bundled_data()) / "en" / "NER"
        heldout = None
    train = _convert(folder, "sample.json", root / "train.json", "train", language)
    train_as_test = _convert(folder, "sample.json", root / "train_test.json", "test", language)
    names = {"fit": "the fine-tuning examples", "other": "other sentences of the domain"}

    print(f"[2/4] predict with the base model {base}")
    before = {names["fit"]: _score(base, None, train_as_test, root / "pred_base_train.json", template)}
    if heldout:
        before[names["other"]] = _score(base, None, heldout, root / "pred_base_heldout.json", template)

    print(f"[3/4] LoRA fine-tune, {steps} steps")
    adapter = root / "lora"
    metrics = finetune(
        ModelArguments(model_name_or_path=base),
        DataArguments(train_file=str(train), cutoff_len=1024),
        FinetuningArguments(finetuning_type="lora", lora_r=recipe["lora_r"], lora_alpha=2 * recipe["lora_r"],
                            lora_target="all", lora_dropout=0.0),
        TrainingArguments(output_dir=str(adapter), max_steps=steps, learning_rate=recipe["lr"],
                          per_device_train_batch_size=recipe["batch_size"], lr_scheduler_type="cosine",
                          save_strategy="no", logging_steps=20, overwrite_output_dir=True, seed=seed))
    print(f"  train loss {metrics['train_loss']:.3f} in {metrics['train_runtime']:.0f} s; adapter in {adapter}")

    print("[4/4] predict with base + adapter, evaluate")
    after = {names["fit"]: _score(base, str(adapter), train_as_test, root / "pred_lora_train.json", template)}
    if heldout:
        after[names["other"]] = _score(base, str(adapter), heldout, root / "pred_lora_heldout.json", template)

    print("\nF1 before -> after LoRA fine-tuning")
    for name in before:
        print(f"  {name:<30} {before[name]['F1']:>6} -> {after[name]['F1']:>6}")
    if heldout:
        print(_verdict(before[names["other"]]["F1"], after[names["other"]]["F1"], recipe["others"]))
    summary = {"before": before, "after": after, "seconds": round(time.perf_counter() - started, 1)}
    (root / "quickstart_scores.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"done in {summary['seconds']} s; scores in {root / 'quickstart_scores.json'}")
    return 0
