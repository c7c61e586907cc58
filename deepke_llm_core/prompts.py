"""Chat formatting: an IEPile instruction record -> prompt text (and target text for training).

Two routes, one interface:

* ``template="auto"`` (the default) builds chat messages and lets the tokenizer's own ``apply_chat_template`` render
  them. Chat formatting belongs to the tokenizer; this is right for every current chat model.
* A legacy template name (``alpaca``, ``llama2_zh``, ``qwen``, ...) renders DeepKE's exact single-turn layouts
  (``SPEC.md`` §3.4), for models without a chat template and to reproduce published prompts exactly; ``llama2_zh`` is
  the OneKE prompt. The templates are a table of strings, not classes.

Everything is rendered as *text*, BOS and EOS included, so the caller tokenizes with ``add_special_tokens=False``;
special markers in the text (``<|im_start|>``...) become single tokens when the tokenizer knows them as special tokens.

>>> record = {"instruction": '{"instruction": "...", "schema": ["person"], "input": "Tom"}', "output": "{}"}
>>> format_prompt(record, "mistral")
'[INST] {"instruction": "...", "schema": ["person"], "input": "Tom"} [/INST]'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Template",
    "TEMPLATES",
    "ONEKE_SYSTEM",
    "template_names",
    "get_template",
    "query_of",
    "build_messages",
    "render_prompt",
    "format_prompt",
    "format_example",
    "missing_special_tokens",
]


@dataclass(frozen=True)
class Template:
    """One legacy single-turn layout.

    Attributes:
        prompt: the user turn; ``{query}`` is replaced by the query (and ``{idx}`` by the turn number, 1).
        prefix: the system part; ``{system}`` is replaced. When it renders empty, ``sep`` is dropped too.
        sep: text between the prefix and the prompt.
        system: the default system text.
        eos: the end-of-turn text appended to the response in training; ``None`` means the tokenizer's EOS.
        llama2: Llama-2 layout: the rendered prefix is glued in front of the query *inside* the prompt.
        specials: markers that must be special tokens of the tokenizer for the layout to mean what it says.
    """

    prompt: str
    prefix: str = ""
    sep: str = ""
    system: str = ""
    eos: str | None = None
    llama2: bool = False
    specials: tuple[str, ...] = ()


_DEFAULT_SYS = ("A chat between a curious user and an artificial intelligence assistant. "
                "The assistant gives helpful, detailed, and polite answers to the user's questions.")
_ALPACA_SYS = ("Below is an instruction that describes a task. "
               "Write a response that appropriately completes the request.")
_AQUILA_SYS = ("A chat between a curious human and an artificial intelligence assistant. "
               "The assistant gives helpful, detailed, and polite answers to the human's questions.")
_LLAMA2_SYS = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering something "
    "not correct. If you don't know the answer to a question, please don't share false information."
)
_CHATGLM3_SYS = ("You are ChatGLM3, a large language model trained by Zhipu.AI. "
                 "Follow the user's instructions carefully. Respond using markdown.")
ONEKE_SYSTEM = "You are a helpful assistant. 你是一个乐于助人的助手。"
_HELPFUL = "You are a helpful assistant."
_LLAMA2_PREFIX = "<<SYS>>\n{system}\n<</SYS>>\n\n"
_LLAMA3_PREFIX = "<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
_LLAMA3_PROMPT = ("<|start_header_id|>user<|end_header_id|>\n\n{query}<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n")
_LLAMA3_SPECIALS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")

# Upstream names whose system text SPEC.md does not record (deepseek, yayi, zephyr) are left out rather than guessed.
TEMPLATES: Mapping[str, Template] = {
    "alpaca": Template("### Instruction:\n{query}\n\n### Response:\n", "{system}", "\n\n", _ALPACA_SYS),
    "aquila": Template("Human: {query}###Assistant:", "{system}", "###", _AQUILA_SYS),
    "baichuan": Template("<reserved_102>{query}<reserved_103>", specials=("<reserved_102>", "<reserved_103>")),
    "baichuan2": Template("<reserved_106>{query}<reserved_107>", specials=("<reserved_106>", "<reserved_107>")),
    "belle": Template("Human: {query}\n\nBelle: "),
    "bluelm": Template("[|Human|]:{query}[|AI|]:", specials=("[|Human|]:", "[|AI|]:")),
    "chatglm2": Template("[Round {idx}]\n\n问：{query}\n\n答：", "[gMASK]sop", "\n\n", specials=("[gMASK]", "sop")),
    "chatglm3": Template("<|user|>\n{query}<|assistant|>", "[gMASK]sop<|system|>\n{system}", "", _CHATGLM3_SYS,
                         specials=("[gMASK]", "sop", "<|system|>", "<|user|>", "<|assistant|>")),
    "default": Template("Human: {query}\nAssistant:", "{system}", "\n", _DEFAULT_SYS),
    "falcon": Template("User: {query}\nFalcon:"),
    "intern": Template("<|User|>:{query}<eoh>\n<|Bot|>:", sep="<eoa>\n", specials=("<eoh>", "<eoa>")),
    "llama2": Template("[INST] {query} [/INST]", _LLAMA2_PREFIX, "", _LLAMA2_SYS, llama2=True),
    "llama2_zh": Template("[INST] {query} [/INST]", _LLAMA2_PREFIX, "", ONEKE_SYSTEM, llama2=True),
    "llama3": Template(_LLAMA3_PROMPT, _LLAMA3_PREFIX, "", _HELPFUL, "<|eot_id|>", specials=_LLAMA3_SPECIALS),
    "llama3_zh": Template(_LLAMA3_PROMPT, _LLAMA3_PREFIX, "", ONEKE_SYSTEM, "<|eot_id|>", specials=_LLAMA3_SPECIALS),
    "mistral": Template("[INST] {query} [/INST]", sep=" "),
    "openba": Template("<S>{query}<extra_id_0>", specials=("<S>", "<extra_id_0>")),
    "openchat": Template("GPT4 Correct User: {query}<|end_of_turn|>GPT4 Correct Assistant:",
                         specials=("<|end_of_turn|>",)),
    "qwen": Template("<|im_start|>user\n{query}<|im_end|>\n<|im_start|>assistant\n",
                     "<|im_start|>system\n{system}<|im_end|>", "\n", _HELPFUL, "<|im_end|>",
                     specials=("<|im_start|>", "<|im_end|>")),
    "starchat": Template("<|user|>\n{query}<|end|>\n<|assistant|>", "<|system|>\n{system}", "<|end|>\n",
                         specials=("<|system|>", "<|user|>", "<|end|>", "<|assistant|>")),
    "vanilla": Template("{query}"),
    "vicuna": Template("USER: {query} ASSISTANT:", "{system}", "", _DEFAULT_SYS),
    "xverse": Template("Human: {query}\n\nAssistant: "),
    "ziya": Template("<human>:{query}\n<bot>:", sep="\n", specials=("<human>", "<bot>")),
    # Not an upstream name: the prompt OneKE.md builds by hand, with no space before [/INST] (SPEC §3.4 caveats).
    "oneke": Template("[INST] {query}[/INST]", _LLAMA2_PREFIX, "", ONEKE_SYSTEM, llama2=True),
}


def template_names() -> list[str]:
    """Every accepted template name: ``auto`` plus the legacy table, sorted."""
    return ["auto", *sorted(TEMPLATES)]


def get_template(name: str) -> Template:
    """Look up a legacy template; the error lists the valid names."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown template {name!r}; valid names: {', '.join(template_names())}") from None


