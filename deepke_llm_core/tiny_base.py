"""The "pretrained" tiny IE base: a tiny model taught NER, RE and EE (zh and en) on synthetic data.

Fine-tuning a randomly initialised model teaches format at best; adapters need something to adapt. This
module trains, once, a hidden-64 Qwen2-architecture model from scratch on synthetic instruction data built
from a closed entity vocabulary (a model this small cannot learn to copy names it never saw, TINY_MODELS.md),
through the project's own converter, templates and trainer. The result is committed under
``deepke_llm_core/assets/tiny-ie-base`` (about 1.5 MB), so tests, notebooks and the quickstart load it in
seconds; this script is how it was made and how to remake it::

    python -m deepke_llm_core.tiny_base --output_dir deepke_llm_core/assets/tiny-ie-base

The NER type ``product`` is held out of the base on purpose: the quickstart teaches it with LoRA.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

__all__ = ["BASE_DIR", "HELD_OUT_TYPE", "tiny_base_path", "build_corpus", "train_tiny_base"]

BASE_DIR = Path(__file__).resolve().parent / "assets" / "tiny-ie-base"
HELD_OUT_TYPE = "product"
TASKS = (("NER", 6), ("RE", 4), ("EE", 4))
LANGUAGES = ("zh", "en")


def tiny_base_path() -> Path:
    """The committed base; an error says how to rebuild it if the folder is missing."""
    if not (BASE_DIR / "config.json").is_file():
        raise FileNotFoundError(f"{BASE_DIR} is missing; rebuild it with: python -m deepke_llm_core.tiny_base")
    return BASE_DIR


def build_corpus(workdir: Path, n_train: int, n_test: int, seed: int = 0, tasks: tuple = TASKS) -> dict[str, list[Path]]:
    """Synthetic raw records -> instruction files (train: mixed tasks; test: one file per task and language)."""
    from . import synthetic
    from .convert import ConvertConfig, convert_file
    from .io import write_jsonl

    files: dict[str, list[Path]] = {"train": [], "test": []}
    for task, split_num in tasks:
        for language in LANGUAGES:
            exclude = (HELD_OUT_TYPE,) if task == "NER" else ()
            train, test = synthetic.make_split(task, language, n_train, n_test, seed=seed, exclude=exclude)
            folder = workdir / f"synthetic-{task}-{language}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "schema.json").write_text(synthetic.schema_text(task, language, exclude=exclude), encoding="utf-8")
            for split, records in (("train", train), ("test", test)):
                raw = folder / f"raw_{split}.json"
                write_jsonl(raw, records)
                out = folder / f"{split}.json"
                convert_file(ConvertConfig(src_path=str(raw), tgt_path=str(out), schema_path=str(folder / "schema.json"),
                                           task=task, language=language, split=split, split_num=split_num,
                                           random_sort=split == "train", seed=seed, progress=False))
                files[split].append(out)
    return files


def _shuffled_union(paths: list[Path], target: Path, seed: int) -> Path:
    import random

    lines = [line for p in paths for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(lines)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def train_tiny_base(output_dir: str, max_steps: int = 8000, n_train: int = 3000, n_test: int = 40, seed: int = 0,
                    workdir: str | None = None, init: str | None = None, tasks: tuple = TASKS,
                    learning_rate: float = 3e-3) -> dict:
    """Train the tiny model (random init, or ``init``) on the synthetic corpus; save it with its test files.

    The committed base was made in two phases (see ``assets/tiny-ie-base/RECIPE.md``): all tasks from random
    init, then NER only from that model, because copying spans from the input emerges late and NER is what
    the quickstart and the learning tests use.
    """
    from .tiny import tiny_model_path
    from .train import DataArguments, FinetuningArguments, ModelArguments, TrainingArguments, finetune

    work = Path(workdir or tempfile.mkdtemp(prefix="tiny-base-"))
    files = build_corpus(work, n_train, n_test, seed, tasks)
    train_file = _shuffled_union(files["train"], work / "train.json", seed)
    start = init or str(tiny_model_path("qwen2"))
    metrics = finetune(
        ModelArguments(model_name_or_path=start, model_name="qwen2", template="auto"),
        DataArguments(train_file=str(train_file), cutoff_len=1024, max_source_length=1024),
        FinetuningArguments(finetuning_type="full"),
        TrainingArguments(output_dir=str(work / "run"), max_steps=max_steps, per_device_train_batch_size=16,
                          learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_steps=200, weight_decay=0.0,
                          logging_steps=100, save_strategy="steps", save_steps=500, save_total_limit=2, seed=seed),
    )
    out = Path(output_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(work / "run", out, ignore=shutil.ignore_patterns("checkpoint-*", "training_args.bin"))
    held_out = out / "held_out"
    held_out.mkdir()
    for path in files["test"]:
        shutil.copy(path, held_out / f"{path.parent.name.removeprefix('synthetic-')}.json")
    (out / "train_metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=str(BASE_DIR))
    parser.add_argument("--max_steps", type=int, default=8000)
    parser.add_argument("--n_train", type=int, default=3000)
    parser.add_argument("--workdir", default=None, help="keeps the corpus and checkpoints (resumes there)")
    parser.add_argument("--init", default=None, help="continue from this model instead of a random init")
    parser.add_argument("--tasks", default="NER,RE,EE", help="comma list of NER, RE, EE")
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    args = parser.parse_args()
    tasks = tuple(t for t in TASKS if t[0] in args.tasks.split(","))
    print(json.dumps(train_tiny_base(args.output_dir, args.max_steps, args.n_train, workdir=args.workdir, init=args.init,
                                     tasks=tasks, learning_rate=args.learning_rate), indent=2))


if __name__ == "__main__":
    main()
