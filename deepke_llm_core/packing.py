"""Training batches for SFT: padded or packed (padding-free), and logits only where the loss looks.

Both ways are exact (the same loss and gradients as each example alone, within float rounding) and hand
transformers inputs it already understands; nothing here computes a loss, and attention only through torch's sdpa.
``--packing auto`` (the default) packs with flash-attention and pads in length-grouped batches otherwise: on
sdpa, grouped batches have little padding left to remove, and padding measured 2% faster than one packed row
(0.327 vs 0.335 CPU s per step at ``bench/train.py``'s settings).

* **Packed** (``--packing true``): no padding; position ids restart at 0 for each example and each example's
  first label is -100, as transformers' ``DataCollatorWithFlattening`` lays them out, and the whole batch is one
  row. With flash-attention its varlen kernels compute each example's attention alone. With sdpa or eager the
  model is switched, for training, to ``segment_attention``: registered with transformers' ``AttentionInterface``
  (its extension point for attention functions), it runs torch's causal sdpa on each example's slice of the row,
  and its registered mask function builds no mask at all. (transformers' own sdpa path for packed position ids
  builds a dense block-diagonal T x T mask and computes the row's attention as one masked product; skipping that
  mask is about 5% of a LoRA step of the tiny model on CPU, ``bench/train.py``.) Not for P-Tuning: its virtual
  tokens (or prefix cache) shift every position id. Other attention implementations get rows no longer than the
  batch's longest example (``_PackedRows``) and transformers' packed mask.
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

__all__ = ["use_packing", "training_collator", "packed_attention", "restore_attention", "segment_attention",
           "SEGMENT_ATTENTION"]

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


SEGMENT_ATTENTION = "deepke_llm_segments"
_MASKED_DENSE = ("sdpa", "eager")


def segment_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                      scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """Attention of a packed row, example by example: torch's causal sdpa on each example's slice.

    The examples are where ``position_ids`` restart at 0 (``DataCollatorWithFlattening``'s layout). Anything else
    (a mask, several rows, no position ids) goes to transformers' own sdpa function unchanged.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    if position_ids is None or attention_mask is not None or query.shape[0] != 1 or query.shape[2] == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    bounds = (starts if starts and starts[0] == 0 else [0, *starts]) + [query.shape[2]]
    lengths = [b - a for a, b in zip(bounds, bounds[1:])]
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    dropout = dropout if module.training else 0.0
    # split (not slicing): its backward is one concatenation, where slices' would each fill a zero tensor of the row
    parts = [torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling,
                                                              enable_gqa=gqa)
             for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def _no_mask(*args: Any, **kwargs: Any) -> None:
    """The mask function registered with ``segment_attention``: it needs none (each slice is causal by itself)."""
    return None


def packed_attention(model: Any) -> str | None:
    """Prepare ``model`` for packed batches; the attention implementation to restore after training, if changed.

    sdpa and eager are switched to ``segment_attention``; flash-attention (varlen) is left as it is.
    """
    base = _base(model)
    current = getattr(base.config, "_attn_implementation", None)
    if current not in _MASKED_DENSE:
        return None
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(SEGMENT_ATTENTION, segment_attention)
    AttentionMaskInterface.register(SEGMENT_ATTENTION, _no_mask)
    base.set_attn_implementation(SEGMENT_ATTENTION)
    return current


def restore_attention(model: Any, implementation: str) -> None:
    """Undo :func:`packed_attention`: the saved model, and the caller's, use the attention they came with."""
    _base(model).set_attn_implementation(implementation)


def _one_row(model: Any) -> bool:
    return getattr(_base(model).config, "_attn_implementation", None) in (*VARLEN_ATTENTION, SEGMENT_ATTENTION)


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


class _PackedRows:
    """Packed rows no longer than the batch's longest example, for attention without varlen kernels.

    sdpa and eager compute a packed row's attention as one dense, masked T x T product, so one row holding the
    whole batch costs (sum of the lengths) squared, several times what padding costs; rows capped at the longest
    example cost about what padding to it costs, without the padding. Examples go into rows first-fit, longest
    first; each row is flattened by ``DataCollatorWithFlattening``; a row's tail is padding with no labels whose
    position ids start again at 0, so the mask makes it a sequence of its own. (TRL's best-fit-decreasing
    ``pack_dataset`` packs a whole dataset into rows, which changes what each step trains on; a step here keeps
    its batch, so packed and padded training see the same examples in the same steps.)
    """

    def __init__(self, pad_id: int | None):
        from transformers import DataCollatorWithFlattening

        self.flatten = DataCollatorWithFlattening(return_position_ids=True)
        self.pad_id = 0 if pad_id is None else pad_id  # a tail's ids are never attended to nor scored

    def __call__(self, features: list[dict]) -> dict:
        import torch

        capacity = max(len(f["input_ids"]) for f in features)
        rows: list[list[dict]] = []
        room: list[int] = []
        for feature in sorted(features, key=lambda f: -len(f["input_ids"])):
            n = len(feature["input_ids"])
            i = next((i for i, free in enumerate(room) if free >= n), None)
            if i is None:
                rows.append([feature])
                room.append(capacity - n)
            else:
                rows[i].append(feature)
                room[i] -= n
        out: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": []}
        for row in rows:
            flat = self.flatten(row)
            tail = capacity - flat["input_ids"].shape[1]
            out["input_ids"].append(torch.cat([flat["input_ids"][0], torch.full((tail,), self.pad_id)]))
            out["labels"].append(torch.cat([flat["labels"][0], torch.full((tail,), -100)]))
            out["position_ids"].append(torch.cat([flat["position_ids"][0], torch.arange(tail)]))
        return {key: torch.stack(value) for key, value in out.items()}


def training_collator(tokenizer: Any, model: Any, finetuning_type: str, packing: bool,
                      one_row: bool | None = None) -> _TrainingCollator:
    """The collator ``finetune`` hands to ``Trainer`` (the tokenizer must pad on the right).

    Packed batches are one row with flash-attention (varlen kernels) or ``segment_attention`` (after
    ``packed_attention``), rows capped at the longest example otherwise (``_PackedRows``); ``one_row`` overrides
    that choice.
    """
    if packing:
        if one_row is None:
            one_row = _one_row(model)
        if one_row:
            from transformers import DataCollatorWithFlattening

            collate: Any = DataCollatorWithFlattening(return_position_ids=True)
        else:
            collate = _PackedRows(tokenizer.pad_token_id)
    else:
        from transformers import DataCollatorForSeq2Seq

        if tokenizer.padding_side != "right":
            raise ValueError("training batches must be padded on the right")
        collate = DataCollatorForSeq2Seq(tokenizer, padding=True, pad_to_multiple_of=8, label_pad_token_id=-100)
    return _TrainingCollator(collate, drop_attention_mask=not packing and finetuning_type != "p_tuning",
                             answer_logits=_answer_logits_supported(model, finetuning_type))
