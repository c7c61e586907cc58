"""``deepke-llm evaluate`` against upstream DeepKE's ``eval_func.py`` on the same prediction files.

Builds NER and RE prediction files from inputs written here: random texts with unique content (so no two texts
share an ``id``), converted with the project's converter (``--split test``; NER: 24 entity types, split_num 6,
4 instructions per text; RE: 49 relations, split_num 4, 13 per text, ``head``/``tail`` keys as upstream's
scorer reads), each instruction given an output derived from its gold answer and then perturbed (items dropped,
added, duplicated, case-changed; about 3% broken JSON). Then, each in a fresh process whose peak RSS is its
own (``os.wait4``), at every size:

* ``upstream``       ``python eval_func.py --path1 F --task T`` in upstream's ``ie2instruction`` folder;
* ``ours``           ``deepke-llm evaluate --path1 F --task T``;
* ``ours shuffled``  the same lines in random order (no text's records adjacent: the two-pass worst case);
* ``upstream shuffled`` (with ``--shuffled_upstream``) upstream on the shuffled file, for its numbers.

Prints CPU seconds (the ratio's measure: on a shared machine a waiting process accrues wall time, not CPU time),
wall seconds, peak RSS, ours/upstream (goal <= 0.5 at 1M lines) and whether the scores are the same: 总样本数, 错误数, P and R equal, F1 within 0.01 (upstream computes F1 from the rounded P and R).

Upstream is not part of this repository and this script does not download it. Get a checkout once::

    git clone https://github.com/zjunlp/DeepKE /path/to/DeepKE   # tested at 4b27718 (2025-07-19)
    python bench/evaluate.py --upstream /path/to/DeepKE --lines 100000 1000000

Upstream's evaluator imports ``jieba`` and ``rouge_chinese`` (used only for ROUGE, not for F1); the script
creates a virtual environment for it with those two from PyPI (``--upstream_python`` to use another).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/convert.py's character set, when run as a script

from convert import CHARS, RELATIONS  # noqa: E402

ENTITY_TYPES = [f"类型{i:02d}" for i in range(24)]
TASKS = {"NER": {"split_num": 6, "per_text": 4}, "RE": {"split_num": 4, "per_text": 13}}


def raw_records(task: str, n: int, seed: int):
    """Unique texts (a serial number opens each) with 1-4 annotations whose strings occur in the text."""
    rng = random.Random(seed)
    for i in range(n):
        text = f"{i}号" + "".join(rng.choice(CHARS) for _ in range(rng.randint(60, 160)))
        spans = [text[j:j + rng.randint(2, 4)] for j in sorted(rng.sample(range(len(text) - 4), rng.randint(2, 5)))]
        if task == "NER":
            yield {"text": text, "entity": [{"entity": s, "entity_type": rng.choice(ENTITY_TYPES)} for s in spans[:4]]}
        else:
            yield {"text": text, "relation": [{"head": spans[k], "relation": rng.choice(RELATIONS), "tail": spans[k + 1]}
                                              for k in range(min(3, len(spans) - 1))]}


def perturbed_output(task: str, schema: list[str], label: list[dict], rng: random.Random) -> str:
    """The gold answer of one instruction, then one perturbation in five; 3% truncated (a parse error)."""
    if task == "NER":
        answer: dict = {t: [e["entity"] for e in label if e["entity_type"] == t] for t in schema}
    else:
        answer = {r: [{"head": e["head"], "tail": e["tail"]} for e in label if e["relation"] == r] for r in schema}
    filled = [k for k, v in answer.items() if v]
    roll = rng.random()
    if roll < 0.05 and filled:
        answer[rng.choice(filled)].pop()
    elif roll < 0.10:
        key = rng.choice(schema)
        answer[key].append("".join(rng.choice(CHARS) for _ in range(3)) if task == "NER" else {"head": "甲", "tail": "乙"})
    elif roll < 0.14 and filled:
        values = answer[rng.choice(filled)]
        values.append(values[0])  # a duplicate: counts differ between normal and set mode
    elif roll < 0.18 and filled:
        values = answer[rng.choice(filled)]
        values[0] = values[0].swapcase() + "x" if task == "NER" else {**values[0], "tail": values[0]["tail"] + "x"}
    text = json.dumps(answer, ensure_ascii=False)
    return text[: len(text) // 2] if rng.random() < 0.03 else text


def build_file(task: str, lines: int, root: Path, seed: int = 0) -> Path:
    """A prediction file of about ``lines`` lines: converted test records, each with an ``output``."""
    from deepke_llm_core.convert import ConvertConfig, convert_file

    folder = root / task
    folder.mkdir(parents=True, exist_ok=True)
    raw, schema = folder / "raw.json", folder / "schema.json"
    texts = lines // TASKS[task]["per_text"]
    with open(raw, "w", encoding="utf-8") as out:
        for record in raw_records(task, texts, seed):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    items = ENTITY_TYPES if task == "NER" else RELATIONS
    lines_of_schema = [items, [], {}] if task == "NER" else [[], items, {}]
    schema.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines_of_schema), encoding="utf-8")
    converted = folder / "test.json"
    convert_file(ConvertConfig(src_path=str(raw), tgt_path=str(converted), schema_path=str(schema), task=task,
                               split="test", split_num=TASKS[task]["split_num"], relation_keys="head_tail", progress=False))
    rng = random.Random(seed + 1)
    target = root / f"{task}_{lines}.json"
    with open(converted, encoding="utf-8") as inp, open(target, "w", encoding="utf-8") as out:
        for line in inp:
            record = json.loads(line)
            schema_items = json.loads(record["instruction"])["schema"]
            record["output"] = perturbed_output(task, schema_items, json.loads(record["label"]), rng)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    raw.unlink()
    converted.unlink()
    return target


def shuffled_copy(path: Path) -> Path:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    random.Random(3).shuffle(lines)
    target = path.with_name(path.stem + "_shuffled.json")
    target.write_text("".join(lines), encoding="utf-8")
    return target


# Runs a script or module as __main__ and, at exit, writes the process's own peak RSS (VmHWM: this address
# space's high-water mark, which starts afresh at exec; ru_maxrss would carry the parent's size into a child).
PEAK_WRAPPER = """
import atexit, runpy, sys
out, kind, target = sys.argv[1:4]
def peak():
    with open("/proc/self/status") as status, open(out, "w") as handle:
        handle.write(next(line.split()[1] for line in status if line.startswith("VmHWM")))
