"""Training batches for SFT: padded or packed (padding-free), and logits only where the loss looks.

Both ways are exact (the same loss and gradients as each example alone, within float rounding) and hand
transformers inputs it already understands; nothing here computes attention or a loss itself.

* **Packed** (``--packing true``): transformers' ``DataCollatorWithFlattening`` puts the examples of a batch in
  one row with no padding, position ids restarting at 0 for each example and the first label of each set to
  -100. transformers 5 derives the attention from those position ids (``masking_utils``:
  ``find_packed_sequence_indices`` gives sdpa and eager a block-diagonal causal mask; flash-attention gets
  ``cu_seqlens``), so no token attends across examples. With flash-attention this is also the fastest layout
  (varlen kernels compute each example's attention alone), so ``--packing auto`` (the default) packs there.
  With sdpa or eager the one row's attention is computed as a dense T x T product, masked: on the tiny CPU
  model that made a batch of 16 take 2.6 s against 0.69 s padded (``bench/train.py`` prints the ratio), so
  ``auto`` does not pack there. Not for P-Tuning: its virtual tokens (or prefix cache) shift every position id.
* **Padded** (otherwise): ``DataCollatorForSeq2Seq``, right-padded, in length-grouped batches. The attention
  mask is dropped: with right padding a causal model never attends from a real token to a pad (pads come
  after every real token), so the mask changes nothing the loss sees, and without it sdpa runs its causal
  kernel, which skips the upper triangle, instead of a masked one. (Not for P-Tuning, whose prompt needs it.)

In both, the batch also carries ``logits_to_keep`` (a boolean mask of the positions whose next token is an
answer token) and ``shift_labels`` (those next tokens): the model projects only those hidden states onto the
vocabulary (``slice_logits_to_keep``, meant for "e.g. packed training"), its ``ForCausalLMLoss`` takes the
labels as already shifted, and ``Trainer`` counts the loss's tokens from ``shift_labels``. Prompt positions
never carry loss, so nothing changes but the work: about 70% of the positions of IE instructions are prompt.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["use_packing", "training_collator"]

VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def use_packing(setting: str, model: Any, finetuning_type: str) -> bool:
    """Resolve ``--packing auto|true|false`` for this model and method (see the module docstring)."""
    value = str(setting).lower()
    if value not in ("auto", "true", "false"):
        raise ValueError(f"--packing must be auto, true or false, got {setting!r}")
    if value == "false":
        return False
    if finetuning_type == "p_tuning":
        if value == "true":
            raise ValueError("--packing true is not exact with P-Tuning (its virtual tokens shift the position ids "
                             "the packed attention is derived from); use --packing false")
        return False
    if value == "true":
        return True
    return getattr(_base(model).config, "_attn_implementation", None) in VARLEN_ATTENTION


def _answer_logits_supported(model: Any, finetuning_type: str) -> bool:
    base = _base(model)
    return (finetuning_type != "p_tuning" and getattr(base, "loss_type", None) == "ForCausalLM"
            and "logits_to_keep" in inspect.signature(base.forward).parameters)


class _TrainingCollator:
    """Wraps a transformers collator: drops the padded batch's attention mask, adds answer-only logits."""

    def __init__(self, collate: Any, drop_attention_mask: bool, answer_logits: bool):
        self.collate = collate
        self.drop_attention_mask = drop_attention_mask
        self.answer_logits = answer_logits

    def __call__(self, features: list[dict]) -> dict:
        import torch

        features = [{k: f[k] for k in ("input_ids", "labels")} for f in features]  # not the sampler's "length"
        batch = self.collate(features)
        if self.drop_attention_mask:
            batch.pop("attention_mask", None)
        if self.answer_logits:
            shifted = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=-100)
            keep = shifted != -100
            batch["logits_to_keep"] = keep
            batch["shift_labels"] = shifted[keep]
        return batch


def training_collator(tokenizer: Any, model: Any, finetuning_type: str, packing: bool) -> _TrainingCollator:
    """The collator ``finetune`` hands to ``Trainer`` (the tokenizer must pad on the right)."""
    if packing:
        from transformers import DataCollatorWithFlattening

        collate: Any = DataCollatorWithFlattening(return_position_ids=True)
    else:
        from transformers import DataCollatorForSeq2Seq

        if tokenizer.padding_side != "right":
            raise ValueError("training batches must be padded on the right")
        collate = DataCollatorForSeq2Seq(tokenizer, padding=True, pad_to_multiple_of=8, label_pad_token_id=-100)
    return _TrainingCollator(collate, drop_attention_mask=not packing and finetuning_type != "p_tuning",
                             answer_logits=_answer_logits_supported(model, finetuning_type))
