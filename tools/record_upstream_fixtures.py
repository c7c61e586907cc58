"""Re-record ``tests/fixtures/upstream``: upstream DeepKE's outputs on the inputs committed beside them.

Why recorded and not re-run in the tests: the tests must pass in a clone with nothing beside it, and upstream's
code is neither ours to ship nor installable as a package. So its outputs are recorded once, by running its own
scripts on inputs we wrote, and the tests compare our converter, evaluator and ICL prompts with those files.

What is run (nothing of upstream is imported into this process; each run is a subprocess of ``--python``):

* ``example/llm/InstructKGC/ie2instruction/convert_func.py`` (branch ``main``) on every
  ``convert/inputs/<TASK>/<lang>.json`` with its ``schema_<lang>.json``, in four variants (see ``VARIANTS``);
* ``example/llm/InstructKGC/ie2instruction/eval_func.py`` (branch ``main``) on every ``evaluate/inputs/*.json``,
  with ``--match_mode normal`` and ``set``; a crash is recorded as ``{"error": <last line of stderr>}``;
* ``PromptCraft.build_prompt`` from ``example/llm/src/utils/prompt.py`` (branch ``deepke-llm``), with the
  demonstrations of ``icl/demos`` loaded by ``datamodule/preprocess_icl.prepare_examples``, for every case of
  ``icl/cases.json``; what ``print(prompt)`` writes is recorded.

Usage (``--python`` needs numpy, jieba and rouge-chinese, which upstream's evaluator imports)::

    python tools/record_upstream_fixtures.py --upstream /tmp/DeepKE-main --upstream-llm /tmp/DeepKE-deepke-llm \\
        --python /tmp/upstream-venv/bin/python --upstream-commit <sha> --upstream-llm-commit <sha>

Every upstream run gets ``PYTHONHASHSEED=0`` (upstream iterates sets of strings, so without it the schema order
of test files and EE/EEA role orders change between runs) and ``PYTHONUTF8=1`` (it opens files in the locale's
encoding).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = ROOT / "tests" / "fixtures" / "upstream"
TASKS = ("NER", "RE", "SPO", "EE", "EET", "EEA", "KG")
LANGUAGES = ("zh", "en")
SPLIT_NUM = {"NER": 6, "RE": 4, "SPO": 4, "EE": 4, "EET": 4, "EEA": 4, "KG": 1}  # upstream's recommended values
# variant name -> (split, extra flags); split_num None means the task's recommended value
VARIANTS = {
    "train": ("train", None, []),
    "test": ("test", None, []),
    "train.neg0": ("train", None, ["--neg_schema", "0"]),
    "train.split-1": ("train", -1, []),
}
MATCH_MODES = ("normal", "set")

# Runs inside upstream's deepke-llm ``src`` folder: build one prompt and print it as upstream's scripts print.
_ICL_CHILD = """
import json, sys
sys.path.insert(0, ".")
from utils.prompt import PromptCraft
from datamodule.preprocess_icl import prepare_examples
case, demo_dir = json.loads(sys.argv[1]), sys.argv[2]
examples = prepare_examples(case["task"], case["language"], demo_dir) if case["in_context"] else None
crafter = PromptCraft(task=case["task"], language=case["language"], in_context=case["in_context"],
                      instruction=case["instruction"], example=examples)
print(crafter.build_prompt(prompt=case["text"], domain=case["domain"], labels=case["labels"],
                           head_entity=case.get("head_entity"), head_type=case.get("head_type"),
                           tail_entity=case.get("tail_entity"), tail_type=case.get("tail_type")))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONUTF8="1", PYTHONIOENCODING="utf-8")
    env.pop("PYTHONPATH", None)
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, encoding="utf-8")