atexit.register(peak)
sys.argv = [target, *sys.argv[4:]]
runpy.run_module(target, run_name="__main__") if kind == "module" else runpy.run_path(target, run_name="__main__")
"""


def measure(python: str, kind: str, target: str, args: list[str], cwd: str | None = None) -> dict:
    """Wall seconds, CPU seconds (user + system: on a shared machine the steadier measure, as a waiting process
    accrues no CPU time) and peak RSS (MB) of one fresh process running ``target``, its output discarded
    (upstream prints every parse error)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        err = open(Path(tmp) / "err", "w+")
        start = time.perf_counter()
        child = subprocess.Popen([python, "-c", PEAK_WRAPPER, str(peak), kind, target, *args], cwd=cwd,
                                 stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"})
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = status
        seconds = time.perf_counter() - start
        if status != 0:
            err.seek(0)
            raise RuntimeError(f"{target} {' '.join(args)} failed:\n{err.read()[-2000:]}")
        err.close()
        return {"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": int(peak.read_text()) / 1024}


def upstream_python(path: str | None) -> str:
    """A Python with upstream's two import-time dependencies; created once beside the tiny-model cache."""
    if path:
        return path
    from deepke_llm_core.tiny import cache_root

    env = cache_root() / "bench" / "upstream-eval-venv"
    python = env / "bin" / "python"
    if not python.exists():
        venv.create(env, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "jieba", "rouge-chinese"], check=True)
    return str(python)


