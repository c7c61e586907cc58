"""Tiny, offline, deterministic causal LMs with a real tokenizer, for tests, notebooks and the quickstart.

Everything is built in-process from nothing: a byte-level BPE tokenizer trained with the ``tokenizers`` library on the
project's own synthetic text, and a randomly initialised ``Qwen2ForCausalLM`` or ``LlamaForCausalLM`` saved in the
standard Hugging Face layout. No network, no Hub, and the same arguments always give byte-identical files.

Why the tokenizer splits so finely: with GPT-2-style pre-tokenization an entity is tokenized differently inside the
input sentence and inside the JSON answer (a leading space or quote merges into it), so a tiny model cannot learn to
copy spans (``shared/TINY_MODELS.md``). Here every ASCII word, and every other single character (CJK character,
digit, space, punctuation), is its own piece *before* byte-level BPE, so a span has the same tokens everywhere.

A transformers 5 surprise: for ``model_type == "qwen2"``, ``AutoTokenizer`` ignores ``tokenizer_class`` and always
builds a ``Qwen2Tokenizer``, which re-creates the pre-tokenizer with Qwen's GPT-style regex (plus NFC) from our vocab
and merges. Because every merge was learned inside one of our pieces, no merge can cross a piece boundary, so the
ids are the same; we add NFC ourselves, and ``build_tiny_model`` reloads the saved folder and checks that the
reloaded tokenizer gives the same ids on the whole corpus before it returns.

>>> tok = train_tiny_tokenizer(["Alice Smith 在北京。"])
>>> tok.decode(tok.encode("Alice Smith 在北京。", add_special_tokens=False))
'Alice Smith 在北京。'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - import only for type checkers
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "PAD_TOKEN",
    "IM_START",
    "IM_END",
    "CHATML_TEMPLATE",
    "PRETOKENIZE_PATTERN",
    "ARCHITECTURES",
    "default_corpus",
    "train_tiny_tokenizer",
    "build_tiny_model",
    "tiny_model_path",
    "cache_root",
]

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
# ChatML, as Qwen uses it, but without a default system prompt: the tiny model's prompts stay short.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# An ASCII word stays whole; anything else (CJK, digit, space, punctuation, newline) is one piece per character.
PRETOKENIZE_PATTERN = r"[A-Za-z]+|[\s\S]"
ARCHITECTURES = ("qwen2", "llama")
_JSON_PUNCTUATION = '{}[]:,"\\ \n'
# The NER/RE/EE instruction sentences of SPEC.md §1.4 and the IEPile instruction frame. They are here only so that
# prompts tokenize into few pieces (short sequences train faster); the formats themselves live in ``tasks/``.
_PROMPT_TEXT = (
    "你是专门进行实体抽取的专家。请从input中抽取出符合schema定义的实体，不存在的实体类型返回空列表。请按照JSON字符串的格式回答。",
    "你是专门进行关系抽取的专家。请从input中抽取出符合schema定义的关系三元组，不存在的关系返回空列表。请按照JSON字符串的格式回答。",
    "你是专门进行事件提取的专家。请从input中抽取出符合schema定义的事件，不存在的事件返回空列表，不存在的论元返回NAN，"
    "如果论元存在多值请返回列表。请按照JSON字符串的格式回答。",
    "You are an expert in named entity recognition. Please extract entities that match the schema definition from "
    "the input. Return an empty list if the entity type does not exist. Please respond in the format of a JSON string.",
    "You are an expert in relationship extraction. Please extract relationship triples that match the schema "
    "definition from the input. Return an empty list for relationships that do not exist. Please respond in the "
    "format of a JSON string.",
    "You are an expert in event extraction. Please extract events from the input that conform to the schema "
    "definition. Return an empty list for events that do not exist, and return NAN for arguments that do not exist. "
    "If an argument has multiple values, please return a list. Respond in the format of a JSON string.",
    '{"instruction": "", "schema": [], "input": ""}',
    '{"trigger": true, "arguments": []}',
    "system user assistant",
)


def default_corpus() -> list[str]:
    """The text the tiny tokenizer is always trained on: synthetic IE data, instruction sentences, printable ASCII."""
    from deepke_llm_core.synthetic import corpus_texts

    # Repeated so that BPE (min_frequency=2) learns whole words for them.
    return [*corpus_texts(), *(_PROMPT_TEXT * 4), string.printable, _JSON_PUNCTUATION, '{"": []}', '[{"": ""}]']


def train_tiny_tokenizer(texts: Iterable[str] = (), vocab_size: int = 2048, *,
                         include_default_corpus: bool = True) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with a ChatML chat template.

    Args:
        texts: extra training text (e.g. instruction sentences, your own data); added to the default corpus.
        vocab_size: upper bound on the vocabulary, special tokens included; a small corpus may give fewer.
        include_default_corpus: also train on ``default_corpus()`` (the synthetic data and ASCII).

    Returns:
        A ``PreTrainedTokenizerFast`` with ``eos_token=<|im_end|>``, ``pad_token=<|endoftext|>``, no BOS, and a
        ``chat_template`` so ``apply_chat_template`` works. Text is NFC-normalised, so decoding returns the NFC form.
        Training is deterministic for a given corpus.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [*(default_corpus() if include_default_corpus else []), *texts]
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()  # what Qwen2Tokenizer applies on reload; keeps both identical
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is ever unknown
        min_frequency=2,
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[IM_START],
        model_max_length=2048,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _config(arch: str, tokenizer: Any, hidden_size: int, num_layers: int, num_heads: int,
            intermediate_size: int, num_kv_heads: int | None, max_position_embeddings: int) -> Any:
    from transformers import LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,  # halves the size; small Qwen2 checkpoints do the same
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if arch == "qwen2":
        return Qwen2Config(**common)
    if arch == "llama":
        return LlamaConfig(**common)
    raise ValueError(f"unknown tiny architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")


def build_tiny_model(output_dir: str | os.PathLike, arch: str = "qwen2", hidden_size: int = 64, num_layers: int = 4,
                     num_heads: int = 4, intermediate_size: int = 256, seed: int = 0,
                     tokenizer: PreTrainedTokenizerFast | None = None, *, num_kv_heads: int | None = None,
                     max_position_embeddings: int = 2048) -> Path:
    """Build a random-init causal LM and save it with its tokenizer, like a downloaded checkpoint.

    ``AutoModelForCausalLM.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)`` load the result.
    The same arguments give byte-identical weights: the seed is applied inside ``torch.random.fork_rng`` so the
    caller's global RNG state is left untouched. The generation config stops at ``<|im_end|>`` and pads with
    ``<|endoftext|>``, greedy by default.

    Args:
        output_dir: where to write ``config.json``, ``model.safetensors``, ``generation_config.json`` and the tokenizer.
        arch: ``"qwen2"`` or ``"llama"``.
        hidden_size, num_layers, num_heads, intermediate_size: model shape (the defaults give ~0.3M parameters).
        seed: weight-initialisation seed.
        tokenizer: a tokenizer from ``train_tiny_tokenizer``; trained on the default corpus when omitted.
        num_kv_heads: key/value heads (grouped-query attention); defaults to ``num_heads``.
        max_position_embeddings: longest sequence the model accepts.

    Returns:
        ``Path(output_dir)``.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} must be divisible by num_heads={num_heads}")
    tokenizer = tokenizer if tokenizer is not None else train_tiny_tokenizer()
    config = _config(arch, tokenizer, hidden_size, num_layers, num_heads, intermediate_size, num_kv_heads,
                     max_position_embeddings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        do_sample=False,
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _check_reloaded_tokenizer(out, tokenizer)
    return out


def _check_reloaded_tokenizer(path: Path, tokenizer: Any) -> None:
    """Fail loudly if ``AutoTokenizer`` would tokenize the saved model's text differently from ``tokenizer``."""
    from transformers import AutoTokenizer

    from deepke_llm_core.synthetic import make_records

    reloaded = AutoTokenizer.from_pretrained(path)
    texts = [*default_corpus(), *(r["text"] for lang in ("zh", "en")
                                  for r in make_records("NER", lang, 100, seed=0, split="test"))]
    for text in texts:
        want = tokenizer.encode(text, add_special_tokens=False)
        if reloaded.encode(text, add_special_tokens=False) != want:
            raise RuntimeError(f"{type(reloaded).__name__} loaded from {path} tokenizes {text[:60]!r} differently "
                               "from the trained tokenizer; the tiny recipe needs updating for this transformers")
    if (reloaded.eos_token, reloaded.pad_token) != (tokenizer.eos_token, tokenizer.pad_token):
        raise RuntimeError(f"reloaded special tokens differ: eos/pad {reloaded.eos_token}/{reloaded.pad_token}")


def cache_root() -> Path:
    """``$DEEPKE_LLM_CACHE`` if set (read now, not at import), else ``~/.cache/deepke_llm``."""
    env = os.environ.get("DEEPKE_LLM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "deepke_llm"


def _fingerprint(arch: str, kwargs: dict[str, Any]) -> str:
    """Hash of everything that decides the files: this module's source, arguments, library versions, corpus."""
    import tokenizers
    import transformers

    corpus = hashlib.sha256("\x00".join(default_corpus()).encode("utf-8")).hexdigest()
    recipe = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()  # any edit to this file rebuilds
    key = json.dumps({"recipe": recipe, "arch": arch, "kwargs": kwargs, "corpus": corpus,
                      "transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
                     sort_keys=True)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def tiny_model_path(arch: str = "qwen2", cache_dir: str | os.PathLike | None = None, **kwargs: Any) -> Path:
    """Return the path of a cached tiny model, building it on first use.

    The model is built into a temporary folder next to the cache entry and renamed into place, so concurrent test
    workers never see a half-written model. The entry's name carries a fingerprint of the recipe, the arguments and
    the library versions; a stale entry is simply never looked up again.

    Args:
        arch: ``"qwen2"`` or ``"llama"``.
        cache_dir: the cache root; defaults to ``cache_root()`` (``$DEEPKE_LLM_CACHE`` or ``~/.cache/deepke_llm``).
        **kwargs: forwarded to ``build_tiny_model`` (``hidden_size``, ``num_layers``, ``seed``...), but not
            ``tokenizer``: a cached model always uses the default tokenizer.

    Returns:
        ``<cache root>/tiny/<arch>-<fingerprint>``.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    if "tokenizer" in kwargs:
        raise TypeError("tiny_model_path builds with the default tokenizer; call build_tiny_model for a custom one")
    root = (Path(cache_dir).expanduser() if cache_dir is not None else cache_root()) / "tiny"
    target = root / f"{arch}-{_fingerprint(arch, kwargs)}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache entry should read like any other folder
    try:
        build_tiny_model(staging, arch=arch, **kwargs)
        try:
            os.replace(staging, target)
        except OSError:  # another process won the race and the target exists already
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
