"""The cookbook (``cookbook/<model>/``): every shipped config is valid, and every README command runs in tiny form.

A folder's README is its recipe. Its ```` ```bash ```` blocks are run here, in order, in *tiny form*:

* ``deepke-llm finetune|infer|icl cookbook/<model>/<name>.yaml`` runs ``<name>_tiny.yaml`` instead, with its
  placeholders filled in: ``TINY_MODEL`` (the random tiny Qwen2 or Llama of ``deepke_llm_core.tiny``),
  ``WORK_DIR`` (a temporary folder that stands for ``work/``) and ``TINY_SERVER`` (a local OpenAI-compatible
  server that answers with the tiny Qwen2);
* flag commands (``convert``, ``evaluate``, ``export``, ``icl``) run with ``work/`` moved to the temporary folder,
  any other ``--model_name_or_path`` replaced by the tiny model and any ``--base_url`` by the local server;
* ``torchrun ... finetune X.yaml`` runs under ``torchrun --nproc_per_node=1`` when X uses DeepSpeed; without
  DeepSpeed it is the single-process command with more processes (``test_distributed.py`` covers that) and is
  only checked to name a config the README also runs on one GPU.

```` ```shell ```` blocks (a real GPU, a vLLM or Ollama server, an API account) are not run; their ``deepke-llm``
commands are parsed with the package's own parsers. No real model id is ever loaded: every model and adapter a
tiny command loads is checked to be a local folder first.

The example files are checked against the tiny run: ``example_input.json`` must be the first records of the
converted test file, ``example_output.json`` those records plus the tiny model's ``output``. Regenerate them with
``python -m tests.test_cookbook [folder ...]`` (from the repository root).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import MISSING, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COOKBOOK = ROOT / "cookbook"
# folder -> the tiny architecture that stands in for its model
RECIPES = {"qwen": "qwen2", "llama": "llama", "chatgpt": "qwen2", "oneke": "llama", "custom_llama": "llama"}
# folder -> (converted test file, prediction file) that example_input.json / example_output.json come from
EXAMPLES = {
    "qwen": ("work/qwen/data/test.json", "work/qwen/results/qwen2.5-7b-ie-ner.json"),
    "llama": ("work/llama/data/test.json", "work/llama/results/llama3-8b-ie-re.json"),
    "chatgpt": ("work/chatgpt/data/test.json", "work/chatgpt/results/gpt-4o-mini-ner.json"),
    "oneke": ("work/oneke/data/test.json", "work/oneke/results/oneke-4bit.json"),
    "custom_llama": ("work/custom_llama/data/test.json", "work/custom_llama/results/my-llama-ie-merged.json"),
}
EXAMPLE_RECORDS = 2
# the only values a tiny twin may change; everything else equals the real config (paths moved under WORK_DIR)
SIZE_KEYS = {"max_steps", "num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size",
             "gradient_accumulation_steps", "val_set_size", "max_source_length", "cutoff_len", "max_target_length",
             "logging_steps", "save_total_limit", "max_new_tokens", "batch_size", "max_tokens", "concurrency"}
PLACEHOLDERS = ("TINY_MODEL", "TINY_SERVER", "WORK_DIR")
STAGES_WITH_YAML = ("finetune", "infer", "icl")
DEEPSPEED_SETUPS_RUN: set[tuple[str, str, bool]] = set()


# ---- reading the cookbook ------------------------------------------------------------------------------------


def configs(tiny: bool | None = None) -> list[Path]:
    found = sorted(COOKBOOK.glob("*/*.yaml"))
    return [p for p in found if tiny is None or p.stem.endswith("_tiny") == tiny]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def header_command(path: Path) -> list[str]:
    """The config's first line, ``# <the command that runs it>``, as argv."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# "), f"{rel(path)}: the first line must be '# <command>', got {first!r}"
    return shlex.split(first[2:])


