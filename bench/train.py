"""SFT throughput: ``deepke-llm finetune`` against LLaMA-Factory on equal settings, runs interleaved.

Same tiny Qwen2 model (``tiny.py``), same data (a shuffled mix of NER/RE/EE instructions in zh and en, 1,200
examples of 184-398 tokens), LoRA r 8 (alpha 16, dropout 0.05) on all linear layers, batch 16, 200 steps,
learning rate 1e-4 with a linear schedule, fp32, one thread, no gradient checkpointing, seed 42. Three batchings,
each on both sides, one fresh process per run, the order of the two sides alternating:

* ``padded``          random batches, each padded to its longest example;
* ``length-grouped``  ``train_sampling_strategy="group_by_length"``;
* ``packed``          ours: ``--packing true`` (with sdpa, as here: the batch's 16 examples in one row, position
                      ids restarting per example, ``packing.segment_attention`` computing each example's alone);
                      LLaMA-Factory: ``neat_packing`` (its knapsack rows of ``cutoff_len``, block-diagonal attention),
                      with 4 rows per step (about 16 examples); its samples/s are rows/s times examples per row.

Printed: examples per CPU second of ``Trainer.train`` (both sides train through it; model loading and tokenization
excluded; one thread, so CPU time is the work done, and on a shared machine it is steadier than wall time, which
is printed beside it), the median over ``--repeats`` runs, and ours / LLaMA-Factory per batching. Before training, the script checks that
LLaMA-Factory's ``qwen`` template with an empty ``default_system`` gives our prompt tokens exactly (its labels
keep the ``\\n`` after ``<|im_end|>``: one answer token more than ours).

LLaMA-Factory is not a dependency of this project: the script creates its own virtual environment once
(``<cache>/bench/llamafactory-0.9.5``) with ``llamafactory==0.9.5`` and the torch this project runs on (a
constraint: otherwise torchvision pulls another torch), removes torchvision and torchaudio (their wheels need
CUDA libraries) and gives it a stub ``torchaudio`` module (imported at the top of its multimodal plugin, used
only for audio)::

    python bench/train.py [--steps 200] [--repeats 2] [--jobs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_data.py, when run as a script

from _data import mixed_instruction_file  # noqa: E402

# Runs a module as __main__ with transformers' Trainer.train timed: CPU seconds (this process, all threads) and
# wall seconds, written to a file. Both sides train through Trainer.train; on a shared machine CPU time is the
# steadier measure (a waiting process accrues wall time, not CPU time), so the ratios use it.
TIMED = r"""
import json, runpy, sys, time
import transformers
out, module = sys.argv[1:3]
original = transformers.Trainer.train
def train(self, *args, **kwargs):
    cpu, wall = time.process_time(), time.perf_counter()
    result = original(self, *args, **kwargs)
    with open(out, "w") as handle:
        json.dump({"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}, handle)
    return result
transformers.Trainer.train = train
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__")
"""
LF_VERSION = "0.9.5"
BATCH = 16
LF_PACKED_ROWS = 4  # rows of cutoff_len per step: about 16 examples, as the other runs
TORCHAUDIO_STUB = '''"""Stub installed by deepke-llm's bench/train.py: LLaMA-Factory imports torchaudio at the top of its
multimodal plugin and uses it only for audio inputs, which the benchmark has none of."""


def __getattr__(name):
    raise ImportError("torchaudio is a stub in this benchmark environment")
'''
# Run in LLaMA-Factory's environment: its template's token ids for our records, one JSON pair per line.
LF_ENCODE = r"""
import json, sys
from transformers import AutoTokenizer
from llamafactory.data.template import get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="qwen", default_system=""))
with open(sys.argv[3], "w") as out:
    for line in open(sys.argv[2], encoding="utf-8"):
        r = json.loads(line)
        messages = [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]
        prompt, answer = template.encode_oneturn(tokenizer, messages)
        out.write(json.dumps([prompt, answer]) + "\n")
