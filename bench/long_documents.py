"""Long documents on the tiny IE base: a Chinese and an English document of 30,000+ characters, end to end.

Each document is assembled from synthetic sentences of the base's domain (``synthetic.make_document``, NER, both
splits' templates, the held-out type ``product`` left out as the base never learned it) and its gold annotation
is every sentence's entities. Measured, per language:

1. **one by one**: every sentence extracted on its own (``extract`` on the list of sentences), its extractions
   moved to document offsets: the reference recall;
2. **sentence windows** (``deepke-llm extract --window_sentences 1``): the document through the windows, merged,
   with offsets into the whole document; recall against (1), the last sentence's entities, and every offset
   checked: ``document[start:end] == text`` (exact), equal after normalising (fuzzy), or no offsets (not found);
3. **kill and resume**: the same command in a real ``deepke-llm extract`` process killed with SIGKILL after about
   a third of its windows, then run again: the output must equal (2) byte for byte;
4. **token windows** (``--window_tokens N --overlap_tokens M``, several sentences per window, overlapping): the
   same checks; recall is reported, not asserted: the tiny base was trained on single sentences;
5. for contrast, the old behaviour: the whole document as one instruction, shortened by the engine to
   ``cutoff_len`` (512 tokens): what is left of its recall and of its last sentence.

    python bench/long_documents.py [--chars 30000] [--languages zh en] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN_WINDOWS = {"zh": (64, 24), "en": (80, 32)}


def check_offsets(text: str, lines: list[dict]) -> dict[str, int]:
    """Counts of exact, fuzzy and not-found strings; raises if an exact offset does not slice to its string."""
    from deepke_llm_core.align import normalize

    counts = {"exact": 0, "fuzzy": 0, "not_found": 0}
    for item in lines:
        if item.get("status") == "not_found":
            assert item["start"] is None, item
            counts["not_found"] += 1
        elif item.get("status") == "fuzzy":
            assert normalize(text[item["start"]:item["end"]]) == normalize(item["text"]), item
            counts["fuzzy"] += 1
        else:
            assert text[item["start"]:item["end"]] == item["text"], item
            counts["exact"] += 1
    return counts


def scores(task, document, extractions, parse_errors: int = 0) -> dict:
    from deepke_llm_core.extract import ExtractionResult, document_scores

    result = ExtractionResult(document.text, list(extractions), parse_errors=parse_errors)
    total = document_scores(task, [document], [result])
    return {key: total[key] for key in ("P", "R", "F1", "错误数")}


def from_lines(task, items: list[dict]):
    """Typed entities back from ``extract``'s output items (NER)."""
    from deepke_llm_core.records import Entity, Mention

    return [Entity(Mention(i["text"], i["start"], i["end"], i.get("status", "exact")), i["type"]) for i in items]


def last_sentence(raw: dict, items: list[dict], baseline_last) -> dict:
    start, end = raw["sentences"][-1]
    found = sorted({(i["type"], i["text"]) for i in items if i["start"] is not None and start <= i["start"] < end})
    gold = sorted({(g["entity_type"], g["entity"]) for g in raw["sentence_labels"][-1]})
    alone = sorted({(e.type, e.text.text) for e in baseline_last.extractions if e.text.start is not None})
    return {"sentence": raw["text"][start:end], "gold": gold, "found_in_document": found, "found_alone": alone,
            "all_gold_found": set(gold) <= set(found)}