def record_convert(python: str, instructkgc: Path, fixtures: Path) -> int:
    """Upstream's converter on every input, in every variant; returns the number of files written."""
    script = instructkgc / "ie2instruction" / "convert_func.py"
    written = 0
    for task in TASKS:
        for language in LANGUAGES:
            src = fixtures / "convert" / "inputs" / task / f"{language}.json"
            schema = fixtures / "convert" / "inputs" / task / f"schema_{language}.json"
            for variant, (split, split_num, extra) in VARIANTS.items():
                out = fixtures / "convert" / "outputs" / task / f"{language}.{variant}.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                # upstream takes the source name from the input's parent folder: src must be a path with a folder
                cmd = [python, str(script), "--src_path", str(src), "--tgt_path", str(out), "--schema_path", str(schema),
                       "--language", language, "--task", task, "--split", split,
                       "--split_num", str(SPLIT_NUM[task] if split_num is None else split_num), *extra]
                done = _run(cmd, instructkgc)
                if done.returncode != 0:
                    raise SystemExit(f"upstream convert failed for {task} {language} {variant}:\n{done.stderr}")
                written += 1
    return written


def record_evaluate(python: str, instructkgc: Path, fixtures: Path) -> int:
    """Upstream's evaluator on every prediction file in both match modes (crashes recorded, not raised)."""
    script = instructkgc / "ie2instruction" / "eval_func.py"
    written = 0
    for path in sorted((fixtures / "evaluate" / "inputs").glob("*.json")):
        task = path.name.split(".")[0]
        for mode in MATCH_MODES:
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / path.name
                shutil.copyfile(path, copy)
                cmd = [python, str(script), "--path1", str(copy), "--task", task, "--match_mode", mode,
                       "--metrics_list", "f1", "--sort_by", "source"]
                done = _run(cmd, instructkgc)
                result_file = Path(tmp) / "output_msg" / path.name
                if done.returncode == 0:
                    result = json.loads(result_file.read_text(encoding="utf-8"))
                else:
                    lines = [line for line in done.stderr.splitlines() if line.strip()]
                    result = {"error": lines[-1] if lines else f"exit status {done.returncode}"}
            out = fixtures / "evaluate" / "outputs" / f"{path.stem}.{mode}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
            written += 1
    return written


def record_icl(python: str, llm_src: Path, fixtures: Path) -> int:
    """Upstream's PromptCraft prompt for every case, as ``print(prompt)`` writes it."""
    cases = json.loads((fixtures / "icl" / "cases.json").read_text(encoding="utf-8"))
    demo_dir = str((fixtures / "icl" / "demos").resolve())
    printed = {}
    for case in cases:
        done = _run([python, "-c", _ICL_CHILD, json.dumps(case, ensure_ascii=False), demo_dir], llm_src)
        if done.returncode != 0:
            raise SystemExit(f"upstream PromptCraft failed for {case['id']}:\n{done.stderr}")
        printed[case["id"]] = done.stdout
    out = fixtures / "icl" / "outputs.json"
    out.write_text(json.dumps(printed, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return len(printed)


def _commit(checkout: Path, given: str | None) -> str:
    if given:
        return given
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, type=Path, help="a checkout of DeepKE's main branch")
    p.add_argument("--upstream-llm", required=True, type=Path, help="a checkout of DeepKE's deepke-llm branch")
    p.add_argument("--python", default=sys.executable, help="interpreter for upstream's scripts (numpy, jieba, rouge-chinese)")
    p.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    p.add_argument("--upstream-commit", default=None, help="recorded in recorded.json (default: git rev-parse HEAD)")
    p.add_argument("--upstream-llm-commit", default=None)
    args = p.parse_args(argv)
    instructkgc = args.upstream / "example" / "llm" / "InstructKGC"
    llm_src = args.upstream_llm / "example" / "llm" / "src"
    for folder in (instructkgc / "ie2instruction", llm_src / "utils"):
        if not folder.is_dir():
            p.error(f"{folder} is missing: is that the right checkout?")
    fixtures = args.fixtures.resolve()
    counts = {"convert": record_convert(args.python, instructkgc, fixtures),
              "evaluate": record_evaluate(args.python, instructkgc, fixtures),
              "icl": record_icl(args.python, llm_src, fixtures)}
    version = _run([args.python, "-c", "import sys, numpy; print(sys.version.split()[0], numpy.__version__)"], ROOT)
    python_version, numpy_version = version.stdout.split()
    manifest = {"main": _commit(args.upstream, args.upstream_commit),
                "deepke-llm": _commit(args.upstream_llm, args.upstream_llm_commit),
                "python": python_version, "numpy": numpy_version, "PYTHONHASHSEED": "0", "files": counts}
    (fixtures / "recorded.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    print(f"recorded {counts} into {fixtures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
