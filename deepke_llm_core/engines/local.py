"""The transformers engine: a local model (base + adapter, or merged), batched, left-padded, grouped by length.

Everything a local generation needs lives here once: the device policy (every visible GPU through
``device_map="auto"`` when there is one, else the CPU), the template stored with the adapter
(``run_info``), prompts fitted to ``cutoff_len`` by shortening the IEPile input (``encoding``), greedy decoding
unless a temperature is given (a model's sampling defaults are overridden), stopping at EOS and the template's
end-of-turn token, guided decoding (a JSON Schema, or span-constrained: ``predict.guided``), and the P-Tuning fix:
PEFT (0.21) looks for the KV cache under ``past_key_values`` while transformers 5 passes ``cache``, so with a cache
P-Tuning re-injects its virtual tokens at every step (garbage) and prefix tuning is silently dropped (the base
model's answer); prompt-learning adapters therefore generate without the cache, exact but slower
(``tests/test_ptuning.py``).

The repetition guard: a small model (or any model on an input unlike its training data) can start looping,
``"人物": [], "人物": [], ...`` until ``max_new_tokens``, which costs the whole batch that time and never parses.
A row whose generated tail is a block of 4 to 32 tokens repeated 4 times in a row is stopped there, with
``finish_reason="repetition"`` (``guarded`` counts them). The rule is vLLM's ``RepetitionDetectionParams``
(``min_pattern_size=4, max_pattern_size=32, min_count=4``), which the vLLM engine passes to vLLM, so both engines
stop the same loops; a shorter loop is caught too, since a period-1 to 3 loop also repeats a 4-to-12-token block.
A generation that does not loop is untouched (the guard only stops rows; ``tests/test_repetition.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from .base import Completion, Engine, EngineOptions, Messages, Sampling

__all__ = ["TransformersEngine", "ChatModelEngine", "length_grouped_batches", "stop_token_ids", "is_prompt_learning",
           "use_gpu_default", "path_signature", "REPETITION_RULE", "RepetitionGuard"]

REPETITION_RULE = {"min_pattern_size": 4, "max_pattern_size": 32, "min_count": 4}  # vLLM's RepetitionDetectionParams


class RepetitionGuard:
    """A transformers stopping criterion: stop a row whose generated tail repeats a block (``REPETITION_RULE``).

    ``stopped_at[row]`` is the number of generated tokens when the row was stopped (the caller trims there).
    """

    def __init__(self, prompt_width: int, rule: dict[str, int] = REPETITION_RULE):
        self.width, self.rule = prompt_width, rule
        self.stopped_at: dict[int, int] = {}

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        generated = input_ids[:, self.width:]
        length, count = generated.shape[1], self.rule["min_count"]
        hit = torch.zeros(generated.shape[0], dtype=torch.bool, device=input_ids.device)
        for size in range(self.rule["min_pattern_size"], self.rule["max_pattern_size"] + 1):
            if size * count > length:
                break
            tail = generated[:, -size * count:]
            hit |= (tail[:, size:] == tail[:, :-size]).all(dim=1)  # periodic with period ``size``
        for row in hit.nonzero().flatten().tolist():
            self.stopped_at.setdefault(row, length)
        return hit


def length_grouped_batches(lengths: dict[int, int], batch_size: int) -> Iterator[list[int]]:
    """Indices in batches of similar length, longest first (an out-of-memory shows up at once, not at the end)."""
    order = sorted(lengths, key=lambda i: (-lengths[i], i))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def stop_token_ids(tokenizer: Any, model: Any, template: str) -> list[int]:
    """EOS plus the template's end-of-turn marker and the model's own generation EOS ids."""
    ids: list[int] = []
    candidates = [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    candidates += configured if isinstance(configured, list) else [configured]
    if template != "auto":
        from ..prompts import get_template

        marker = get_template(template).eos
        if marker:
            candidates.append(tokenizer.convert_tokens_to_ids(marker))
    for token_id in candidates:
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id not in ids:
            ids.append(token_id)
    return ids


def is_prompt_learning(model: Any) -> bool:
    """A PEFT model with virtual tokens (P-Tuning, prefix or prompt tuning), as opposed to LoRA or a plain model."""
    return bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False))


def path_signature(path: str | None) -> Any:
    """A model or adapter as a run fingerprint sees it: a local folder by absolute path and the size and
    modification time of its weight files (a retrained adapter at the same path is another model); a Hub id as is."""
    import os

    if not path or not os.path.isdir(path):
        return path
    weights = {}
    for name in sorted(os.listdir(path)):
        if name.endswith((".safetensors", ".bin", ".pt")):
            stat = os.stat(os.path.join(path, name))
            weights[name] = [stat.st_size, int(stat.st_mtime)]
    return {"path": os.path.abspath(path), "weights": weights}


def use_gpu_default(use_gpu: bool | None) -> bool:
    """The device policy: ``None`` means "a GPU when torch sees one"; ``True`` without one is an error."""
    import torch

    available = torch.cuda.is_available()
    if use_gpu and not available:
        raise RuntimeError("use_gpu=True but torch sees no CUDA device; set use_gpu=False (or leave it unset)")
    return available if use_gpu is None else bool(use_gpu)


class TransformersEngine(Engine):
    """Generate with a loaded transformers model; build one with :meth:`load` or from a model you hold."""

    name: ClassVar[str] = "transformers"

    def __init__(self, model: Any, tokenizer: Any, template: str = "auto", system_prompt: str | None = None, *,
                 cutoff_len: int | None = None, batch_size: int = 16, model_id: str | None = None,
                 adapter: str | None = None, guided: bool | str | None = False, repetition_guard: bool = True):
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.system_prompt = system_prompt  # the stored training-time system text; used when a prompt has none
        self.cutoff_len, self.batch_size = cutoff_len, batch_size
        self.model_id = model_id or getattr(getattr(model, "config", None), "_name_or_path", None)
        self.adapter = adapter
        self.stop_ids = stop_token_ids(tokenizer, model, template)
        self.context = int(getattr(getattr(model, "config", None), "max_position_embeddings", 0) or 0) or None
        self._guide: Any = None
        self.shortened = 0  # prompts whose input text had to be cut to fit cutoff_len
        self.repetition_guard, self.guarded = repetition_guard, 0  # generations stopped because they looped
        if guided:
            self._guidance()

    @classmethod
    def load(cls, model: str, checkpoint_dir: str | None = None, **options: Any) -> "TransformersEngine":
        """Load ``model`` (+ adapter) as ``deepke-llm infer`` does; ``options`` are :class:`EngineOptions` fields."""
        return cls.from_options(EngineOptions(model_id=str(model), checkpoint_dir=checkpoint_dir, **options))

    @classmethod
    def from_options(cls, options: EngineOptions) -> "TransformersEngine":
        from ..models import load_model_and_tokenizer
        from ..run_info import require_chat_template, resolve_template, stored_run_info
        from ..train import check_bf16, warn_if_template_markers_unknown

        if not options.model_id:
            raise ValueError(f"engine {cls.name} needs a model: a local folder or a Hugging Face id")
        info = stored_run_info(options.checkpoint_dir, options.model_id)
        template = resolve_template(options.template, info, options.checkpoint_dir or options.model_id)
        system = options.system_prompt if options.system_prompt is not None else info.get("system_prompt")
        check_bf16(options.dtype == "bf16")
        gpu = use_gpu_default(options.use_gpu)
        model, tokenizer = load_model_and_tokenizer(
            options.model_id, options.checkpoint_dir, model_name=options.model_name, bits=options.bits, dtype=options.dtype,
            trust_remote_code=options.trust_remote_code, device_map="auto" if gpu else None)
        warn_if_template_markers_unknown(template, tokenizer)
        require_chat_template(template, tokenizer, options.model_id)
        return cls(model, tokenizer, template, system, cutoff_len=options.cutoff_len, batch_size=options.batch_size,
                   model_id=options.model_id, adapter=options.checkpoint_dir, guided=options.guided)

    def identity(self) -> dict[str, Any]:
        return {"engine": self.name, "model": path_signature(self.model_id), "adapter": path_signature(self.adapter),
                "template": self.template, "system": self.system_prompt}

    def messages(self, query: str) -> Messages:
        from .base import user_messages

        return user_messages(query, self.system_prompt if self.system_prompt is not None else self.default_system)

    def encode(self, messages: Messages) -> list[int]:
        """Prompt ids of chat messages, fitted to ``cutoff_len``."""
        from ..encoding import encode_messages

        ids, shortened = encode_messages(messages, self.tokenizer, self.template, self.cutoff_len)
        self.shortened += shortened
        return ids

    def _guidance(self) -> Any:
        if self._guide is None:
            from ..predict.guided import GuidedDecoding

            output = self.model.get_output_embeddings() if hasattr(self.model, "get_output_embeddings") else None
            vocab = int(output.weight.shape[0]) if output is not None else None  # the logits' width, padding included
            self._guide = GuidedDecoding(self.tokenizer, self.stop_ids, vocab)
        return self._guide

    def _settings(self, sampling: Sampling, budget: int) -> dict[str, Any]:
        settings: dict[str, Any] = {"max_new_tokens": budget, "do_sample": sampling.temperature > 0,
                                    "eos_token_id": self.stop_ids, "pad_token_id": self.tokenizer.pad_token_id}
        if sampling.temperature > 0:
            settings.update(temperature=sampling.temperature, top_p=sampling.top_p)
        else:  # override sampling defaults a model's generation_config may carry
            settings.update(temperature=None, top_p=None, top_k=None)
        if is_prompt_learning(self.model):
            settings["use_cache"] = False
        return settings

    def generate_ids(self, prompts: list[list[int]], sampling: Sampling,
                     schemas: Sequence[dict | None] | None = None) -> list[Completion]:
        """Completions for a batch of prompt ids (left padding, so every prompt ends where generation starts)."""
        import torch

        width = max(len(p) for p in prompts)
        budget = sampling.max_tokens
        if self.context:
            if width >= self.context:
                raise ValueError(f"a prompt is {width} tokens; the model's context is {self.context} "
                                 "(lower cutoff_len, or shorten the text)")
            budget = min(budget, self.context - width)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        device = next(self.model.parameters()).device
        extra = {}
        if schemas and any(s is not None for s in schemas):
            from transformers import LogitsProcessorList

            extra["logits_processor"] = LogitsProcessorList([self._guidance().logits_processor(list(schemas))])
        guard = RepetitionGuard(width) if self.repetition_guard else None
        if guard is not None:
            from transformers import StoppingCriteriaList

            extra["stopping_criteria"] = StoppingCriteriaList([guard])
        with torch.random.fork_rng(devices=[], enabled=sampling.seed is not None), torch.inference_mode():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            out = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                      **self._settings(sampling, budget), **extra)
        completions = []
        for number, (prompt, row) in enumerate(zip(prompts, out[:, width:].tolist())):
            finish = "length"
            for k, token in enumerate(row):
                if token in self.stop_ids:
                    row, finish = row[:k], "stop"
                    break
            if finish == "length" and guard is not None and number in guard.stopped_at:
                row, finish = row[:guard.stopped_at[number]], "repetition"
                self.guarded += 1
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            cut = min((text.find(s) for s in sampling.stop or () if s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
            completions.append(Completion(text, finish, len(prompt), len(row), tuple(row)))
        return completions

    def stream(self, prompts: Sequence[Messages], sampling: Sampling,
               schemas: Sequence[dict | None] | None = None) -> Iterator[dict[int, Completion]]:
        ids = {i: self.encode(m) for i, m in enumerate(prompts)}
        for batch in length_grouped_batches({i: len(p) for i, p in ids.items()}, self.batch_size):
            rows = [schemas[i] for i in batch] if schemas else None
            yield dict(zip(batch, self.generate_ids([ids[i] for i in batch], sampling, rows)))

    def close(self) -> None:
        self.model = self.tokenizer = None


class ChatModelEngine(TransformersEngine):
    """An instruct model used for in-context learning: its own chat template, a default system message."""

    name: ClassVar[str] = "Qwen"
    default_system: ClassVar[str | None] = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

    @classmethod
    def from_options(cls, options: EngineOptions) -> "TransformersEngine":
        if not options.model_id:
            raise ValueError(f"engine {cls.name} needs --model_id: a local folder or a Hugging Face id of a chat model")
        try:
            return super().from_options(EngineOptions(**{**vars(options), "template": "auto"}))
        except ValueError as exc:
            if "has no chat template" in str(exc):
                raise ValueError(f"{options.model_id} has no chat template; ICL needs a chat (instruct) model") from None
            raise
