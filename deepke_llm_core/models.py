"""Model families, default LoRA targets, and loading a base model with an optional adapter.

The ``model_name`` argument of upstream's scripts is a *family*, not a path: it picks the default LoRA target modules
and the model class (``SPEC.md`` §4.7). Upstream silently turned unknown names into ``other`` and then crashed with a
``KeyError``; here an unknown family is a clear error that lists the families, unless ``lora_target`` is given.

``load_model_and_tokenizer`` guards against the mistakes users actually make:

* passing a LoRA adapter folder as the base model (it has ``adapter_config.json`` but no ``config.json``);
* loading an adapter onto a base it was not trained on (different architecture or layer sizes);
* casting a bitsandbytes-quantized model with ``.to(dtype)`` (upstream did this; it breaks 4/8-bit weights).
  Quantization goes only through ``BitsAndBytesConfig``, and bitsandbytes is imported only when asked for.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ModelFamily",
    "FAMILIES",
    "resolve_family",
    "lora_targets",
    "load_model_and_tokenizer",
]

logger = logging.getLogger(__name__)

_LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_GLM_TARGETS = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")


@dataclass(frozen=True)
class ModelFamily:
    """A row of the family table: the names that select it, its LoRA targets and its Auto class."""

    aliases: tuple[str, ...]
    lora_targets: tuple[str, ...]
    auto_class: str = "AutoModelForCausalLM"


FAMILIES: dict[str, ModelFamily] = {
    "llama": ModelFamily(("llama", "llama2", "llama3", "alpaca", "vicuna", "zhixi"), _LLAMA_TARGETS),
    "custom": ModelFamily(("custom",), _LLAMA_TARGETS),
    "falcon": ModelFamily(("falcon",), _GLM_TARGETS),
    # Qwen-1 module names. Qwen1.5/2/2.5 use llama-style names: pick ``qwen2`` for them (SPEC §4.7 note).
    "qwen": ModelFamily(("qwen",), ("c_attn", "attn.c_proj", "w1", "w2", "mlp.c_proj")),
    "qwen2": ModelFamily(("qwen2",), _LLAMA_TARGETS),
    "baichuan": ModelFamily(("baichuan", "baichuan2"), ("W_pack", "o_proj", "gate_proj", "down_proj", "up_proj")),
    "chatglm": ModelFamily(("chatglm",), _GLM_TARGETS, "AutoModel"),
    "moss": ModelFamily(("moss",), _LLAMA_TARGETS),
    "cpm-bee": ModelFamily(("cpm-bee",), ("project_q", "project_v")),
    "openba": ModelFamily(("openba",), ("q", "kv", "qkv", "o", "fc_in", "fc_out"), "AutoModelForSeq2SeqLM"),
    "mistral": ModelFamily(("mistral",), _LLAMA_TARGETS),
}


def resolve_family(model_name: str) -> str:
    """Map a ``--model_name`` value (case-insensitive) to its family key.

    >>> resolve_family("Vicuna")
    'llama'
    """
    name = model_name.strip().lower()
    for key, family in FAMILIES.items():
        if name in family.aliases:
            return key
    accepted = ", ".join(a for f in FAMILIES.values() for a in f.aliases)
    raise ValueError(f"unknown model family {model_name!r}; accepted model_name values: {accepted}. "
                     "For another architecture pass lora_target explicitly (e.g. 'q_proj,v_proj').")


def lora_targets(model_name: str | None = None, lora_target: str | Sequence[str] | None = None) -> list[str]:
    """The LoRA target modules: ``lora_target`` when given (comma-separated or a list), else the family default.

    >>> lora_targets("qwen2")[:2]
    ['q_proj', 'k_proj']
    >>> lora_targets("my-new-model", "q_proj, v_proj")
    ['q_proj', 'v_proj']
    """
    if lora_target:
        items = lora_target.split(",") if isinstance(lora_target, str) else list(lora_target)
        targets = [t.strip() for t in items if t.strip()]
        if targets:
            return targets
    if model_name is None:
        raise ValueError("give model_name (a family, see FAMILIES) or lora_target")
    return list(FAMILIES[resolve_family(model_name)].lora_targets)


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _check_base_dir(model_name_or_path: str) -> None:
    path = Path(model_name_or_path)
    looks_local = model_name_or_path.startswith((".", "/", "~")) or model_name_or_path.count("/") > 1  # Hub: org/name
    if looks_local and not path.exists():
        raise FileNotFoundError(f"{model_name_or_path}: model folder not found")
    if path.is_file():
        raise ValueError(f"{model_name_or_path} is a file; a model is a folder (or a Hugging Face id such as Qwen/Qwen2.5-0.5B)")
    if path.is_dir() and (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        base = _read_json(path / "adapter_config.json").get("base_model_name_or_path")
        raise ValueError(
            f"{model_name_or_path} is a LoRA adapter directory, not a model: pass the base model as "
            f"model_name_or_path and the adapter as checkpoint_dir"
            + (f" (this adapter was trained on {base!r})" if base else ""))


def _adapter_dirs(checkpoint_dir: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[str]:
    """Upstream's comma-separated ``--checkpoint_dir`` or a list; each local entry must be an adapter folder."""
    if checkpoint_dir is None:
        return []
    items = str(checkpoint_dir).split(",") if isinstance(checkpoint_dir, (str, os.PathLike)) else checkpoint_dir
    dirs = [str(d).strip() for d in items if str(d).strip()]
    for d in dirs:
        path = Path(d)
        if path.is_dir() and not (path / "adapter_config.json").is_file():
            hint = (" It holds a full model: pass it as model_name_or_path instead."
                    if (path / "config.json").is_file() else "")
            raise ValueError(f"checkpoint_dir {d} has no adapter_config.json, so it is not a PEFT adapter.{hint}")
        if not path.exists() and (path.is_absolute() or d.startswith(".") or d.count("/") != 1):
            raise FileNotFoundError(f"checkpoint_dir {d} does not exist")
    return dirs


