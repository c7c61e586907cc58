"""The "pretrained" tiny IE base: a tiny model taught NER, RE and EE (zh and en) on synthetic data.

Fine-tuning a randomly initialised model teaches format at best; adapters need something to adapt. This module
trains, once, a small Qwen2-architecture model from scratch on synthetic instruction data (``synthetic``: names built
from parts, a fifth of them held out), through the project's own converter, templates and trainer, in phases, and
measures it on sentences whose names never occur in training. The result is committed under
``deepke_llm_core/assets/tiny-ie-base`` (a few MB), so tests, notebooks and the quickstart load it in seconds; this
script is how it was made and how to remake it (``RECIPE.md`` there has the numbers)::

    python -m deepke_llm_core.tiny_base --workdir /tmp/tiny-base --output_dir deepke_llm_core/assets/tiny-ie-base

Deterministic: the corpus, the initial weights and the data order come from one seed (``finetune`` seeds before
it builds anything). Resumable: each phase trains in ``<workdir>/phase-<n>`` and saves a checkpoint every 500
steps; rerun the same command after a kill and a finished phase is skipped, an unfinished one continues from its
last checkpoint. Training is deliberately not part of the test suite; the committed weights are.

The NER type ``product`` is held out of the base on purpose: the quickstart and the learning tests teach it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

__all__ = ["BASE_DIR", "HELD_OUT_TYPE", "MODEL_SHAPE", "PHASES", "Phase", "tiny_base_path", "build_corpus", "short_prompt",
           "evaluate_base", "train_tiny_base", "with_phase_table"]

BASE_DIR = Path(__file__).resolve().parent / "assets" / "tiny-ie-base"
HELD_OUT_TYPE = "product"
LANGUAGES = ("zh", "en")
SPLIT_NUM = {"NER": 6, "RE": 6, "EE": 4}
N_TEST = 60  # held-out records per task and language
MODEL_SHAPE = {"hidden_size": 64, "num_layers": 4, "num_heads": 4, "intermediate_size": 256}


PROMPTS = ("short", "mixed", "full")


@dataclass(frozen=True)
class Phase:
    """One training phase: records per language for each task, steps (batch 16), peak learning rate, prompts.

    ``novel`` adds that share of records (per task and language) whose names are invented (``synthetic`` split
    ``novel``): a name the model cannot remember has to be copied from the input.

    ``prompt`` says which instructions the phase trains on: ``full`` the IEPile instructions users send; ``short``
    the same JSON without its long ``instruction`` text (just ``schema`` and ``input``), and ``mixed`` both forms
    of every record. Why: copying a span out of the input forms within a few thousand steps on short prompts but
    not within 7,000 on the IEPile prompt, whose instruction text puts about a hundred constant tokens between
    the answer and the input; learned on short prompts, it carries over to the full ones (see RECIPE.md).
    """

    records: dict
    steps: int
    learning_rate: float
    warmup_steps: int = 200
    prompt: str = "full"
    schedule: str = "cosine"
    novel: float = 0.0

    def __post_init__(self) -> None:
        if self.prompt not in PROMPTS:
            raise ValueError(f"Phase.prompt must be one of {PROMPTS}, got {self.prompt!r}")
        if not 0 <= self.novel <= 4:
            raise ValueError(f"Phase.novel is a share of extra records (0 to 4), got {self.novel!r}")


ALL_TASKS = {"NER": 8000, "RE": 4000, "EE": 4000}
PHASES = (  # copying forms on short prompts (1, 3, 5, 7) and carries over to the IEPile prompt (2, 4, 6, 8);
    # invented names (7, 8) make remembering useless, and English copying forms
    Phase({"NER": 8000}, 3000, 3e-3, prompt="short", schedule="constant_with_warmup"),
    Phase({"NER": 8000}, 4000, 3e-3, prompt="mixed"),
    Phase(ALL_TASKS, 4000, 3e-3, prompt="short", schedule="constant_with_warmup"),
    Phase(ALL_TASKS, 6000, 2e-3, prompt="mixed"),
    Phase(ALL_TASKS, 4000, 3e-3, prompt="short", schedule="constant_with_warmup"),
    Phase(ALL_TASKS, 6000, 2e-3, prompt="mixed"),
    Phase(ALL_TASKS, 3000, 3e-3, prompt="short", schedule="constant_with_warmup", novel=1.0),
    Phase(ALL_TASKS, 5000, 2e-3, prompt="mixed", novel=1.0),
)


def tiny_base_path() -> Path:
    """The committed base; an error says how to rebuild it if the folder is missing."""
    if not (BASE_DIR / "config.json").is_file():
        raise FileNotFoundError(f"{BASE_DIR} is missing; rebuild it with: python -m deepke_llm_core.tiny_base")
    return BASE_DIR


def build_corpus(workdir: Path, records: dict, n_test: int = N_TEST, seed: int = 0,
                 novel: float = 0.0) -> dict[str, list[Path]]:
    """Synthetic raw records -> instruction files (train: one per task and language; test: held-out names).

    ``novel``: records with invented names added to each training file, as a share of its size (``Phase.novel``).
    """
    from . import synthetic
    from .convert import ConvertConfig, convert_file
    from .io import write_jsonl

    files: dict[str, list[Path]] = {"train": [], "test": []}
    for task, n_train in records.items():
        for language in LANGUAGES:
            exclude = (HELD_OUT_TYPE,) if task == "NER" else ()
            train, test = synthetic.make_split(task, language, n_train, n_test, seed=seed, exclude=exclude)
            if novel:
                train += synthetic.make_records(task, language, round(n_train * novel), split="novel",
                                                seed=random.Random(f"{seed}-novel"), exclude=exclude)
            folder = workdir / f"synthetic-{task}-{language}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "schema.json").write_text(synthetic.schema_text(task, language, exclude=exclude), encoding="utf-8")
            for split, rows in (("train", train), ("test", test)):
                raw = folder / f"raw_{split}.json"
                write_jsonl(raw, rows)
                out = folder / f"{split}.json"
                convert_file(ConvertConfig(src_path=str(raw), tgt_path=str(out), schema_path=str(folder / "schema.json"),
                                           task=task, language=language, split=split, split_num=SPLIT_NUM[task],
                                           random_sort=split == "train", seed=seed, progress=False))
                files[split].append(out)
    return files


def short_prompt(line: str) -> str:
    """A converted training record whose instruction keeps only ``schema`` and ``input`` (``Phase.prompt``)."""
    record = json.loads(line)
    instruction = json.loads(record["instruction"])
    record["instruction"] = json.dumps({"schema": instruction["schema"], "input": instruction["input"]},
                                       ensure_ascii=False)
    return json.dumps(record, ensure_ascii=False)


def _shuffled_union(paths: list[Path], target: Path, seed: int, prompt: str = "full") -> Path:
    lines = [line for p in paths for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if prompt != "full":
        short = [short_prompt(line) for line in lines]
        lines = short if prompt == "short" else lines + short
    random.Random(seed).shuffle(lines)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def _answer_has_schema_keys(record: dict) -> bool:
    """The answer is a JSON object whose keys are exactly the schema items the instruction asked for."""
    from .evaluate import parse_json_output

    parsed = parse_json_output(record.get("output"))
    if parsed is None:
        return False
    asked = json.loads(record["instruction"])["schema"]
    names = [item["event_type"] if isinstance(item, dict) else item for item in asked]
    return sorted(parsed) == sorted(names)


def evaluate_base(model_dir: str | Path, test_files: list[Path], workdir: Path) -> dict:
    """Greedy predictions on each held-out file: F1 per file and the share of well-formed answers."""
    from .evaluate import evaluate_records
    from .io import iter_jsonl
    from .predict import InferArguments, run_inference

    scores: dict = {}
    good = total = 0
    workdir.mkdir(parents=True, exist_ok=True)
    for path in test_files:
        name = path.stem if path.parent.name == "held_out" else path.parent.name.removeprefix("synthetic-")
        out = workdir / f"pred-{name}.json"
        run_inference(InferArguments(model_name_or_path=str(model_dir), input_file=str(path), output_file=str(out),
                                     max_new_tokens=200, batch_size=16))
        records = [record for _, record in iter_jsonl(out)]
        result = evaluate_records(records, name.split("-")[0])["total"]
        f1 = result["F1"] if "F1" in result else result["argument_F1"]
        scores[name] = {"F1": f1, "parse_errors": result["错误数"], **(
            {"trigger_F1": result["event_F1"]} if "event_F1" in result else {})}
        good += sum(_answer_has_schema_keys(r) for r in records)
        total += len(records)
    scores["well_formed"] = round(100 * good / max(total, 1), 2)
    return scores


def _initial_model(workdir: Path, seed: int, shape: dict) -> Path:
    from .tiny import build_tiny_model

    target = workdir / "init"
    if not (target / "config.json").is_file():
        build_tiny_model(target, seed=seed, **shape)
    return target


def train_tiny_base(output_dir: str, workdir: str, phases: tuple[Phase, ...] = PHASES, seed: int = 0,
                    shape: dict | None = None, n_test: int = N_TEST) -> list[dict]:
    """Run every phase not yet finished in ``workdir``, then copy the last model and its held-out files out.

    Returns one summary per phase (steps, learning rate, wall time, held-out scores), also written to
    ``<output_dir>/recipe.json``, from which ``RECIPE.md``'s table is made.
    """
    from .train import DataArguments, FinetuningArguments, ModelArguments, TrainingArguments, finetune

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    model = _initial_model(work, seed, shape or MODEL_SHAPE)
    summaries: list[dict] = []
    test_files: list[Path] = []
    for number, phase in enumerate(phases, start=1):
        folder = work / f"phase-{number}"
        done = folder / "phase.json"
        files = build_corpus(work / f"data-{number}", phase.records, n_test, seed, phase.novel)
        test_files = files["test"]
        if not done.is_file():
            train_file = _shuffled_union(files["train"], work / f"data-{number}" / f"train-{phase.prompt}.json",
                                         seed + number, phase.prompt)
            started = time.perf_counter()
            metrics = finetune(
                ModelArguments(model_name_or_path=str(model), model_name="qwen2", template="auto"),
                DataArguments(train_file=str(train_file), cutoff_len=1024, max_source_length=1024),
                FinetuningArguments(finetuning_type="full"),
                TrainingArguments(output_dir=str(folder), max_steps=phase.steps, per_device_train_batch_size=16,
                                  learning_rate=phase.learning_rate, lr_scheduler_type=phase.schedule,
                                  warmup_steps=phase.warmup_steps, weight_decay=0.0, logging_steps=100,
                                  save_strategy="steps", save_steps=500, save_total_limit=2, seed=seed + number))
            summary = {"phase": number, **asdict(phase), "seed": seed + number,
                       "wall_minutes_this_run": round((time.perf_counter() - started) / 60, 1),
                       "train_runtime_minutes": round(metrics["train_runtime"] / 60, 1),
                       "train_loss": round(metrics["train_loss"], 4),
                       "held_out": evaluate_base(folder, test_files, work / f"eval-{number}")}
            done.write_text(json.dumps(summary, indent=2), encoding="utf-8")
            print(json.dumps(summary), flush=True)
        summaries.append(json.loads(done.read_text(encoding="utf-8")))
        model = folder
    _publish(model, Path(output_dir), test_files, summaries)
    return summaries


def _publish(model: Path, out: Path, test_files: list[Path], summaries: list[dict]) -> None:
    """The final model with its held-out files, scores and recipe; RECIPE.md's prose is kept, its table redone."""
    recipe_md = out / "RECIPE.md"
    prose = recipe_md.read_text(encoding="utf-8") if recipe_md.is_file() else ""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(model, out, ignore=shutil.ignore_patterns("checkpoint-*", "training_args.bin", "phase.json"))
    held_out = out / "held_out"
    held_out.mkdir()
    for path in test_files:
        shutil.copy(path, held_out / f"{path.parent.name.removeprefix('synthetic-')}.json")
    final = summaries[-1]["held_out"]
    (out / "held_out_f1.json").write_text(json.dumps({k: v["F1"] for k, v in final.items() if isinstance(v, dict)},
                                                     indent=2) + "\n", encoding="utf-8")
    (out / "recipe.json").write_text(json.dumps(summaries, indent=2) + "\n", encoding="utf-8")
    if prose:
        recipe_md.write_text(with_phase_table(prose, summaries), encoding="utf-8")


