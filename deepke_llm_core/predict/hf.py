"""The transformers engine: batched greedy generation, left-padded, batches grouped by length.

Greedy means greedy: sampling happens only when a temperature above 0 is given. Generation stops at the
tokenizer's EOS and at the template's end-of-turn token (``<|im_end|>``, ``<|eot_id|>``, ...), and only the
new tokens are decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["HFEngine", "length_grouped_batches"]


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


class HFEngine:
    """Generate for prompts given as token ids; one instance per model."""

    def __init__(self, model: Any, tokenizer: Any, template: str, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0, guided: bool = False):
        self.model, self.tokenizer = model, tokenizer
        self.stop_ids = stop_token_ids(tokenizer, model, template)
        self.guide = None
        if guided:
            from .guided import GuidedDecoding

            self.guide = GuidedDecoding(tokenizer, self.stop_ids)
        self.generation = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0,
                           "eos_token_id": self.stop_ids, "pad_token_id": tokenizer.pad_token_id}
        if temperature > 0:
            self.generation.update(temperature=temperature, top_p=top_p)
        else:  # override sampling defaults a model's generation_config may carry
            self.generation.update(temperature=None, top_p=None, top_k=None)
        if is_prompt_learning(model):
            # PEFT (0.21) looks for the KV cache under `past_key_values`, transformers 5 passes it as `cache`: with a
            # cache, P-Tuning re-injects its virtual tokens at every step (garbage) and prefix tuning is silently
            # dropped (the base model's answer). Without a cache both are exact, only slower (tests/test_ptuning.py).
            self.generation["use_cache"] = False

    def generate(self, prompts: list[list[int]], schemas: list[dict] | None = None) -> list[str]:
        """Texts generated for a batch of prompt ids (left padding, so every prompt ends where generation starts).

        With guided decoding, ``schemas`` holds each row's JSON Schema.
        """
        import torch

        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            extra = {"prefix_allowed_tokens_fn": self.guide.allowed_tokens_fn(schemas)} if self.guide and schemas else {}
            out = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                      **self.generation, **extra)
        texts = []
        for row in out[:, width:].tolist():
            for k, token in enumerate(row):
                if token in self.stop_ids:
                    row = row[:k]
                    break
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True))
        return texts

    def run(self, prompts: dict[int, list[int]], batch_size: int, on_batch: Callable[[dict[int, str]], None],
            schemas: dict[int, dict] | None = None) -> None:
        """Generate every prompt, calling ``on_batch({index: text})`` as each batch finishes."""
        for batch in length_grouped_batches({i: len(p) for i, p in prompts.items()}, batch_size):
            rows = [schemas[i] for i in batch] if schemas else None
            on_batch(dict(zip(batch, self.generate([prompts[i] for i in batch], rows))))
