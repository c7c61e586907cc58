"""Prediction throughput: length-grouped batches against batch size 1, same model, data and run.

Runs ``deepke-llm infer`` (the transformers engine, greedy) on the committed tiny IE base over a shuffled
mix of NER/RE/EE test instructions in zh and en, once with ``--batch_size 1`` and once with the default
length-grouped batches, checks that both wrote the same outputs, and prints records/s and the ratio.
Goal: >= 5x on CPU.

    python bench/infer.py [--records 96] [--batch_size 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import mixed_instruction_file  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per_task", type=int, default=16, help="records per task and language")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--model", default=None, help="default: the committed tiny IE base")
    args = parser.parse_args()
    from deepke_llm_core.predict import InferArguments, run_inference
    from deepke_llm_core.tiny_base import tiny_base_path

    model = args.model or str(tiny_base_path())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        test_file = mixed_instruction_file(root, per_task=args.per_task, seed=1, split="test")
        rates = {}
        for batch in (1, args.batch_size):
            out = root / f"pred_{batch}.json"
            stats = run_inference(InferArguments(model_name_or_path=model, input_file=str(test_file), output_file=str(out),
                                                 batch_size=batch, max_new_tokens=160))
            rates[batch] = stats["records_per_second"]
            print(f"batch_size {batch:>3}: {rates[batch]:7.1f} records/s ({stats['records']} records, {stats['seconds']:.1f} s)")
        same = (root / "pred_1.json").read_bytes() == (root / f"pred_{args.batch_size}.json").read_bytes()
        print(f"identical outputs: {same}; ratio: {rates[args.batch_size] / rates[1]:.1f}x (goal >= 5x)")


if __name__ == "__main__":
    main()
