"""Prediction throughput: our transformers engine against batch size 1 and against transformers' own continuous
batching (``generate_batch``), same model, prompts and run.

Runs ``deepke-llm infer`` (the transformers engine, greedy, max 160 new tokens) on the committed tiny IE base over
a shuffled mix of NER/RE/EE test instructions in zh and en, once with ``--batch_size 1`` and once with its
length-grouped batches of 16; then hands the very same prompt ids to ``model.generate_batch`` (transformers'
continuous batching: paged KV cache, requests joining and leaving the batch as they finish) with a small grid of
its ``ContinuousBatchingConfig`` (its defaults size the cache for 90% of free memory and were about 16x slower
on CPU), and reports the best setting found. Outputs of every run are compared with ours (the same decoding:
stop at EOS or ``<|im_end|>``, special tokens skipped). Each run is timed from loading the model to the last
output. Prints records per CPU second of this process (all its threads: the ratios' measure, steadier than wall
time on a shared machine), records per wall second beside, and the ratios. Goals: >= 5x batch 1, >= 1x
``generate_batch``.

    python bench/infer.py [--per_task 16] [--batch_size 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import mixed_instruction_file  # noqa: E402

# (max_batch_tokens, max_requests_per_batch, page_size): the grid tried for generate_batch
CB_GRID = [(256, 8, 64), (256, 16, 64), (512, 16, 64), (512, 32, 64), (1024, 32, 128)]


def generate_batch_runs(model_path: str, test_file: Path, max_new_tokens: int) -> list[tuple[str, dict, list[str]]]:
    """``(setting, {"per_s", "per_cpu_s"}, texts)`` for each setting of ``CB_GRID``, texts in the file's order."""
    import math

    from transformers import GenerationConfig
    from transformers.generation import ContinuousBatchingConfig

    from deepke_llm_core.encoding import encode_prompt
    from deepke_llm_core.models import load_model_and_tokenizer
    from deepke_llm_core.engines.local import stop_token_ids

    records = [json.loads(line) for line in test_file.read_text(encoding="utf-8").splitlines()]
    runs = []
    for tokens, requests, page in CB_GRID:
        start, cpu = time.perf_counter(), time.process_time()  # from loading the model on, as for ours
        model, tokenizer = load_model_and_tokenizer(model_path, None)
        prompts = [encode_prompt(r, tokenizer, "auto", None, 2048)[0] for r in records]
        stops = stop_token_ids(tokenizer, model, "auto")
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                                  pad_token_id=tokenizer.pad_token_id)
        # a cache for every request at once: prompts plus answers, in pages
        blocks = math.ceil(sum(len(p) + max_new_tokens for p in prompts) / page) + len(prompts)
        cb = ContinuousBatchingConfig(max_batch_tokens=tokens, max_requests_per_batch=requests, page_size=page,
                                      num_blocks=blocks)
        out = model.generate_batch(prompts, generation_config=config, continuous_batching_config=cb)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        texts = []
        for i in range(len(prompts)):
            ids = list(out[f"req_{i}"].generated_tokens)
            cut = next((k for k, t in enumerate(ids) if t in stops), len(ids))
            texts.append(tokenizer.decode(ids[:cut], skip_special_tokens=True))
        runs.append((f"max_batch_tokens={tokens} max_requests_per_batch={requests} page_size={page} num_blocks={blocks}",
                      {"per_s": len(prompts) / seconds, "per_cpu_s": len(prompts) / cpu}, texts))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per_task", type=int, default=16, help="records per task and language")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every run")
    parser.add_argument("--max_new_tokens", type=int, default=160)
    parser.add_argument("--model", default=None, help="default: the committed tiny IE base")
    args = parser.parse_args()
    import torch

    from deepke_llm_core.predict import InferArguments, run_inference
    from deepke_llm_core.tiny_base import tiny_base_path

    torch.set_num_threads(args.threads)
    model = args.model or str(tiny_base_path())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        test_file = mixed_instruction_file(root, per_task=args.per_task, seed=1, split="test")
        rates, outputs = {}, {}
        for batch in (1, args.batch_size):
            out = root / f"pred_{batch}.json"
            start, cpu = time.perf_counter(), time.process_time()
            stats = run_inference(InferArguments(model_name_or_path=model, input_file=str(test_file), output_file=str(out),
                                                 batch_size=batch, max_new_tokens=args.max_new_tokens))
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            rates[batch] = {"per_s": stats["records"] / seconds, "per_cpu_s": stats["records"] / cpu}
            outputs[batch] = [json.loads(line)["output"] for line in out.read_text(encoding="utf-8").splitlines()]
            print(f"ours, batch_size {batch:>3}: {rates[batch]['per_cpu_s']:7.1f} records per CPU second "
                  f"({rates[batch]['per_s']:.1f} per second)", flush=True)
        ours = outputs[args.batch_size]
        ratio = rates[args.batch_size]["per_cpu_s"] / rates[1]["per_cpu_s"]
        print(f"identical outputs: {outputs[1] == ours}; ratio: {ratio:.1f}x (goal >= 5x)")
        best = None
        for setting, rate, texts in generate_batch_runs(model, test_file, args.max_new_tokens):
            same = sum(a == b for a, b in zip(texts, ours))
            print(f"generate_batch {setting}: {rate['per_cpu_s']:7.1f} records per CPU second ({rate['per_s']:.1f} per "
                  f"second), {same}/{len(ours)} outputs identical to ours", flush=True)
            best = max(best or (rate["per_cpu_s"], setting), (rate["per_cpu_s"], setting))
        print(f"ours / generate_batch (its best setting above): {rates[args.batch_size]['per_cpu_s'] / best[0]:.2f}x "
              f"on {args.threads} thread(s) (goal >= 1x)")


if __name__ == "__main__":
    main()
