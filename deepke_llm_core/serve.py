"""``deepke-llm serve``: a thin launcher over the OpenAI-compatible servers users already run.

``--server transformers`` (the default) runs ``transformers serve`` and ``--server vllm`` runs ``vllm serve``; this
module only prepares what they load and starts them. They cannot load the project's adapter folders with the
template those were trained with, so the launcher first builds a *served folder* (``served_folder``): the adapter
merged into its base (``export_model``), or links to the base's files, plus the stored template as
``chat_template.jinja`` (a legacy template such as ``alpaca`` or ``llama2_zh`` is rendered as one, cut out of
``render_prompt``'s own output), the template's end-of-turn token among the EOS ids of ``generation_config.json``,
and a response template that returns the answer as generated. Served folders are cached under
``$DEEPKE_LLM_CACHE/serve`` by the weights they come from, so a second launch does not merge again. vLLM serves a
LoRA adapter itself (``--lora-modules``) and gets the template file as ``--chat-template``.

Measured with ``transformers serve`` (transformers 5.24, ``pip install 'transformers[serving]'``) on the committed
tiny IE base, 2 CPU cores, offline (``HF_HUB_OFFLINE=1``):

* it starts offline on a local folder, on the CPU (``--device cpu``); greedy answers equal the transformers
  engine's (``deepke-llm infer``): 8 of 8 held-out NER records; ``max_tokens`` ends with ``finish_reason: length``
  and ``usage`` counts the tokens; 50 simultaneous connections were all answered; ``Content-Length: -1`` is 400;
* a LoRA adapter folder does not load (``ValueError: Unrecognized model ... Should have a model_type``), and a
  model without a chat template cannot be prompted: hence the merge and ``chat_template.jinja``; so prepared, an
  adapter stored with ``alpaca`` answered 6 of 6 records exactly as base + adapter in-process;
* its built-in response parser for Qwen-family models assumes ChatML: with the ``alpaca`` layout the answer came
  back with the whole prompt in front of it, and answers are stripped of surrounding whitespace (a length-cut
  answer ending in a space differed): hence our response template.

What it measurably cannot do, and what the package's own server (``builtin_server.py``, ``--server builtin``)
therefore keeps doing:

* a P-Tuning adapter: it cannot be merged into the weights, and the server loads no adapters;
* an API key: the server has no authentication (``--api_key_env``: ``builtin``, or ``vllm`` on a GPU);
* a served name: a request whose ``model`` is not the served folder's path is refused with 400 (``--model_id``);
* OpenAI's ``stop``: the stop string is *included* in the answer (``..."location"`` for ``stop='"location"'``);
* a body limit and a read timeout: a 20 MB body was accepted and tokenized (12M tokens; no answer within 120 s),
  and a client that declared 1,000 bytes and sent 10 held its connection for the 20 s we waited;
* request validation: ``temperature: 3`` and ``n: 2`` are accepted (sampled; one choice).

``vllm serve`` needs a CUDA GPU and was not measured (the machine this was written on has none); its command is
built from vLLM's documented flags and checked by a test.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .builtin_server import BadRequest, ChatModel, ChatRequest, parse_chat_request, serving, start_server

__all__ = ["ServeArguments", "serve", "served_folder", "legacy_chat_template", "transformers_serve_command",
           "vllm_serve_command", "ChatModel", "start_server", "serving", "parse_chat_request", "BadRequest",
           "ChatRequest", "SERVERS"]

SERVERS = ("transformers", "vllm", "builtin")
_QUERY, _SYSTEM = "\x00query\x00", "\x00system\x00"


@dataclass
class ServeArguments:
    model_name_or_path: str = field(metadata={"help": "base or merged model (a folder or a Hub id)"})
    checkpoint_dir: str | None = field(default=None, metadata={"help": "LoRA adapter folder (P-Tuning: --server builtin)"})
    server: str = field(default="transformers", metadata={
        "help": "transformers: `transformers serve` (pip install 'transformers[serving]'); vllm: `vllm serve` "
                "(GPU); builtin: the package's own small server", "choices": list(SERVERS)})
    model_id: str | None = field(default=None, metadata={"help": "builtin/vllm: the name clients send as `model`"})
    template: str | None = field(default=None, metadata={"help": "default: the adapter's stored template, else 'auto'"})
    system_prompt: str | None = field(default=None, metadata={"help": "added when a request has no system message"})
    model_name: str | None = field(default=None, metadata={"help": "model family (chatglm, openba: another Auto class)"})
    bits: int | None = field(default=None, metadata={"help": "bitsandbytes quantization (GPU)", "choices": [4, 8]})
    trust_remote_code: bool = False
    host: str = field(default="127.0.0.1", metadata={"help": "127.0.0.1 (default): this machine only"})
    port: int = field(default=8000, metadata={"help": "0: a free port"})
    api_key_env: str | None = field(default=None, metadata={"help": "environment variable holding a key clients must send"})


def _digest(*parts: Any) -> str:
    from .engines.local import path_signature

    signature = [path_signature(p) if isinstance(p, str) else p for p in parts]
    return hashlib.sha256(json.dumps(signature, sort_keys=True, default=str).encode()).hexdigest()[:16]


def legacy_chat_template(template: str, tokenizer: Any, system: str | None = None) -> str:
    """A Jinja chat template that renders one turn exactly as ``prompts.render_prompt(query, template)`` does.

    The last user message is the query; a system message replaces ``system`` (default: the template's own), and an
    empty system drops the system part where the layout allows, as ``render_prompt`` does. The literal parts are
    cut out of ``render_prompt``'s own output, so the two cannot drift apart.
    """
    from .prompts import get_template, render_prompt

    default = get_template(template).system if system is None else system

    def layout(with_system: bool) -> str:
        text = render_prompt(_QUERY, template, tokenizer=tokenizer, system=_SYSTEM if with_system else "")
        out = []
        for k, piece in enumerate(text.split(_QUERY)):
            if k:
                out.append("{{ ns.query }}")
            for j, part in enumerate(piece.split(_SYSTEM)):
                if j:
                    out.append("{{ ns.system }}")
                if part:
                    out.append("{% raw %}" + part + "{% endraw %}")
        return "".join(out)

    return ("{% set ns = namespace(system=none, query='') %}"
            "{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}"
            "{% elif m['role'] == 'user' %}{% set ns.query = m['content'] %}{% endif %}{% endfor %}"
            "{% if ns.system is none %}{% set ns.system = " + json.dumps(default, ensure_ascii=True) + " %}{% endif %}"
            "{% if ns.system %}" + layout(True) + "{% else %}" + layout(False) + "{% endif %}")


def _link_model_files(source: Path, target: Path, skip: set[str]) -> None:
    for item in source.iterdir():
        if item.is_file() and item.name not in skip:
            (target / item.name).symlink_to(item.resolve())


def served_folder(model: str, checkpoint_dir: str | None = None, *, template: str | None = None,
                  system_prompt: str | None = None, model_name: str | None = None, trust_remote_code: bool = False,
                  merge: bool = True, cache_dir: str | os.PathLike | None = None) -> tuple[str, str]:
    """The folder a library server loads, and the template it carries: ``(folder, template)``.

    A folder is prepared once under ``cache_dir`` (default ``$DEEPKE_LLM_CACHE/serve``): the adapter merged into
    the base (``merge``; vLLM serves the adapter itself), or links to the base's files; plus ``chat_template.jinja``
    (a legacy template rendered as one), the template's end-of-turn token among the EOS ids of
    ``generation_config.json``, and a response template that keeps the answer as generated. A Hub id with its own
    chat template is served as it is.
    """
    from .run_info import resolve_template, stored_run_info

    info = stored_run_info(checkpoint_dir, model)
    template = resolve_template(template, info, checkpoint_dir or model)
    system = system_prompt if system_prompt is not None else info.get("system_prompt")
    if info.get("finetuning_type") == "p_tuning" and checkpoint_dir:
        raise ValueError("a P-Tuning adapter cannot be merged into the weights, and transformers/vLLM servers load no "
                         "P-Tuning adapters: serve it with --server builtin")
    if not os.path.isdir(model) and (not checkpoint_dir or not merge) and template == "auto" and system is None:
        return model, template  # a Hub id is served as it is (its answers are stripped of surrounding whitespace)
    if not os.path.isdir(model):
        raise ValueError(f"{model} is not a local folder: a library server needs a folder to add the template "
                         f"{template!r} to; download the model first, or use --server builtin")
    from .tiny import cache_root

    root = Path(cache_dir) if cache_dir else cache_root() / "serve"
    target = root / f"{Path(checkpoint_dir or model).name}-{_digest(model, checkpoint_dir if merge else None, template, system)}"
    if (target / "deepke_llm.json").is_file():
        return str(target), template
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if checkpoint_dir and merge:
        from .export import ExportArguments, export_model

        print(f"[serve] merging {checkpoint_dir} into {model} (once; cached in {target})", file=sys.stderr)
        export_model(ExportArguments(model_name_or_path=model, checkpoint_dir=checkpoint_dir, export_dir=str(partial),
                                     model_name=model_name, trust_remote_code=trust_remote_code))
    else:
        _link_model_files(Path(model), partial, {"deepke_llm.json"})  # written below: never through a link
    _write_template(partial, Path(model), template, system, trust_remote_code)
    from .run_info import write_run_info

    write_run_info(partial, {**info, "template": template, "system_prompt": system, "served_from": [model, checkpoint_dir]})
    partial.rename(target)
    return str(target), template


def _write_template(folder: Path, base: Path, template: str, system: str | None, trust_remote_code: bool) -> None:
    """``chat_template.jinja``, the template's EOS ids, and a response template that reads the answer as it is.

    transformers serve parses every Qwen-family answer with a ChatML response template that strips the answer's
    surrounding whitespace, and with a prompt in another layout returns the prompt glued in front of the answer
    (measured with ``alpaca``); ours takes the generated text as it is, up to the first stop token.
    """
    import re

    from transformers import AutoTokenizer, GenerationConfig

    from .engines.local import stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if template != "auto":
        text = legacy_chat_template(template, tokenizer, system)
    else:
        from .run_info import require_chat_template

        require_chat_template(template, tokenizer, str(base))
        text = tokenizer.chat_template
        if system is not None:  # the stored training-time system prompt, when a request brings none
            text = ("{% if messages[0]['role'] != 'system' %}{% set messages = [{'role': 'system', 'content': "
                    + json.dumps(system, ensure_ascii=True) + "}] + messages %}{% endif %}" + text)
    _replace(folder / "chat_template.jinja", text)
    source = folder if (folder / "generation_config.json").is_file() else base
    try:
        generation = GenerationConfig.from_pretrained(source)
    except OSError:
        generation = GenerationConfig()
    holder = type("Holder", (), {"generation_config": generation})()
    stops = stop_token_ids(tokenizer, holder, template)
    generation.eos_token_id = stops
    (folder / "generation_config.json").unlink(missing_ok=True)
    generation.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    ends = "|".join(re.escape(t) for t in tokenizer.convert_ids_to_tokens(stops) if t)
    content = {"content": "text", "content_args": {"strip": False}, **({"close_pattern": f"(?:{ends})"} if ends else {})}
    config["response_template"] = {"defaults": {"role": "assistant"}, "start_anchor_pattern": r"\Z",
                                    "fields": {"content": content}}
    _replace(config_path, json.dumps(config, ensure_ascii=False, indent=2))


def _replace(path: Path, text: str) -> None:
    """Write ``path`` anew: a link to the base's file is removed first, never written through."""
    path.unlink(missing_ok=True)
    path.write_text(text, encoding="utf-8")


def _free_port(host: str, port: int = 0) -> int:
    """``port`` if it can be bound now (0: any free one); a busy port is a one-line error before anything starts."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        return probe.getsockname()[1]


def transformers_serve_command(folder: str, host: str, port: int, *, bits: int | None = None,
                               trust_remote_code: bool = False, device: str | None = None) -> list[str]:
    """``transformers serve`` on one folder (preloaded: it serves that model only)."""
    import torch

    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", folder, "--host", host, "--port", str(port),
               "--device", device or ("auto" if torch.cuda.is_available() else "cpu")]
    if bits:
        command += ["--quantization", f"bnb-{bits}bit"]
    if trust_remote_code:
        command.append("--trust-remote-code")
    return command


def vllm_serve_command(folder: str, host: str, port: int, *, served_name: str, adapter: str | None = None,
                       chat_template: str | None = None, bits: int | None = None,
                       trust_remote_code: bool = False) -> list[str]:
    """``vllm serve``: the model, its served name, a LoRA adapter served by vLLM itself, the template file."""
    base_name = f"{served_name}-base" if adapter else served_name  # the adapter takes the name clients send
    command = ["vllm", "serve", folder, "--host", host, "--port", str(port), "--served-model-name", base_name]
    if adapter:
        with open(Path(adapter) / "adapter_config.json", encoding="utf-8") as handle:
            rank = int(json.load(handle).get("r", 16))
        command += ["--enable-lora", "--lora-modules", f"{served_name}={adapter}", "--max-lora-rank", str(rank)]
    if chat_template:
        command += ["--chat-template", chat_template]
    if bits == 4:
        command += ["--quantization", "bitsandbytes"]
    elif bits == 8:
        raise ValueError("vLLM loads bitsandbytes models in 4 bits only: use --bits 4, or --server transformers")
    if trust_remote_code:
        command.append("--trust-remote-code")
    return command


def _refuse(args: ServeArguments, server: str) -> None:
    if server == "transformers" and args.api_key_env:
        raise ValueError("transformers serve has no API keys: use --server vllm or --server builtin with --api_key_env")
    if server == "transformers" and args.model_id:
        raise ValueError("transformers serve names the model by its folder (clients send that path as `model`): "
                         "drop --model_id, or use --server vllm or --server builtin")
    if server == "transformers":
        missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
        if missing:
            raise ImportError(f"transformers serve needs {' and '.join(missing)}: pip install 'transformers[serving]' "
                              "(or pip install -e '.[serve]'), or use --server builtin")
    if server == "vllm" and shutil.which("vllm") is None:
        raise ImportError("vllm serve needs vLLM and a CUDA GPU: pip install -e '.[gpu]', or use --server transformers")


def _run(command: list[str], env: dict[str, str], model: str, url: str, server: str) -> int:
    """Run the server in the foreground; Ctrl-C stops it and exits 0."""
    print(f"serving {model!r} at {url} ({server} serve); clients send model={model!r}; Ctrl-C stops it",
          file=sys.stderr, flush=True)
    process = subprocess.Popen(command, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        return 0


def serve(args: ServeArguments) -> int:
    """``deepke-llm serve``: start the chosen server in the foreground until Ctrl-C."""
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535 (0: a free port), got {args.port}")
    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise ValueError(f"--api_key_env {args.api_key_env}: that environment variable is empty (it must hold the key; "
                             "the key itself is never given on the command line)")
    if args.server == "builtin":
        from .builtin_server import serve_forever

        chat = ChatModel(args.model_name_or_path, args.checkpoint_dir, model_id=args.model_id, template=args.template,
                         system_prompt=args.system_prompt, model_name=args.model_name, bits=args.bits,
                         trust_remote_code=args.trust_remote_code)
        serve_forever(chat, host=args.host, port=args.port, api_key=key)
        return 0
    _refuse(args, args.server)
    port = _free_port(args.host, args.port)
    url = f"http://{'127.0.0.1' if args.host in ('', '0.0.0.0') else args.host}:{port}/v1"
    env = dict(os.environ)
    if args.server == "transformers":
        folder, _ = served_folder(args.model_name_or_path, args.checkpoint_dir, template=args.template,
                                  system_prompt=args.system_prompt, model_name=args.model_name,
                                  trust_remote_code=args.trust_remote_code)
        command = transformers_serve_command(folder, args.host, port, bits=args.bits, trust_remote_code=args.trust_remote_code)
        return _run(command, env, folder, url, "transformers")
    folder, template = served_folder(args.model_name_or_path, args.checkpoint_dir, template=args.template,
                                     system_prompt=args.system_prompt, merge=False)
    name = args.model_id or Path(args.checkpoint_dir or args.model_name_or_path).name
    chat_template = str(Path(folder) / "chat_template.jinja") if (Path(folder) / "chat_template.jinja").is_file() else None
    command = vllm_serve_command(folder, args.host, port, served_name=name, adapter=args.checkpoint_dir,
                                 chat_template=chat_template, bits=args.bits, trust_remote_code=args.trust_remote_code)
    if key:
        env["VLLM_API_KEY"] = key  # never on the command line, where `ps` shows it
    return _run(command, env, name, url, "vllm")