def run_language(language: str, chars: int, workdir: Path, engine, batch_size: int, max_tokens: int) -> dict:
    from deepke_llm_core.documents import Document, shift
    from deepke_llm_core.engines import Sampling
    from deepke_llm_core.extract import ExtractArguments, extract, extract_file
    from deepke_llm_core.io import write_jsonl
    from deepke_llm_core.synthetic import make_document
    from deepke_llm_core.tasks import get_task
    from deepke_llm_core.tiny_base import HELD_OUT_TYPE, tiny_base_path
    from deepke_llm_core.widgets import tiny_base_schema_text

    task = get_task("NER")
    raw = make_document("NER", language, chars, seed=0, exclude=(HELD_OUT_TYPE,))
    text = raw["text"]
    sentences = [text[s:e] for s, e in raw["sentences"]]
    folder = workdir / language
    folder.mkdir(parents=True, exist_ok=True)
    schema = tiny_base_schema_text("NER", language)
    (folder / "schema.json").write_text(schema, encoding="utf-8")
    docs = folder / "docs.json"
    write_jsonl(docs, [{"id": raw["id"], "text": text, "entity": raw["entity"]}])
    document = Document(raw["id"], text, task.gold_tuples(raw["entity"]))
    out: dict = {"characters": len(text), "sentences": len(sentences), "gold_entities": len(raw["entity"])}

    start = time.perf_counter()
    alone = extract(sentences, "NER", schema, engine, language=language, sampling=Sampling(max_tokens=max_tokens),
                    every_mention=True, window_tokens=10 ** 6)
    baseline = [shift(e, s) for r, (s, _) in zip(alone, raw["sentences"]) for e in r.extractions]
    out["one_by_one"] = {**scores(task, document, baseline, sum(r.parse_errors for r in alone)),
                         "seconds": round(time.perf_counter() - start, 1)}
    print(language, "one by one:", out["one_by_one"], flush=True)

    # the old behaviour, for contrast: the whole document in one instruction, shortened by the engine to cutoff_len
    shortened_before = engine.shortened
    whole = extract(text, "NER", schema, engine, language=language, sampling=Sampling(max_tokens=max_tokens),
                    every_mention=True, window_tokens=10 ** 9)
    out["whole_document_shortened"] = {**scores(task, document, whole.extractions, whole.parse_errors),
                                       "shortened": engine.shortened - shortened_before,
                                       "last_sentence": last_sentence(raw, [e.to_json() for e in whole.extractions],
                                                                      alone[-1])}
    print(language, "whole document, shortened to cutoff_len:", out["whole_document_shortened"], flush=True)

    common = ["--task", "NER", "--schema_path", str(folder / "schema.json"), "--language", language,
              "--model_name_or_path", str(tiny_base_path()), "--batch_size", str(batch_size),
              "--max_new_tokens", str(max_tokens), "--no-progress"]

    def args_for(output: Path, *extra: str) -> ExtractArguments:
        from deepke_llm_core.args import parse_settings

        return parse_settings([ExtractArguments], ["--input_file", str(docs), "--output_file", str(output), *common, *extra])[0]

    runs = {"sentence_windows": ("--window_sentences", "1", "--overlap_tokens", "0"),
            "token_windows": ("--window_tokens", str(TOKEN_WINDOWS[language][0]),
                              "--overlap_tokens", str(TOKEN_WINDOWS[language][1]))}
    for name, extra in runs.items():
        output = folder / f"{name}.json"
        start = time.perf_counter()
        stats = extract_file(args_for(output, *extra), engine)
        (line,) = [json.loads(x) for x in output.read_text(encoding="utf-8").splitlines()]
        out[name] = {"flags": " ".join(extra), "windows": stats["windows"], "requests": stats["requests"],
                     **scores(task, document, from_lines(task, line["extractions"]), line["parse_errors"]),
                     "offsets": check_offsets(text, line["extractions"]),
                     "repetition_guarded": stats["repetition_guarded"], "seconds": round(time.perf_counter() - start, 1),
                     "last_sentence": last_sentence(raw, line["extractions"], alone[-1])}
        out[name]["recall_minus_one_by_one"] = round(out[name]["R"] - out["one_by_one"]["R"], 2)
        print(language, name, json.dumps(out[name], ensure_ascii=False), flush=True)

    # kill a real process mid-run, resume, compare with the uninterrupted sentence-window run
    killed = folder / "killed.json"
    command = [sys.executable, "-m", "deepke_llm_core", "extract", "--input_file", str(docs), "--output_file", str(killed),
               *common, *runs["sentence_windows"]]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    side = Path(f"{killed}.windows")
    target = out["sentence_windows"]["requests"] // 3
    while proc.poll() is None and (not side.exists() or sum(1 for _ in open(side, encoding="utf-8")) < target):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = sum(1 for _ in open(side, encoding="utf-8"))
    stats = extract_file(args_for(killed, *runs["sentence_windows"]), engine)
    out["kill_and_resume"] = {"killed_mid_run": proc.returncode == -signal.SIGKILL and kept < stats["requests"],
                              "windows_kept_after_kill": kept, "already_done": stats["already_done"],
                              "requested_on_resume": stats["requested"],
                              "same_output": killed.read_bytes() == (folder / "sentence_windows.json").read_bytes()}
    print(language, "kill and resume:", out["kill_and_resume"], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=30_000)
    parser.add_argument("--languages", nargs="+", default=["zh", "en"])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    args = parser.parse_args()
    from deepke_llm_core.engines import TransformersEngine
    from deepke_llm_core.tiny_base import tiny_base_path

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="deepke-llm-long-"))
    engine = TransformersEngine.load(tiny_base_path(), batch_size=args.batch_size, cutoff_len=512)
    summary = {language: run_language(language, args.chars, workdir, engine, args.batch_size, args.max_new_tokens)
               for language in args.languages}
    (workdir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    print(f"written to {workdir / 'summary.json'}")


if __name__ == "__main__":
    main()