def same_scores(ours: dict, theirs: dict) -> tuple[bool, str]:
    """P, R and the counts equal; F1 within 0.01 (upstream rounds P and R before computing F1)."""
    diffs = []
    for group in theirs:
        for key, value in theirs[group].items():
            mine = ours.get(group, {}).get(key)
            limit = 0.0100001 if key.endswith("F1") else 0
            if mine is None or abs(mine - value) > limit:
                diffs.append(f"{group}.{key}: ours {mine} upstream {value}")
    return not diffs, "; ".join(diffs[:4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="a checkout of github.com/zjunlp/DeepKE (or its ie2instruction folder)")
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--tasks", nargs="+", default=["NER", "RE"], choices=sorted(TASKS))
    parser.add_argument("--upstream_python", default=None, help="a Python with jieba and rouge_chinese installed")
    parser.add_argument("--shuffled_upstream", action="store_true", help="also run upstream on the shuffled files")
    parser.add_argument("--workdir", default=None, help="where the files go (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, interleaved; the median is printed")
    args = parser.parse_args()
    folder = Path(args.upstream)
    if not (folder / "eval_func.py").is_file():
        folder = folder / "example" / "llm" / "InstructKGC" / "ie2instruction"
    if not (folder / "eval_func.py").is_file():
        sys.exit(f"{args.upstream}: no eval_func.py here nor in example/llm/InstructKGC/ie2instruction")
    python = upstream_python(args.upstream_python)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        print(f"{'task':<4} {'lines':>8} {'run':<18} {'CPU s':>7} {'wall s':>7} {'peak MB':>8} {'x upstream':>10}  "
              f"same scores   (median of {args.repeats}, runs interleaved; the ratio is of CPU seconds)")
        for task in args.tasks:
            for lines in args.lines:
                path = build_file(task, lines, root)
                shuffled = shuffled_copy(path)
                n = sum(1 for _ in open(path, encoding="utf-8"))
                names = ["upstream", "ours", "ours shuffled"] + (["upstream shuffled"] if args.shuffled_upstream else [])
                results: dict[str, list[dict]] = {name: [] for name in names}
                scores: dict[str, dict] = {}
                for rep in range(args.repeats):
                    for name in (names if rep % 2 == 0 else names[::-1]):
                        file = shuffled if name.endswith("shuffled") else path
                        if name.startswith("upstream"):
                            result = measure(python, "path", "eval_func.py", ["--path1", str(file), "--task", task],
                                             cwd=str(folder))
                            scores[name] = json.loads((file.parent / "output_msg" / file.name).read_text(encoding="utf-8"))
                        else:
                            out = root / f"{name.replace(' ', '_')}.json"
                            result = measure(sys.executable, "module", "deepke_llm_core",
                                             ["evaluate", "--path1", str(file), "--task", task, "--out_path", str(out)])
                            scores[name] = json.loads(out.read_text(encoding="utf-8"))
                        results[name].append(result)
                median = {name: {k: statistics.median(r[k] for r in runs) for k in ("seconds", "cpu_s", "peak_mb")}
                          for name, runs in results.items()}
                base = median["upstream"]["cpu_s"]
                for name in names:
                    verdict = ""
                    if name != "upstream":
                        ok, why = same_scores(scores[name], scores["upstream"])
                        verdict = "yes" if ok else f"NO: {why}"
                    m = median[name]
                    print(f"{task:<4} {n:>8} {name:<18} {m['cpu_s']:>7.2f} {m['seconds']:>7.2f} {m['peak_mb']:>8.1f} "
                          f"{m['cpu_s'] / base:>10.2f}  {verdict}", flush=True)
                print(f"     upstream's total: {json.dumps(scores['upstream']['total'], ensure_ascii=False)}", flush=True)
                for file in (path, shuffled):
                    file.unlink()


if __name__ == "__main__":
    main()