def _signature(config: dict[str, Any]) -> dict[str, Any]:
    keys = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size")
    return {k: config.get(k) for k in keys if config.get(k) is not None}


def _check_adapter_fits(model: Any, adapter_dir: str, model_name_or_path: str) -> None:
    """Raise when an adapter was evidently trained on another base (by config, then by LoRA weight shapes)."""
    path = Path(adapter_dir)
    if not (path / "adapter_config.json").is_file():
        return  # a Hub id: PEFT resolves and validates it
    base = _read_json(path / "adapter_config.json").get("base_model_name_or_path") or ""
    hint = (f"adapter {adapter_dir} was trained on {base or 'an unrecorded base'!r}, but the base model is "
            f"{model_name_or_path!r}; pass the matching base as model_name_or_path")
    ours = _signature(model.config.to_dict())
    if base and (Path(base) / "config.json").is_file():
        theirs = _signature(_read_json(Path(base) / "config.json"))
        differ = {k: (theirs[k], ours[k]) for k in theirs.keys() & ours.keys() if theirs[k] != ours[k]}
        if differ:
            raise ValueError(f"{hint} (adapter base vs given base: {differ})")
    elif base and os.path.normpath(base) != os.path.normpath(model_name_or_path):
        logger.warning("%s; the names differ, checking layer shapes only", hint)
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        return
    from safetensors import safe_open

    problems: list[str] = []
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            for part, dim in ((".lora_A.", 1), (".lora_B.", 0)):
                if part not in key or not key.startswith("base_model.model."):
                    continue
                name = key[len("base_model.model."):key.index(part)]
                try:
                    module = model.get_submodule(name)
                except AttributeError:
                    problems.append(f"{name}: no such module in the base")
                    continue
                size = f.get_slice(key).get_shape()[dim]
                want = getattr(module, "in_features" if dim == 1 else "out_features", size)
                if size != want:
                    problems.append(f"{name}: adapter expects {size} {'inputs' if dim else 'outputs'}, base has {want}")
    if problems:
        raise ValueError(f"{hint}: " + "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else ""))


def _resolve_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype or "auto"
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "half": torch.float16, "fp32": torch.float32, "float32": torch.float32, "float": torch.float32}
    if str(dtype).lower() not in names:
        raise ValueError(f"unknown dtype {dtype!r}; expected 'auto', a torch.dtype or one of {', '.join(names)}")
    return names[str(dtype).lower()]


def _quantization_config(bits: int | None, dtype: Any, double_quant: bool, quant_type: str) -> Any:
    if bits in (None, 16, 32):
        return None
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4, 8, 16 or 32 (got {bits!r})")
    try:  # transformers needs it at load time; fail here, early, with a useful hint
        importlib.import_module("bitsandbytes")
    except ImportError as exc:
        raise ImportError(f"bits={bits} needs bitsandbytes: pip install 'bitsandbytes>=0.45' "
                          "(or pip install 'deepke-llm-cookbook[quant]')") from exc
    import torch
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = dtype if isinstance(dtype, torch.dtype) else torch.bfloat16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=compute,
                              bnb_4bit_use_double_quant=double_quant, bnb_4bit_quant_type=quant_type)


