"""``deepke-llm <stage>``: a thin entry point over the library.

Each stage parses the flags of the draft README's scripts (so ``--src_path``, ``--path1`` and friends keep
working) and calls one library function. Heavy libraries are imported inside the stage that needs them, so
``deepke-llm convert`` never loads torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .io import DataError

__all__ = ["main", "build_parser"]

STAGES: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def stage(name: str, help_text: str):
    """Register ``add_arguments`` + ``run`` for one sub-command."""

    def wrap(add_arguments):
        def register(run):
            STAGES[name] = (help_text, add_arguments, run)
            return run

        return register

    return wrap


def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("--src_path", required=True, help="raw IE records, JSON Lines")
    p.add_argument("--tgt_path", required=True, help="instruction records to write, JSON Lines")
    p.add_argument("--schema_path", default=None, help="three-line schema file; omitted: collected from the data")
    p.add_argument("--language", default="zh", choices=["zh", "en"])
    p.add_argument("--task", default="NER", type=str.upper, choices=["NER", "RE", "SPO", "EE", "EET", "EEA", "KG"])
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--split_num", type=int, default=4, help="max schema items per instruction; -1: no split")
    p.add_argument("--neg_schema", type=float, default=1.0, help="negative schema sampling rate (1: keep all)")
    p.add_argument("--random_sort", action="store_true", help="shuffle the schema order (seeded)")
    p.add_argument("--cluster_mode", action="store_true", help="hard-negative sampling (train; NER/RE/SPO/EET)")
    p.add_argument("--hard_negative_path", default=None, help="JSON object: label -> confusable labels")
    p.add_argument("--source", default=None, help="the records' source; default: the input's parent folder name")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--relation_keys", default="subject_object", choices=["subject_object", "head_tail"],
                   help="RE output keys: IEPile/OneKE subject/object (default) or DeepKE's head/tail")
    p.add_argument("--legacy_spo_instruction", action="store_true", help="the older zh SPO sentence of IEPile's data")
    p.add_argument("--skip_invalid", action="store_true", help="skip bad records and report them instead of stopping")
    p.add_argument("--workers", type=int, default=1, help="worker processes; output order is kept")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar on stderr")


@stage("convert", "IE records -> IEPile/InstructIE instruction records")(_add_convert)
def _run_convert(args: argparse.Namespace) -> int:
    from .convert import ConvertConfig, convert_file

    report = convert_file(ConvertConfig(**vars(args)))
    print(report.summary(), file=sys.stderr)
    return 0


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path1", required=True, help="prediction records: converted test records plus `output`")
    p.add_argument("--task", default=None, type=str.upper, help="NER, RE, SPO, EE, EET, EEA or KG; default: the records' task field")
    p.add_argument("--sort_by", default="", help="also score per value of this field, e.g. source")
    p.add_argument("--match_mode", default="normal", choices=["normal", "set"])
    p.add_argument("--out_path", default=None, help="metrics JSON; default: <dir of path1>/output_msg/<name of path1>")
    p.add_argument("--lenient", action="store_true", help="recover JSON wrapped in code fences or prose (off: comparable numbers)")
    p.add_argument("--rel_keys", default="any", choices=["any", "subject_object", "head_tail"],
                   help="relation object keys to read; head_tail reproduces upstream DeepKE's scorer")
    p.add_argument("--grounded_only", action="store_true", help="drop predicted tuples whose strings are not in the input text")
    p.add_argument("--language", default=None, help=argparse.SUPPRESS)  # accepted for upstream scripts; unused there too


@stage("evaluate", "score prediction records: P/R/F1 per task, per source and per type")(_add_evaluate)
def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import EvalConfig, evaluate_file

    options = {k: v for k, v in vars(args).items() if k != "language"}
    result, out_path = evaluate_file(EvalConfig(**options))
    print(json.dumps(result, ensure_ascii=False, indent=2))
    print(f"metrics written to {out_path}", file=sys.stderr)
    return 0


def _passthrough(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs=argparse.REMAINDER, help="the stage's flags, or one YAML file")


@stage("finetune", "supervised fine-tuning: LoRA, QLoRA (--bits 4), P-Tuning or full (flags or a YAML file)")(_passthrough)
def _run_finetune(args: argparse.Namespace) -> int:
    from .train import run_from_argv

    run_from_argv(args.args)
    return 0


@stage("infer", "generate prediction records for a converted test file (flags or a YAML file)")(_passthrough)
def _run_infer(args: argparse.Namespace) -> int:
    from .predict import parse_infer_args, run_inference

    stats = run_inference(parse_infer_args(args.args))
    print(json.dumps(stats, ensure_ascii=False, indent=2))
    return 0


def _add_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output_file", required=True, help="the --output_file the shards were run with")
    p.add_argument("--num_shards", type=int, required=True)
    p.add_argument("--input_file", default=None, help="check that every input record is there")


@stage("merge", "merge the outputs of deepke-llm infer --num_shards N back into one file, in input order")(_add_merge)
def _run_merge(args: argparse.Namespace) -> int:
    from .io import iter_jsonl
    from .predict.shards import merge_shards

    expected = sum(1 for _ in iter_jsonl(args.input_file)) if args.input_file else None
    print(f"merged {merge_shards(args.output_file, args.num_shards, expected)} records into {args.output_file}", file=sys.stderr)
    return 0


@stage("export", "merge a LoRA adapter into its base model and save it")(_passthrough)
def _run_export(args: argparse.Namespace) -> int:
    from .args import parse_settings
    from .export import ExportArguments, export_model

    (options,) = parse_settings([ExportArguments], args.args)
    print(f"merged model written to {export_model(options)}", file=sys.stderr)
    return 0


@stage("icl", "in-context learning: prompt an API or a local chat model, one text or a whole file (flags or a YAML file)")(_passthrough)
def _run_icl(args: argparse.Namespace) -> int:
    from .icl.run import main as icl_main

    return icl_main(args.args)


def _add_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model_name_or_path", required=True, help="base or merged model (a folder or a Hub id)")
    p.add_argument("--checkpoint_dir", default=None, help="LoRA adapter folder")
    p.add_argument("--model_id", default=None, help="the name clients send as `model`; default: the folder name")
    p.add_argument("--template", default=None, help="default: the adapter's stored template, else 'auto'")
    p.add_argument("--system_prompt", default=None, help="added when a request has no system message")
    p.add_argument("--model_name", default=None, help="model family (chatglm, openba: another Auto class)")
    p.add_argument("--bits", type=int, default=None, choices=[4, 8], help="bitsandbytes quantization (GPU)")
    p.add_argument("--trust_remote_code", action="store_true")
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default): this machine only")
    p.add_argument("--port", type=int, default=8000, help="0: a free port")
    p.add_argument("--api_key_env", default=None, help="environment variable holding a key clients must send")


@stage("serve", "a small OpenAI-compatible server (/v1/chat/completions) for a local model, CPU or GPU")(_add_serve)
def _run_serve(args: argparse.Namespace) -> int:
    import os

    from .serve import serve

    options = vars(args).copy()
    key_env = options.pop("api_key_env")
    if key_env and not os.environ.get(key_env):
        raise ValueError(f"--api_key_env {key_env}: that environment variable is empty")
    serve(options.pop("model_name_or_path"), options.pop("checkpoint_dir"), host=options.pop("host"),
          port=options.pop("port"), api_key=os.environ[key_env] if key_env else None, **options)
    return 0


def _add_quickstart(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default=None, help="where outputs go; default: a fresh temporary folder")
    p.add_argument("--model", default=None, help="hf id or path of a real model; default: the committed tiny IE base")
    p.add_argument("--data_dir", default=None, help="the repository's data/ folder (with --model); default: beside the package")
    p.add_argument("--steps", type=int, default=None, help="LoRA training steps")


@stage("quickstart", "the end-to-end walk-through on the bundled sample data")(_add_quickstart)
def _run_quickstart(args: argparse.Namespace) -> int:
    from .quickstart import run_quickstart

    from .quickstart import QUICKSTART_STEPS

    return run_quickstart(workdir=args.workdir, model=args.model, data_dir=args.data_dir, steps=args.steps or QUICKSTART_STEPS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepke-llm", description="Knowledge extraction with LLMs: convert, evaluate, ...")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (help_text, add_arguments, _) in STAGES.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stage; bad input exits with status 2 and a one-line, located message (no traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STAGES and STAGES[argv[0]][1] is _passthrough:
        # These stages parse their own flags (argparse's REMAINDER would swallow a leading --help badly).
        args = argparse.Namespace(stage=argv[0])
        options = argparse.Namespace(args=argv[1:])
    else:
        args = build_parser().parse_args(argv)
        options = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "stage"})
    run = STAGES[args.stage][2]
    try:
        return run(options)
    except (DataError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"deepke-llm {args.stage}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
