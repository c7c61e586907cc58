"""Training throughput: length-grouped batches against plain padded batches, same model, data and run.

Trains the tiny Qwen2 model (full fine-tuning, batch 16) for the same number of steps twice on a shuffled mix
of NER/RE/EE instructions in zh and en, once with batches drawn at random (each padded to its longest member)
and once with ``train_sampling_strategy="group_by_length"`` (what ``deepke-llm finetune`` does by default),
and prints real (non-padding) training tokens per second and the ratio. Goal: >= 1.5x.

    python bench/train.py [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_data.py, when run as a script

from _data import mixed_instruction_file  # noqa: E402


def measure(base: str, train_file: Path, out: Path, grouped: bool, steps: int) -> float:
    """Seconds the trainer spent training (data preparation excluded, the same for both)."""
    from deepke_llm_core.train import DataArguments, FinetuningArguments, ModelArguments, TrainingArguments, finetune

    metrics = finetune(ModelArguments(model_name_or_path=base), DataArguments(train_file=str(train_file), cutoff_len=1024),
                       FinetuningArguments(finetuning_type="full"),
                       TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=16,
                                         save_strategy="no", logging_steps=steps, overwrite_output_dir=True,
                                         group_by_length=grouped))
    return metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from deepke_llm_core.encoding import tokenize_example
    from deepke_llm_core.tiny import tiny_model_path

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = str(tiny_model_path("qwen2"))
        train_file = mixed_instruction_file(root, per_task=200)
        tokenizer = AutoTokenizer.from_pretrained(base)
        lengths = [len(tokenize_example(json.loads(l), tokenizer, "auto", None, 1024)[0]["input_ids"])
                   for l in train_file.read_text(encoding="utf-8").splitlines()]
        tokens = args.steps * 16 * sum(lengths) / len(lengths)  # real tokens seen (the same in expectation)
        print(f"{len(lengths)} examples, {min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f}); "
              f"{args.steps} steps of 16")
        results = {}
        for name, grouped in (("padded (random batches)", False), ("length-grouped", True)):
            seconds = measure(base, train_file, root / name.split()[0], grouped, args.steps)
            results[name] = tokens / seconds
            print(f"{name:<24} {results[name]:>9.0f} tokens/s  ({seconds:.1f} s)")
        ratio = results["length-grouped"] / results["padded (random batches)"]
        print(f"ratio length-grouped / padded: {ratio:.2f}x (goal >= 1.5x)")


if __name__ == "__main__":
    main()
