"""``deepke-llm <stage>``: a thin entry point over the library.

Each stage is a few settings dataclasses and one library call. Every stage reads its settings the same way
(``args.parse_settings``): the draft README's flags (``--src_path``, ``--path1`` and friends keep working), or one
YAML/JSON file followed by flags that override it. Heavy libraries are imported inside the stage that needs them,
so ``deepke-llm convert`` never loads torch. Bad input exits with status 2 and one located line, no traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .io import DataError
from .serve import ServeArguments

__all__ = ["main", "STAGES", "MergeArguments", "ServeArguments", "QuickstartArguments"]


@dataclass
class MergeArguments:
    output_file: str = field(metadata={"help": "the --output_file the shards were run with"})
    num_shards: int = field(metadata={"help": "how many shards the input was split into"})
    input_file: str | None = field(default=None, metadata={"help": "check that every input record is there"})


@dataclass
class QuickstartArguments:
    workdir: str | None = field(default=None, metadata={"help": "where outputs go; default: a fresh temporary folder"})
    model: str | None = field(default=None, metadata={"help": "hf id or path of a real model; default: the committed tiny IE base"})
    data_dir: str | None = field(default=None, metadata={"help": "the repository's data/ folder (with --model)"})
    steps: int | None = field(default=None, metadata={"help": "LoRA training steps"})


def _convert(config) -> int:
    from .convert import convert_file

    print(convert_file(config).summary(), file=sys.stderr)
    return 0


def _evaluate(config) -> int:
    from .evaluate import evaluate_file

    result, out_path = evaluate_file(config)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    print(f"metrics written to {out_path}", file=sys.stderr)
    return 0


def _finetune(*settings) -> int:
    from .train import run_finetune

    run_finetune(*settings)
    return 0


def _infer(args) -> int:
    from .predict import run_inference

    print(json.dumps(run_inference(args), ensure_ascii=False, indent=2))
    return 0


def _merge(args: MergeArguments) -> int:
    from .io import iter_jsonl
    from .predict.shards import merge_shards

    expected = sum(1 for _ in iter_jsonl(args.input_file)) if args.input_file else None
    print(f"merged {merge_shards(args.output_file, args.num_shards, expected)} records into {args.output_file}", file=sys.stderr)
    return 0


def _export(args) -> int:
    from .export import export_model

    print(f"merged model written to {export_model(args)}", file=sys.stderr)
    return 0


def _icl(args) -> int:
    from .icl.run import run_icl_command

    return run_icl_command(args)


def _extract(args) -> int:
    from .extract import run_extract_command

    return run_extract_command(args)


def _serve(args: ServeArguments) -> int:
    from .serve import serve

    return serve(args)


def _quickstart(args: QuickstartArguments) -> int:
    from .quickstart import QUICKSTART_STEPS, run_quickstart

    return run_quickstart(workdir=args.workdir, model=args.model, data_dir=args.data_dir, steps=args.steps or QUICKSTART_STEPS)


def _classes(stage: str) -> list[type]:
    """The settings dataclasses of a stage (imported only for the stage that runs)."""
    if stage == "convert":
        from .convert import ConvertConfig

        return [ConvertConfig]
    if stage == "evaluate":
        from .evaluate import EvalConfig

        return [EvalConfig]
    if stage == "finetune":
        from .train import finetune_classes

        return list(finetune_classes())
    if stage == "infer":
        from .predict import InferArguments

        return [InferArguments]
    if stage == "export":
        from .export import ExportArguments

        return [ExportArguments]
    if stage == "icl":
        from .icl.run import ICLArguments

        return [ICLArguments]
    if stage == "extract":
        from .extract import ExtractArguments

        return [ExtractArguments]
    return [{"merge": MergeArguments, "serve": ServeArguments, "quickstart": QuickstartArguments}[stage]]


STAGES: dict[str, tuple[str, Callable[..., int]]] = {
    "convert": ("IE records -> IEPile/InstructIE instruction records", _convert),
    "evaluate": ("score prediction records: P/R/F1 per task, per source and per type", _evaluate),
    "finetune": ("fine-tuning: LoRA, QLoRA (--bits 4), P-Tuning or full; --stage grpo: reinforcement fine-tuning", _finetune),
    "infer": ("generate prediction records for a converted test file (a local model, vLLM or an endpoint)", _infer),
    "merge": ("merge the outputs of deepke-llm infer --num_shards N back into one file, in input order", _merge),
    "export": ("merge a LoRA adapter into its base model and save it", _export),
    "icl": ("in-context learning: prompt an API or a local chat model, one text or a whole file", _icl),
    "extract": ("documents of any length -> typed extractions with offsets (sentence windows, any engine)", _extract),
    "serve": ("an OpenAI-compatible server for a model or adapter: transformers serve, vLLM, or our own", _serve),
    "quickstart": ("the end-to-end walk-through on the bundled sample data", _quickstart),
}


def _usage() -> str:
    rows = "\n".join(f"  {name:<11} {help_text}" for name, (help_text, _) in STAGES.items())
    return ("usage: deepke-llm [--verbose] STAGE [flags | settings.yaml [flags]]\n\nKnowledge extraction with LLMs. "
            f"Stages:\n{rows}\n\n'deepke-llm STAGE --help' lists a stage's flags. --verbose (or DEEPKE_LLM_VERBOSE=1) "
            "shows the libraries' logs and warnings.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stage; bad input exits with status 2 and a one-line, located message (no traceback)."""
    from .args import parse_settings
    from .quiet import quiet

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv[:1] or None  # a global flag, before the stage
    quiet(verbose)
    argv = argv[1:] if verbose else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    stage = argv[0]
    if stage not in STAGES:
        print(f"deepke-llm: unknown stage {stage!r}; valid stages: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    help_text, run = STAGES[stage]
    try:
        try:
            settings: Any = parse_settings(_classes(stage), argv[1:], prog=f"deepke-llm {stage}", description=help_text)
        except SystemExit as exc:  # argparse has printed the usage line and its message (or --help)
            return exc.code if isinstance(exc.code, int) else 2
        return run(*settings)
    except (DataError, ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
            ImportError) as exc:
        print(f"deepke-llm {stage}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