def query_of(record: Mapping[str, Any]) -> str:
    """The query text of a record: its ``instruction``, plus ``"\\n" + input`` when an ``input`` is non-empty."""
    if not isinstance(record.get("instruction"), str) or not record["instruction"]:
        raise ValueError(f"record has no non-empty string 'instruction' field (keys: {sorted(record)})")
    extra = record.get("input")
    return record["instruction"] + ("\n" + extra if isinstance(extra, str) and extra else "")


def build_messages(query: str, system: str | None = None, response: str | None = None) -> list[dict[str, str]]:
    """Chat messages for one turn: an optional system message, the user query, an optional assistant response."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": query})
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages


def _bos(tokenizer: Any) -> str:
    """The BOS text a legacy template starts with: the tokenizer's BOS unless it has none or does not add one."""
    if tokenizer is None or not getattr(tokenizer, "bos_token", None):
        return ""
    return "" if getattr(tokenizer, "add_bos_token", True) is False else tokenizer.bos_token


def _auto_prompt(query: str, tokenizer: Any, system: str | None) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("template='auto' needs a tokenizer with a chat_template; pass a legacy template name "
                         f"instead (one of {', '.join(sorted(TEMPLATES))})")
    return tokenizer.apply_chat_template(build_messages(query, system), tokenize=False, add_generation_prompt=True)