_TABLE_START, _TABLE_END = "<!-- phases: made by tiny_base.py from recipe.json -->", "<!-- /phases -->"


def with_phase_table(text: str, summaries: list[dict]) -> str:
    """``text`` with the measured phase table (between the two markers) redone from ``summaries``."""
    names = [k for k, v in summaries[-1]["held_out"].items() if isinstance(v, dict)]
    rows = ["| phase | data (records per language) | steps (batch 16) | peak lr | train time (min) | "
            + " | ".join(f"{n} F1" for n in names) + " | well-formed % |",
            "|---" * (6 + len(names)) + "|"]
    for s in summaries:
        data = ", ".join(f"{task} {n}" for task, n in s["records"].items()) + f" ({s.get('prompt', 'full')} prompts)"
        if s.get("novel"):
            data += f", + {s['novel']:g}x as many with invented names"
        scores = " | ".join(str(s["held_out"][n]["F1"]) if n in s["held_out"] else "-" for n in names)
        rows.append(f"| {s['phase']} | {data} | {s['steps']} | {s['learning_rate']} | {s['train_runtime_minutes']} | "
                    f"{scores} | {s['held_out']['well_formed']} |")
    if _TABLE_START not in text or _TABLE_END not in text:
        return text
    head, rest = text.split(_TABLE_START, 1)
    return head + _TABLE_START + "\n" + "\n".join(rows) + "\n" + _TABLE_END + rest.split(_TABLE_END, 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=str(BASE_DIR))
    parser.add_argument("--workdir", required=True, help="corpus, checkpoints and phase results; rerun to resume")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", default=None, help="comma list overriding each phase's steps (for pilots)")
    parser.add_argument("--phases", default=None, help='JSON list of phases instead of PHASES (pilots), e.g. '
                        '\'[{"records": {"NER": 8000}, "steps": 6000, "learning_rate": 3e-3}]\'')
    args = parser.parse_args()
    phases = tuple(Phase(**p) for p in json.loads(args.phases)) if args.phases else PHASES
    if args.steps:
        steps = [int(s) for s in args.steps.split(",")]
        phases = tuple(replace(p, steps=s, warmup_steps=min(p.warmup_steps, s // 10)) for p, s in zip(phases, steps))
    for summary in train_tiny_base(args.output_dir, args.workdir, phases, seed=args.seed):
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