def split_launcher(argv: list[str]) -> tuple[str, str, list[str]]:
    """``deepke-llm STAGE ARGS`` or ``torchrun OPTS -m deepke_llm_core STAGE ARGS`` -> (launcher, stage, args)."""
    if argv[0] == "deepke-llm":
        return "deepke-llm", argv[1], argv[2:]
    if argv[0] == "torchrun":
        assert "-m" in argv and argv[argv.index("-m") + 1] == "deepke_llm_core", f"torchrun must run -m deepke_llm_core: {argv}"
        at = argv.index("-m") + 2
        return "torchrun", argv[at], argv[at + 1:]
    raise AssertionError(f"not a cookbook command (deepke-llm ... or torchrun ... -m deepke_llm_core ...): {shlex.join(argv)}")


def readme_blocks(folder: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block of the folder's README."""
    text = (COOKBOOK / folder / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def block_commands(body: str) -> Iterator[list[str]]:
    """Commands of a shell block as argv: continuations joined, comments, env assignments and ``&`` dropped."""
    for line in body.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        argv = shlex.split(line, comments=True)
        while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
            argv.pop(0)
        if argv and argv[-1] == "&":
            argv.pop()
        if argv:
            yield argv


def readme_commands(folder: str, language: str = "bash") -> list[list[str]]:
    return [argv for lang, body in readme_blocks(folder) if lang == language for argv in block_commands(body)]


def fill(text: str, work: Path, tiny_model: str = "TINY_MODEL", server: str = "TINY_SERVER") -> str:
    return text.replace("TINY_MODEL", tiny_model).replace("TINY_SERVER", server).replace("WORK_DIR", str(work))


def parse_config(stage: str, path: str):
    """Parse a YAML config with the package's own parser for the stage; returns the parsed objects."""
    if stage == "finetune":
        from deepke_llm_core.train import parse_finetune_args

        return list(parse_finetune_args([path]))
    if stage == "infer":
        from deepke_llm_core.predict import parse_infer_args

        return [parse_infer_args([path])]
    if stage == "icl":
        from deepke_llm_core.icl.run import check_args, parse_icl_args

        args = parse_icl_args([path])
        check_args(args, batch=bool(args.input_file))
        return [args]
    raise AssertionError(f"no YAML parser for stage {stage!r}")


def icl_available() -> bool:
    try:
        import deepke_llm_core.icl.run  # noqa: F401
        import openai  # noqa: F401
    except ImportError:
        return False
    return True


def check_parsed(parsed: list, where: str) -> None:
    """Templates, families and DeepSpeed files exist; numbers are numbers (YAML reads ``5e-5`` as a string)."""
    from deepke_llm_core.models import resolve_family
    from deepke_llm_core.prompts import template_names

    for obj in parsed:
        values = vars(obj)
        if values.get("template") is not None:
            assert values["template"] in template_names(), f"{where}: unknown template {values['template']!r}"
        if values.get("model_name"):
            resolve_family(values["model_name"])
        if values.get("deepspeed"):
            ds = ROOT / values["deepspeed"]
            assert ds.is_file(), f"{where}: deepspeed config {values['deepspeed']} does not exist"
            json.loads(ds.read_text(encoding="utf-8"))
        if hasattr(obj, "__dataclass_fields__"):
            for f in fields(obj):
                if f.default in (MISSING, None) or isinstance(f.default, bool) or f.type not in (int, float, str, "int", "float", "str"):
                    continue  # unions (transformers' `str | bool` options) convert their own way
                value = getattr(obj, f.name)
                declared = {"int": int, "float": float, "str": str}.get(f.type, f.type)  # the field's type, not its default's
                ok = isinstance(value, declared) or (declared is float and isinstance(value, int))
                assert ok and not isinstance(value, bool), f"{where}: {f.name} should be a {declared.__name__}, got {value!r}"


# ---- static checks -------------------------------------------------------------------------------------------


def test_every_model_folder_is_there():
    for folder in RECIPES:
        for name in ("README.md", "example_input.json", "example_output.json"):
            assert (COOKBOOK / folder / name).is_file(), f"cookbook/{folder}/{name} is missing"
        assert any((COOKBOOK / folder).glob("*.yaml")), f"cookbook/{folder} has no config"


@pytest.mark.parametrize("path", configs(), ids=rel)
def test_config_starts_with_the_command_that_runs_it(path):
    launcher, stage, args = split_launcher(header_command(path))
    assert stage in STAGES_WITH_YAML and args == [rel(path)], f"{rel(path)}: the first line must run this very file"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if config.get("deepspeed"):
        assert launcher == "torchrun", f"{rel(path)}: a DeepSpeed config needs a distributed launcher (torchrun)"


@pytest.mark.parametrize("path", configs(), ids=rel)
def test_config_parses_with_the_package_parser(path, tmp_path):
    _, stage, _ = split_launcher(header_command(path))
    if stage == "icl" and not icl_available():
        pytest.skip("deepke_llm_core.icl or openai is not installed")
    text = path.read_text(encoding="utf-8")
    tiny = path.stem.endswith("_tiny")
    assert tiny == any(p in text for p in PLACEHOLDERS), f"{rel(path)}: placeholders belong in *_tiny.yaml only"
    if tiny:  # parse what the test will run
        filled = tmp_path / path.name
        filled.write_text(fill(text, tmp_path / "work", str(tmp_path / "model"), "http://127.0.0.1:9/v1"), encoding="utf-8")
        path = filled
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        mp.setenv("OPENAI_API_KEY", "sk-not-used")
        check_parsed(parse_config(stage, str(path)), rel(path) if not tiny else path.name)


@pytest.mark.parametrize("path", configs(tiny=False), ids=rel)
def test_tiny_twin_has_the_same_keys_and_values_except_sizes(path):
    twin = path.with_name(path.stem + "_tiny.yaml")
    assert twin.is_file(), f"{rel(path)} has no tiny twin {twin.name}"
    real, tiny = (yaml.safe_load(p.read_text(encoding="utf-8")) for p in (path, twin))
    assert list(real) == list(tiny), f"{twin.name}: keys differ from {path.name}"
    launcher, stage, _ = split_launcher(header_command(path))
    tiny_launcher, tiny_stage, _ = split_launcher(header_command(twin))
    assert (launcher, stage) == (tiny_launcher, tiny_stage)
    for key, value in real.items():
        if key in SIZE_KEYS:
            assert type(tiny[key]) is type(value), f"{twin.name}: {key} changes type"
            continue
        if isinstance(value, str) and value.startswith("work/"):
            want = "WORK_DIR/" + value[len("work/"):]
        elif key == "model_name_or_path":
            want = "TINY_MODEL"
        elif key == "base_url":
            want = "TINY_SERVER"
        else:
            want = value
        assert tiny[key] == want, f"{twin.name}: {key} is {tiny[key]!r}, expected {want!r} (as in {path.name})"


def deepspeed_variants() -> list[Path]:
    """``X_zero*.yaml`` configs that have a single-GPU sibling ``X.yaml``."""
    return [p for p in configs(tiny=False) if re.search(r"_zero\d", p.stem)
            and p.with_name(re.sub(r"_zero\d.*$", "", p.stem) + ".yaml").is_file()]


@pytest.mark.parametrize("path", deepspeed_variants(), ids=rel)
def test_deepspeed_variant_is_its_config_plus_deepspeed(path):
    """Only ``deepspeed`` and the held-out set differ: finetune's eval pass before training fails under DeepSpeed
    (ZeRO-2: "ZeRO inference only makes sense with ZeRO Stage 3"; ZeRO-3: no engine left for the training step)."""
    base = path.with_name(re.sub(r"_zero\d.*$", "", path.stem) + ".yaml")
    ds, plain = (yaml.safe_load(p.read_text(encoding="utf-8")) for p in (path, base))
    assert ds.pop("deepspeed") and "deepspeed" not in plain
    assert (ds.pop("val_set_size"), ds.pop("eval_strategy")) == (0, "no"), f"{path.name}: no held-out set under DeepSpeed"
    plain.pop("val_set_size"), plain.pop("eval_strategy")
    assert ds == plain


@pytest.mark.parametrize("folder", RECIPES)
def test_readme_starts_with_the_commands_and_runs_every_config(folder):
    text = (COOKBOOK / folder / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings and headings[0].startswith("Commands"), f"cookbook/{folder}/README.md must start with ## Commands"
    commands = readme_commands(folder)
    assert commands, f"cookbook/{folder}/README.md has no ```bash commands"
    used = set()
    for argv in commands:
        _, stage, args = split_launcher(argv)
        used.update(a for a in args if a.endswith(".yaml"))
    shipped = {rel(p) for p in configs(tiny=False) if p.parent.name == folder}
    assert shipped <= used, f"configs not run by the README: {sorted(shipped - used)}"
    for mentioned in set(re.findall(r"(?<![\w/])(cookbook/[\w./-]+\.(?:yaml|json))", text)):
        assert (ROOT / mentioned).is_file(), f"cookbook/{folder}/README.md names {mentioned}, which does not exist"
    assert "tiny random" in text and "garbage" in text, "the README must say the example output is the tiny random model's"


@pytest.mark.parametrize("folder", RECIPES)
def test_shell_block_commands_parse(folder, tmp_path):
    """Commands shown but not run (GPU, vLLM, API accounts) still use only flags the package accepts."""
    from transformers import HfArgumentParser

    from deepke_llm_core.export import ExportArguments
    from deepke_llm_core.predict import parse_infer_args
    from deepke_llm_core.train import parse_finetune_args

    for argv in readme_commands(folder, "shell"):
        if argv[0] not in ("deepke-llm", "torchrun"):
            continue
        argv = [re.sub(r"\$\{?\w+\}?", "0", a) for a in argv]
        _, stage, args = split_launcher(argv)
        if len(args) == 1 and args[0].endswith(".yaml"):
            assert (ROOT / args[0]).is_file(), args[0]
        elif stage == "finetune":
            check_parsed(list(parse_finetune_args(args)), shlex.join(argv))
        elif stage == "infer":
            check_parsed([parse_infer_args(args)], shlex.join(argv))
        elif stage == "export":
            check_parsed(list(HfArgumentParser(ExportArguments).parse_args_into_dataclasses(args=args)), shlex.join(argv))
        elif stage == "icl" and icl_available():
            from deepke_llm_core.icl.run import check_args, parse_icl_args

            check_args(parse_icl_args(args), batch="--input_file" in args)


# ---- running the recipes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TinyOpenAIServer:
    """``POST /v1/chat/completions`` on 127.0.0.1, answered greedily by a tiny model (one request at a time)."""

    def __init__(self, model_path: str):
        from deepke_llm_core.models import load_model_and_tokenizer

        self.model, self.tokenizer = load_model_and_tokenizer(model_path)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text, prompt_tokens, completion_tokens = server.answer(body)
                payload = json.dumps({
                    "id": "chatcmpl-tiny", "object": "chat.completion", "created": 0, "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, body: dict) -> tuple[str, int, int]:
        import torch

        prompt = self.tokenizer.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with self.lock, torch.no_grad():
            out = self.model.generate(ids, max_new_tokens=min(int(body.get("max_tokens") or 24), 24), do_sample=False)
        new = out[0, ids.shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True), ids.shape[1], len(new)

    def __enter__(self) -> TinyOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def recipe_environment(work: Path, server_url: str) -> Iterator[None]:
    """Repository root as the current folder, one torch thread, the local server as the OpenAI endpoint."""
    import torch

    saved_env, saved_cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    os.environ.update({"OPENAI_BASE_URL": server_url, "OPENAI_API_KEY": "sk-tiny-test", "DEEPKE_LLM_CACHE": str(work / "cache"),
                       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    os.chdir(ROOT)
    torch.set_num_threads(1)  # a 0.3M-parameter model is 50x slower on two contended threads than on one
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


class TinyRecipe:
    """Runs one folder's README commands in tiny form (see the module docstring)."""

    def __init__(self, folder: str, work: Path, tiny_model: Path, server_url: str):
        self.folder, self.work, self.tiny_model, self.server_url = folder, work, str(tiny_model), server_url
        self.ran: set[tuple[str, str]] = set()
        self.log: list[str] = []
        self.pending: list[tuple[str, str, subprocess.Popen, Path]] = []

    def tiny_config(self, config: str) -> str:
        twin = ROOT / config.replace(".yaml", "_tiny.yaml")
        assert twin.is_file(), f"{config} has no tiny twin"
        out = self.work / "_configs" / twin.name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(fill(twin.read_text(encoding="utf-8"), self.work, self.tiny_model, self.server_url), encoding="utf-8")
        return str(out)

    def tiny_args(self, args: list[str]) -> list[str]:
        if len(args) == 1 and args[0].endswith(".yaml"):
            return [self.tiny_config(args[0])]
        out = []
        for i, arg in enumerate(args):
            flag = args[i - 1] if i else ""
            if arg.startswith("work/"):
                arg = str(self.work / arg[len("work/"):])
            elif flag == "--model_name_or_path":
                arg = self.tiny_model
            elif flag == "--base_url":
                arg = self.server_url
            elif flag == "--api_key":
                arg = "sk-tiny-test"
            out.append(arg)
        return out

    def check_local(self, stage: str, args: list[str]) -> None:
        """Everything a tiny command loads is a local folder: no real model id can slip through to the Hub."""
        if len(args) == 1 and args[0].endswith(".yaml"):
            values = yaml.safe_load(Path(args[0]).read_text(encoding="utf-8"))
        else:
            values = {args[i][2:]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
        for key in ("model_name_or_path", "checkpoint_dir") if stage != "icl" else ():
            for value in str(values.get(key) or "").split(","):
                assert not value or Path(value).is_absolute(), f"{self.folder}: {key}={value!r} is not a local tiny path"
        if stage == "icl":
            assert values.get("engine") in (None, "ChatGPT"), "only the OpenAI-compatible engine runs against the server"

    def run(self, argv: list[str]) -> None:
        from deepke_llm_core.cli import main

        launcher, stage, args = split_launcher(argv)
        if launcher == "torchrun":
            config = args[0]
            if not yaml.safe_load((ROOT / config).read_text(encoding="utf-8")).get("deepspeed"):
                assert (stage, config) in self.ran, f"{config}: run it on one GPU earlier in the README too"
                self.log.append(f"covered by the single-process run: {shlex.join(argv)}")
                return
            self.run_deepspeed(stage, config)
            return
        tiny = self.tiny_args(args)
        self.check_local(stage, tiny)
        self.wait_for(" ".join(tiny) + "".join(Path(a).read_text(encoding="utf-8") for a in tiny if a.endswith(".yaml")))
        self.log.append(f"deepke-llm {stage} {shlex.join(tiny)}")
        assert main([stage, *tiny]) == 0, f"{shlex.join(argv)} failed in tiny form"
        if len(args) == 1 and args[0].endswith(".yaml"):
            self.ran.add((stage, args[0]))

    def run_deepspeed(self, stage: str, config: str) -> None:
        """Start ``torchrun --nproc_per_node=1`` in the background; ``finish`` waits for it.

        A variant of a config that already ran here trains into ``<output_dir>.deepspeed``, so the README's later
        commands read the single-GPU result while it runs; otherwise every later command that names its output
        folder waits for it first.
        """
        pytest.importorskip("deepspeed")
        tiny = Path(self.tiny_config(config))
        values = yaml.safe_load(tiny.read_text(encoding="utf-8"))
        output_dir = values["output_dir"]
        sibling = re.sub(r"_zero\d.*\.yaml$", ".yaml", config)
        if sibling != config and ("finetune", sibling) in self.ran:
            # Each DeepSpeed setup (ZeRO file, method, continued adapter or not) trains once per session: a
            # variant that only adds the same `deepspeed:` line to another model's config is not run again.
            setup = (values["deepspeed"], values.get("finetuning_type", "lora"), bool(values.get("checkpoint_dir")))
            if setup in DEEPSPEED_SETUPS_RUN:
                self.log.append(f"DeepSpeed setup {setup} already trained in this session: {config}")
                return
            DEEPSPEED_SETUPS_RUN.add(setup)
            tiny.write_text(tiny.read_text(encoding="utf-8").replace(output_dir, output_dir + ".deepspeed"), encoding="utf-8")
            output_dir += ".deepspeed"
        self.check_local(stage, [str(tiny)])
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", f"--master_port={free_port()}",
                   "-m", "deepke_llm_core", stage, str(tiny)]
        self.log.append(shlex.join(command))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        log = self.work / "_logs" / (Path(config).stem + ".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w", encoding="utf-8") as handle:  # a file, not a pipe: a full pipe would stall the run
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        self.pending.append((config, output_dir, process, log))
        self.ran.add((stage, config))

    def wait_for(self, text: str = "") -> None:
        """Wait for the background runs whose output folder ``text`` names (all of them when ``text`` is empty)."""
        for item in list(self.pending):
            config, output_dir, process, log = item
            if text and output_dir not in text:
                continue
            self.pending.remove(item)
            try:
                process.wait(timeout=300)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
            output = log.read_text(encoding="utf-8", errors="replace")
            assert process.returncode == 0, f"torchrun ... {config} failed in tiny form:\n{output[-3000:]}"
            assert (Path(output_dir) / "training_history.json").is_file(), f"{config}: nothing saved in {output_dir}"

    def finish(self) -> None:
        self.wait_for()

    def abort(self) -> None:
        for _, _, process, _ in self.pending:
            process.kill()
            process.wait()
        self.pending.clear()


def run_recipe(folder: str, work: Path, tiny_model: Path, server_url: str = "http://127.0.0.1:9/v1") -> TinyRecipe:
    recipe = TinyRecipe(folder, work, tiny_model, server_url)
    try:
        for argv in readme_commands(folder):
            recipe.run(argv)
    except BaseException:
        recipe.abort()
        raise
    recipe.finish()
    return recipe


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def example_records(folder: str, work: Path) -> tuple[list[dict], list[dict]]:
    """What example_input.json and example_output.json must hold after a tiny run into ``work``."""
    test_file, predictions = (work / p[len("work/"):] for p in EXAMPLES[folder])
    return read_records(test_file)[:EXAMPLE_RECORDS], read_records(predictions)[:EXAMPLE_RECORDS]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


@contextlib.contextmanager
def tiny_server(folder: str, tiny_qwen: Path) -> Iterator[str]:
    if folder != "chatgpt":
        yield "http://127.0.0.1:9/v1"  # nothing listens there: a stray API call fails at once
        return
    with TinyOpenAIServer(str(tiny_qwen)) as server:
        yield server.url


@pytest.fixture(scope="session")
def tiny_models(tiny_qwen, tmp_path_factory) -> dict[str, Path]:
    from deepke_llm_core.tiny import tiny_model_path

    return {"qwen2": tiny_qwen, "llama": tiny_model_path("llama", cache_dir=tmp_path_factory.mktemp("tiny-llama"))}


@pytest.mark.slow
@pytest.mark.parametrize("folder", RECIPES)
def test_recipe_runs_in_tiny_form(folder, tiny_models, tmp_path):
    if folder == "chatgpt" and not icl_available():
        pytest.skip("deepke_llm_core.icl or openai is not installed")
    work = tmp_path / "work"
    with tiny_server(folder, tiny_models["qwen2"]) as url, recipe_environment(work, url):
        run_recipe(folder, work, tiny_models[RECIPES[folder]], url)
    inputs, outputs = example_records(folder, work)
    shipped_in = read_records(COOKBOOK / folder / "example_input.json")
    shipped_out = read_records(COOKBOOK / folder / "example_output.json")
    assert shipped_in == inputs, f"cookbook/{folder}/example_input.json is not what the recipe converts; regenerate it"
    assert len(shipped_out) == len(outputs) == len(inputs)
    for shipped, produced, source in zip(shipped_out, outputs, inputs):
        assert {k: v for k, v in produced.items() if k != "output"} == source
        assert {k: v for k, v in shipped.items() if k != "output"} == source
        assert isinstance(produced["output"], str) and isinstance(shipped["output"], str)


def regenerate(folders: list[str]) -> None:
    """Run the recipes in tiny form and write their example_input.json / example_output.json."""
    import tempfile

    from deepke_llm_core.tiny import tiny_model_path

    models = {arch: tiny_model_path(arch) for arch in set(RECIPES.values())}
    with tempfile.TemporaryDirectory(prefix="cookbook-") as tmp:
        for folder in folders:
            work = Path(tmp) / folder / "work"
            with tiny_server(folder, models["qwen2"]) as url, recipe_environment(work, url):
                recipe = run_recipe(folder, work, models[RECIPES[folder]], url)
            inputs, outputs = example_records(folder, work)
            write_jsonl(COOKBOOK / folder / "example_input.json", inputs)
            write_jsonl(COOKBOOK / folder / "example_output.json", outputs)
            print(f"cookbook/{folder}: {len(recipe.log)} commands; examples written", file=sys.stderr)


if __name__ == "__main__":
    regenerate(sys.argv[1:] or list(RECIPES))