def render_prompt(query: str, template: str = "auto", *, tokenizer: Any = None, system: str | None = None) -> str:
    """Render the prompt part (everything the model reads before it answers).

    Args:
        query: the user text (see ``query_of``).
        template: ``"auto"`` or a legacy name from ``template_names()``.
        tokenizer: needed for ``auto``; for legacy templates it supplies the BOS text (omit it to render none).
        system: the system text. ``None`` uses the template's default (none for ``auto``). Unlike upstream, an
            explicit ``""`` is honoured and drops the system part where the layout allows.
    """
    if template == "auto":
        return _auto_prompt(query, tokenizer, system)
    spec = get_template(template)
    prefix = spec.prefix.replace("{system}", spec.system if system is None else system, 1)
    if spec.llama2:
        return _bos(tokenizer) + spec.prompt.replace("{query}", prefix + query, 1)
    prompt = spec.prompt.replace("{idx}", "1", 1).replace("{query}", query, 1)
    return _bos(tokenizer) + (prefix + spec.sep if prefix else "") + prompt


def format_prompt(record: Mapping[str, Any], template: str = "auto", *, tokenizer: Any = None,
                  system: str | None = None) -> str:
    """The inference prompt for an instruction record (its ``output``, if any, is ignored)."""
    return render_prompt(query_of(record), template, tokenizer=tokenizer, system=system)


def _response_text(record: Mapping[str, Any]) -> str:
    output = record.get("output")
    if output is None:
        raise ValueError(f"a training record needs an 'output' field (keys: {sorted(record)})")
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def format_example(record: Mapping[str, Any], template: str = "auto", *, tokenizer: Any = None,
                   system: str | None = None) -> tuple[str, str]:
    """(prompt, response) for training: the loss goes on the response, which ends with the end-of-turn token.

    For a legacy template the response is ``output`` + the template's EOS (``<|im_end|>`` for qwen, ``<|eot_id|>``
    for llama3, else the tokenizer's EOS). For ``auto`` it is whatever the chat template renders after the
    generation prompt for the assistant turn, cut right after the first EOS that follows the answer.
    ``prompt + response`` is the full training text; tokenize both with ``add_special_tokens=False``.
    """
    query, answer = query_of(record), _response_text(record)
    prompt = render_prompt(query, template, tokenizer=tokenizer, system=system)
    eos = getattr(tokenizer, "eos_token", None) or ""
    if template != "auto":
        spec = get_template(template)
        return prompt, answer + (spec.eos if spec.eos is not None else eos)
    full = tokenizer.apply_chat_template(build_messages(query, system, answer), tokenize=False)
    if not full.startswith(prompt):  # a template that renders history differently once an answer exists
        return prompt, answer + eos
    response = full[len(prompt):]
    if eos and response.startswith(answer) and (end := response.find(eos, len(answer))) >= 0:
        response = response[: end + len(eos)]
    return prompt, response


def missing_special_tokens(template: str, tokenizer: Any) -> list[str]:
    """Markers of a legacy template that the tokenizer would split as plain text (a sign of the wrong template)."""
    known = set(getattr(tokenizer, "all_special_tokens", ())) | set(getattr(tokenizer, "get_added_vocab", dict)())
    spec = get_template(template)
    needed = [*spec.specials, *([spec.eos] if spec.eos else [])]
    return [m for m in dict.fromkeys(needed) if m not in known]