def _fix_tokenizer(tokenizer: Any, padding_side: str) -> bool:
    """Set the padding side and make sure a pad token exists; returns True if a new token had to be added."""
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is not None:
        return False
    for candidate in (tokenizer.eos_token, getattr(tokenizer, "unk_token", None)):
        if candidate is not None:
            tokenizer.pad_token = candidate
            return False
    tokenizer.add_special_tokens({"pad_token": "<|endoftext|>"})
    return True


def load_model_and_tokenizer(
    model_name_or_path: str | os.PathLike,
    checkpoint_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    model_name: str | None = None,
    bits: int | None = None,
    dtype: Any = "auto",
    double_quant: bool = True,
    quant_type: str = "nf4",
    device_map: Any = None,
    is_trainable: bool = False,
    merge_adapters: bool = False,
    padding_side: str = "left",
    trust_remote_code: bool = False,
    cache_dir: str | None = None,
    revision: str = "main",
) -> tuple[Any, Any]:
    """Load a base model, optionally quantized, with zero or more PEFT adapters, and its tokenizer.

    Args:
        model_name_or_path: the base (or a fully fine-tuned / merged) model: a Hub id or a local folder.
        checkpoint_dir: adapter folder(s): a list or upstream's comma-separated string. All but the last are merged
            into the base (which needs an unquantized base); the last stays a ``PeftModel`` unless
            ``merge_adapters``.
        model_name: a family (``FAMILIES``); only chooses the Auto class (``chatglm``: AutoModel, ``openba``:
            seq2seq). ``None`` means a causal LM.
        bits: 4 or 8 for bitsandbytes quantization (QLoRA / low-memory inference); 16, 32 or None for none.
        dtype: ``"auto"`` (from the checkpoint's config), a ``torch.dtype`` or a name such as ``"bf16"``. For 4-bit
            it is also the compute dtype (bf16 when ``"auto"``). It is never applied with ``.to()`` afterwards.
        double_quant, quant_type: 4-bit options (``nf4`` or ``fp4``).
        device_map: passed to ``from_pretrained``; defaults to ``"auto"`` when quantizing, else unset (CPU).
        is_trainable: keep gradients and train mode; otherwise eval mode with ``requires_grad`` off.
        merge_adapters: merge the last adapter too (faster inference; not possible when quantized).
        padding_side: ``"left"`` by default, which batched generation with a decoder-only model needs.
        trust_remote_code: off by default (upstream forced it on); turn on for Baichuan, ChatGLM, Qwen-1.
        cache_dir, revision: the usual Hub options.

    Returns:
        ``(model, tokenizer)``; the tokenizer always has a pad token and the generation config a ``pad_token_id``.
    """
    import transformers

    base = str(model_name_or_path)
    _check_base_dir(base)
    adapters = _adapter_dirs(checkpoint_dir)
    torch_dtype = _resolve_dtype(dtype)
    if bits in (4, 8) and (len(adapters) > 1 or merge_adapters):
        raise ValueError("adapters cannot be merged into a quantized model: load one adapter, or use bits=16")
    quant = _quantization_config(bits, torch_dtype, double_quant, quant_type)
    auto_class = FAMILIES[resolve_family(model_name)].auto_class if model_name else "AutoModelForCausalLM"

    hub = {"cache_dir": cache_dir, "revision": revision, "trust_remote_code": trust_remote_code}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(base, **hub)
    except ValueError as exc:
        if "trust_remote_code" in str(exc) and not trust_remote_code:
            raise ValueError(f"{base} ships its own model code, which runs only if you trust it: pass "
                             "--trust_remote_code (trust_remote_code=True) after reading that code") from None
        raise
    except OSError as exc:  # not a folder here, and the Hub is unreachable or has no such repository
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{base}: not a model folder on this machine, and it could not be loaded from the Hugging "
                         f"Face Hub ({first[:200]}); give a local folder, or download the model first") from None
    added = _fix_tokenizer(tokenizer, padding_side)
    load_kwargs: dict[str, Any] = {"dtype": torch_dtype, **hub}
    if quant is not None:
        load_kwargs["quantization_config"] = quant
        load_kwargs["device_map"] = device_map if device_map is not None else "auto"
    elif device_map is not None:
        load_kwargs["device_map"] = device_map
    model = getattr(transformers, auto_class).from_pretrained(base, **load_kwargs)
    if added:
        model.resize_token_embeddings(len(tokenizer))

    if adapters:
        from peft import PeftModel

        for i, adapter in enumerate(adapters):
            _check_adapter_fits(model, adapter, base)
            last = i == len(adapters) - 1
            model = PeftModel.from_pretrained(model, adapter, is_trainable=is_trainable and last)
            if not last or merge_adapters:
                model = model.merge_and_unload()
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if not is_trainable:
        model.eval()
        model.requires_grad_(False)
    return model, tokenizer
