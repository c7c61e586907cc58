"""``make quickstart`` / ``deepke-llm quickstart``: the main job end to end on the bundled sample data.

Stage by stage, the same calls a user makes: convert raw records into instruction records (train and test),
then score prediction records. Until a model is trained here, the predictions scored are the reference
answers rendered by the converter (an oracle, F1 100 by construction) and a copy with every other answer
removed, to show what the evaluator reports; both are labelled as such in the output.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .convert import ConvertConfig, convert_file
from .evaluate import evaluate_records
from .io import iter_jsonl, write_jsonl

__all__ = ["run_quickstart", "default_data_dir"]

CASES = [("en", "NER", 6), ("zh", "RE", 4)]


def default_data_dir() -> Path:
    """The repository's ``data/`` beside the package (source checkouts and editable installs)."""
    path = Path(__file__).resolve().parents[1] / "data"
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: sample data not found; pass --data_dir pointing at the repository's data/ folder")
    return path


def _reference_predictions(train_path: Path, test_path: Path, keep_every: int) -> list[tuple[int, dict]]:
    """Test records carrying the converter's reference answers; ``keep_every=2`` blanks every other chunk."""
    import hashlib

    gold = {}
    for _, rec in iter_jsonl(test_path):
        gold.setdefault(rec["id"], rec)
    predictions = []
    for n, (_, rec) in enumerate(iter_jsonl(train_path)):
        text = json.loads(rec["instruction"])["input"]
        test_rec = gold[hashlib.sha256(text.encode("utf-8")).hexdigest()]
        output = rec["output"] if n % keep_every == 0 else "{}"
        predictions.append((n + 1, {**test_rec, "output": output}))
    return predictions


def run_quickstart(workdir: str | None = None, model: str | None = None, data_dir: str | None = None) -> int:
    """Run the walk-through and print what each stage produced; returns a process exit status."""
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="deepke-llm-quickstart-"))
    data = Path(data_dir) if data_dir else default_data_dir()
    if model:
        print(f"note: --model {model} is used once fine-tuning lands; this walk-through converts and scores only")
    for language, task, split_num in CASES:
        source = data / language / task
        paths = {}
        for split in ("train", "test"):
            paths[split] = root / language / task / f"{split}.json"
            report = convert_file(ConvertConfig(
                src_path=str(source / "sample.json"), schema_path=str(source / "schema.json"), tgt_path=str(paths[split]),
                task=task, language=language, split=split, split_num=split_num, source=f"{language}-{task}", progress=False))
            print(f"[convert] {language}/{task} {split}: {report.summary()} -> {paths[split]}")
        first = next(iter_jsonl(paths["train"]))[1]
        print(f"[convert] first training record:\n  instruction: {first['instruction'][:160]}...\n  output: {first['output'][:160]}")
        for label, keep in (("reference answers (oracle)", 1), ("half of the answers removed", 2)):
            predictions = _reference_predictions(paths["train"], paths["test"], keep)
            write_jsonl(root / language / task / f"pred_keep{keep}.json", (r for _, r in predictions))
            total = evaluate_records(predictions, task)["total"]
            scores = {k: v for k, v in total.items() if k != "per_type"}
            print(f"[evaluate] {language}/{task}, {label}: {json.dumps(scores, ensure_ascii=False)}")
    print(f"outputs in {root}")
    return 0
