"""Guided decoding on held-out records: unguided vs ``--guided schema`` vs ``--guided spans``.

Runs ``deepke-llm infer`` (the transformers engine, greedy, one loaded model for every run) on the committed tiny
IE base's held-out records (``assets/tiny-ie-base/held_out``: NER, RE and EE, zh and en, 60 records each) in the
three modes and prints, per file and mode: parse failures (answers that are not a JSON object), extracted strings
and how many of them are not in the input text (hallucinated), F1 (EE: event / argument) and seconds (wall clock,
and the CPU time of this process, which other jobs on a shared machine disturb less), then the totals with the
seconds as ratios to unguided decoding measured in the same run. A warm-up pass (one record per task and mode, not
timed) takes the one-time costs (first generation, loading xgrammar) out of the comparison.

Goal: 0 hallucinated strings and 0 parse failures with ``--guided spans``.

    python bench/guided.py [--max_new_tokens 200] [--files NER-en,EE-zh]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

MODES = (None, "schema", "spans")
FILES = ("NER-en", "NER-zh", "RE-en", "RE-zh", "EE-en", "EE-zh")


def _score(path: Path) -> dict:
    """Parse failures, strings, hallucinated strings and F1 of one prediction file."""
    from deepke_llm_core.errors import hallucinated_mentions
    from deepke_llm_core.evaluate import evaluate_records, instruction_input
    from deepke_llm_core.io import iter_jsonl
    from deepke_llm_core.tasks import get_task

    records = [r for _, r in iter_jsonl(str(path))]
    total = evaluate_records(records)["total"]
    task = get_task(records[0]["task"])
    strings = hallucinated = 0
    for record in records:
        extractions = task.parse_answer(record["output"]) or []
        strings += sum(1 for e in extractions for m in e.mentions() if m.text)
        hallucinated += len(hallucinated_mentions(extractions, instruction_input(record)))
    f1 = f"{total['F1']:.2f}" if "F1" in total else f"{total['event_F1']:.2f} / {total['argument_F1']:.2f}"
    return {"records": len(records), "parse_failures": total["错误数"], "strings": strings,
            "hallucinated": hallucinated, "F1": f1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_new_tokens", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--files", default=",".join(FILES), help="held-out files to run (comma-separated)")
    parser.add_argument("--model", default=None, help="default: the committed tiny IE base")
    args = parser.parse_args()
    from deepke_llm_core.engines import TransformersEngine
    from deepke_llm_core.predict import InferArguments, run_inference
    from deepke_llm_core.tiny_base import tiny_base_path

    model = Path(args.model or tiny_base_path())
    held_out = tiny_base_path() / "held_out"
    engine = TransformersEngine.load(str(model), batch_size=args.batch_size, cutoff_len=512)
    names = [n for n in args.files.split(",") if n]
    rows, seconds, cpu = [], {m: 0.0 for m in MODES}, {m: 0.0 for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warm = root / "warm.json"
        warm.write_text("".join((held_out / f"{n}.json").read_text(encoding="utf-8").splitlines(True)[0] for n in FILES[::2]),
                        encoding="utf-8")
        for mode in MODES:  # not timed: the first generation and xgrammar's first use
            run_inference(InferArguments(model_name_or_path=str(model), input_file=str(warm), guided=mode,
                                         output_file=str(root / f"warm-{mode}.json"), max_new_tokens=8), engine=engine)
        for name in names:
            for mode in MODES:
                out = root / f"{name}-{mode}.json"
                start, start_cpu = time.perf_counter(), time.process_time()
                run_inference(InferArguments(model_name_or_path=str(model), input_file=str(held_out / f"{name}.json"),
                                             output_file=str(out), max_new_tokens=args.max_new_tokens,
                                             batch_size=args.batch_size, guided=mode), engine=engine)
                elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
                seconds[mode] += elapsed
                cpu[mode] += elapsed_cpu
                rows.append({"file": name, "mode": mode or "unguided", **_score(out), "seconds": elapsed,
                             "cpu": elapsed_cpu})
    print("| held-out file | decoding | parse failures | strings | hallucinated | F1 | seconds | CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['file']} | {r['mode']} | {r['parse_failures']}/{r['records']} | {r['strings']} | {r['hallucinated']} "
              f"| {r['F1']} | {r['seconds']:.1f} | {r['cpu']:.1f} |")
    print()
    print("| decoding | parse failures | strings | hallucinated | seconds | CPU s | vs unguided (wall / CPU) |")
    print("|---|---|---|---|---|---|---|")
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == (mode or "unguided")]
        print(f"| {mode or 'unguided'} | {sum(r['parse_failures'] for r in mine)}/{sum(r['records'] for r in mine)} "
              f"| {sum(r['strings'] for r in mine)} | {sum(r['hallucinated'] for r in mine)} | {seconds[mode]:.1f} "
              f"| {cpu[mode]:.1f} | {seconds[mode] / seconds[None]:.2f}x / {cpu[mode] / cpu[None]:.2f}x |")
    spans = [r for r in rows if r["mode"] == "spans"]
    ok = all(r["hallucinated"] == 0 and r["parse_failures"] == 0 for r in spans)
    print(f"\n--guided spans: 0 hallucinated strings and 0 parse failures: {ok}")
    print(json.dumps({"max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "model": str(model)}))


if __name__ == "__main__":
    main()