"""


def llamafactory_python(env: Path) -> str:
    python = env / "bin" / "python"
    if (env / ".ready").exists():
        return str(python)
    import torch

    venv.create(env, with_pip=True, clear=True)
    constraint = env / "constraints.txt"
    constraint.write_text(f"torch=={torch.__version__.split('+')[0]}\n")
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-c", str(constraint), f"llamafactory=={LF_VERSION}"], check=True)
    subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "-y", "torchvision", "torchaudio"], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "torchaudio").mkdir(exist_ok=True)
    (Path(site) / "torchaudio" / "__init__.py").write_text(TORCHAUDIO_STUB)
    (env / ".ready").write_text(LF_VERSION)
    return str(python)


def check_same_tokens(python: str, base: str, train_file: Path, n: int = 60) -> str:
    """Our prompt and answer ids against LLaMA-Factory's for the first ``n`` records."""
    from transformers import AutoTokenizer

    from deepke_llm_core.encoding import tokenize_example

    sample = train_file.with_name("sample.json")
    lines = train_file.read_text(encoding="utf-8").splitlines()[:n]
    sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
    encoded = train_file.with_name("sample_llamafactory.json")
    subprocess.run([python, "-c", LF_ENCODE, base, str(sample), str(encoded)], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    theirs = encoded.read_text().splitlines()
    tokenizer = AutoTokenizer.from_pretrained(base)
    same_prompt = same_answer = 0
    for line, their in zip(lines, theirs):
        row = tokenize_example(json.loads(line), tokenizer, "auto", None, 1024)[0]
        prompt_len = sum(1 for x in row["labels"] if x == -100)
        prompt, answer = json.loads(their)
        same_prompt += prompt == row["input_ids"][:prompt_len]
        same_answer += answer[:-1] == row["input_ids"][prompt_len:] and tokenizer.decode(answer[-1:]) == "\n"
    return f"{same_prompt}/{len(lines)} prompts identical, {same_answer}/{len(lines)} answers identical but for its final \\n"


def run_ours(base: str, train_file: Path, out: Path, steps: int, batching: str) -> dict:
    flags = ["--model_name_or_path", base, "--train_file", str(train_file), "--output_dir", str(out), "--cutoff_len", "1024",
             "--finetuning_type", "lora", "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0.05", "--lora_target", "all",
             "--per_device_train_batch_size", str(BATCH), "--max_steps", str(steps), "--learning_rate", "1e-4",
             "--lr_scheduler_type", "linear", "--logging_steps", "10", "--save_strategy", "no", "--overwrite_output_dir",
             "--seed", "42", "--group_by_length", str(batching == "length-grouped"),
             "--packing", str(batching == "packed").lower()]
    log, timing = out.with_suffix(".log"), out.with_suffix(".time")
    with open(log, "w") as handle:
        done = subprocess.run([sys.executable, "-c", TIMED, str(timing), "deepke_llm_core", "finetune", *flags], stdout=handle,
                              stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        raise RuntimeError(f"ours {batching} failed; see {log}:\n{log.read_text()[-3000:]}")
    final = json.loads((out / "training_history.json").read_text())[-1]
    return _rates(json.loads(timing.read_text()), steps * BATCH, final["train_loss"])


def _rates(timing: dict, examples: float, loss: float) -> dict:
    return {"per_cpu_s": examples / timing["cpu_s"], "per_s": examples / timing["wall_s"], "loss": loss}


def run_llamafactory(python: str, base: str, data_dir: Path, out: Path, steps: int, batching: str, examples: int) -> dict:
    config = {
        "model_name_or_path": base, "stage": "sft", "do_train": True, "finetuning_type": "lora", "lora_rank": 8,
        "lora_alpha": 16, "lora_dropout": 0.05, "lora_target": "all", "dataset": "mixed", "dataset_dir": str(data_dir),
        "template": "qwen", "default_system": "", "cutoff_len": 1024, "overwrite_cache": True, "output_dir": str(out),
        "overwrite_output_dir": True, "per_device_train_batch_size": BATCH, "max_steps": steps, "learning_rate": 1e-4,
        "lr_scheduler_type": "linear", "logging_steps": 10, "save_strategy": "no", "report_to": "none",
        "disable_gradient_checkpointing": True, "use_cpu": True, "seed": 42,
        "train_sampling_strategy": "group_by_length" if batching == "length-grouped" else "random",
    }
    if batching == "packed":
        config.update({"packing": True, "neat_packing": True, "per_device_train_batch_size": LF_PACKED_ROWS})
    path = out.with_suffix(".yaml")  # JSON is YAML; its .json reader fails (json.load on a Path, 0.9.5)
    path.write_text(json.dumps(config))
    log, timing = out.with_suffix(".log"), out.with_suffix(".time")
    with open(log, "w") as handle:
        done = subprocess.run([python, "-c", TIMED, str(timing), "llamafactory.cli", "train", str(path)], stdout=handle,
                              stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "DISABLE_VERSION_CHECK": "1"})
    text = log.read_text(errors="replace")
    if done.returncode:
        raise RuntimeError(f"LLaMA-Factory {batching} failed; see {log}:\n{text[-3000:]}")
    results = json.loads((out / "all_results.json").read_text())
    seen = steps * config["per_device_train_batch_size"]
    if batching == "packed":  # its samples are packed rows
        rows = int(re.findall(r"Num examples = ([\d,]+)", text)[-1].replace(",", ""))
        seen *= examples / rows
    return _rates(json.loads(timing.read_text()), seen, results["train_loss"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each (side, batching); the median is printed")
    parser.add_argument("--batchings", nargs="+", default=["padded", "length-grouped", "packed"],
                        choices=["padded", "length-grouped", "packed"])
    parser.add_argument("--llamafactory_env", default=None, help="its virtual environment (created when missing)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (for a busy shared machine; CPU time is measured)")
    args = parser.parse_args()
    from deepke_llm_core.tiny import cache_root, tiny_model_path

    env = Path(args.llamafactory_env) if args.llamafactory_env else cache_root() / "bench" / f"llamafactory-{LF_VERSION}"
    python = llamafactory_python(env)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = str(tiny_model_path("qwen2"))
        train_file = mixed_instruction_file(root, per_task=200)
        examples = sum(1 for _ in open(train_file, encoding="utf-8"))
        (root / "dataset_info.json").write_text(json.dumps(
            {"mixed": {"file_name": str(train_file), "columns": {"prompt": "instruction", "response": "output"}}}))
        print(f"{examples} examples; LoRA r 8 on all linear layers, batch {BATCH}, {args.steps} steps, fp32, one thread")
        print(f"LLaMA-Factory {LF_VERSION} tokens: {check_same_tokens(python, base, train_file)}", flush=True)
        order = []  # (rep, side, batching), the two sides alternating
        for rep in range(args.repeats):
            for i, batching in enumerate(args.batchings):
                sides = ["ours", "LLaMA-Factory"] if (rep + i) % 2 == 0 else ["LLaMA-Factory", "ours"]
                order += [(rep, side, batching) for side in sides]

        def run(job: tuple[int, str, str]) -> dict:
            rep, side, batching = job
            out = root / f"{side}-{batching}-{rep}"
            if side == "ours":
                return run_ours(base, train_file, out, args.steps, batching)
            return run_llamafactory(python, base, root, out, args.steps, batching, examples)

        runs: dict[tuple[str, str], list[dict]] = {}
        # --jobs > 1 runs several at once (CPU time, the measure, does not count waiting); the default is one by one
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for (rep, side, batching), r in zip(order, pool.map(run, order)):
                runs.setdefault((side, batching), []).append(r)
                print(f"  run {rep + 1}: {side:<13} {batching:<14} {r['per_cpu_s']:6.1f} examples per CPU second, "
                      f"{r['per_s']:6.1f} per second  train loss {r['loss']:.4f}", flush=True)
        print(f"\nexamples per CPU second of Trainer.train (per wall second in brackets), median of {args.repeats}:")
        print(f"{'batching':<15} {'ours':>14} {'LLaMA-Factory':>16} {'ratio':>6}")
        median = {key: {k: statistics.median(r[k] for r in rs) for k in ("per_cpu_s", "per_s")} for key, rs in runs.items()}
        for batching in args.batchings:
            ours, theirs = median[("ours", batching)], median[("LLaMA-Factory", batching)]
            print(f"{batching:<15} {ours['per_cpu_s']:>6.1f} ({ours['per_s']:>5.1f}) {theirs['per_cpu_s']:>8.1f} "
                  f"({theirs['per_s']:>5.1f}) {ours['per_cpu_s'] / theirs['per_cpu_s']:>5.2f}x")
        best = {side: max(median[(side, b)]["per_cpu_s"] for b in args.batchings) for side in ("ours", "LLaMA-Factory")}
        print(f"{'best of each':<15} {best['ours']:>6.1f} {'':7} {best['LLaMA-Factory']:>8.1f} {'':7} "
              f"{best['ours'] / best['LLaMA-Factory']:>5.2f}x   (goal >= 1.3x)")


if __name__ == "__main__":
    main()
