"""Packed and padded training batches are exact: each example's loss and gradients as if it were alone."""

from __future__ import annotations

import json

import pytest
import torch

from deepke_llm_core.packing import (SEGMENT_ATTENTION, packed_attention, restore_attention, training_collator,
                                     use_packing)
from deepke_llm_core.train import DataArguments, FinetuningArguments, ModelArguments, TrainingArguments, finetune


@pytest.fixture(scope="module")
def lora_model(tiny_qwen):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen)
    model.config.use_cache = False  # as Trainer sets it; with a cache transformers builds no packed mask
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
    with torch.no_grad():  # LoRA B starts at zero; make the adapter matter so its gradients are compared too
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return model, AutoTokenizer.from_pretrained(tiny_qwen, padding_side="right")


@pytest.fixture(scope="module")
def examples(lora_model, ner_files):
    from deepke_llm_core.encoding import tokenize_example

    tokenizer = lora_model[1]
    records = [json.loads(line) for line in ner_files["train"].read_text(encoding="utf-8").splitlines()[:6]]
    # three IEPile instructions, three plain ones (the bare input text; any instruction trains): some examples are
    # half as long as others, so the padded batch really pads and a packed row holds two examples
    for record in records[3:]:
        record["instruction"] = json.loads(record["instruction"])["input"]
    rows = [tokenize_example(r, tokenizer, "auto", None, 512)[0] for r in records]
    lengths = sorted(len(r["input_ids"]) for r in rows)
    assert lengths[0] + lengths[1] <= lengths[-1], lengths
    return rows


def _loss_and_grads(model, batch):
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out, grads


def _alone(model, rows):
    """Per example, alone in its batch (no padding, no collator): mean answer loss, answer tokens, summed gradients."""
    losses, counts, total = [], [], None
    for row in rows:
        ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
        out, grads = _loss_and_grads(model, {"input_ids": ids, "labels": labels})
        n = int((labels[0, 1:] != -100).sum())
        losses.append(out.loss.item())
        counts.append(n)
        total = {k: g * n for k, g in grads.items()} if total is None else {k: total[k] + g * n for k, g in grads.items()}
    return losses, counts, total


def _per_example(logits, shift_labels, counts):
    pieces = torch.split(torch.nn.functional.cross_entropy(logits.float(), shift_labels, reduction="none"), counts)
    return [piece.mean().item() for piece in pieces]


@pytest.fixture
def segments(lora_model):
    """The model switched to example-by-example attention for the test (``finetune`` does it for packed batches)."""
    model = lora_model[0]
    before = packed_attention(model)
    assert before == "sdpa" and model.get_base_model().config._attn_implementation == SEGMENT_ATTENTION
    yield
    restore_attention(model, before)
    assert model.get_base_model().config._attn_implementation == "sdpa"


@pytest.mark.parametrize("layout", ["padded", "packed rows", "packed in one row", "packed, example by example"])
def test_a_batch_gives_each_example_its_own_loss_and_gradients(lora_model, examples, layout, request):
    model, tokenizer = lora_model
    if layout == "packed, example by example":
        request.getfixturevalue("segments")
        layout = "packed in one row"
    packing = layout != "padded"
    if packing:  # packed rows hold the longest examples first: score the examples in that order
        examples = sorted(examples, key=lambda r: -len(r["input_ids"]))
    losses, counts, summed = _alone(model, examples)
    batch = training_collator(tokenizer, model, "lora", packing, one_row=layout == "packed in one row")(examples)
    assert ("position_ids" in batch) == packing and "attention_mask" not in batch
    tokens, longest = sum(len(r["input_ids"]) for r in examples), max(len(r["input_ids"]) for r in examples)
    rows = {"padded": len(examples), "packed rows": batch["input_ids"].shape[0], "packed in one row": 1}[layout]
    assert batch["input_ids"].shape[0] == rows
    if layout == "packed rows":
        assert rows < len(examples) and batch["input_ids"].shape[1] == longest
    if layout == "packed in one row":
        assert batch["input_ids"].numel() == tokens
    out, grads = _loss_and_grads(model, batch)
    assert out.logits.shape[0] == sum(counts)  # logits only where an answer token is predicted
    if layout == "packed rows":  # rows are read row by row: find each example's answer positions in the batch
        counts_in_order = _counts_by_row(batch, examples, counts)
        per_example = _per_example(out.logits, batch["shift_labels"], [n for _, n in counts_in_order])
        by_example = dict(zip((i for i, _ in counts_in_order), per_example))
        assert [by_example[i] for i in range(len(examples))] == pytest.approx(losses, abs=2e-5)
    else:
        assert _per_example(out.logits, batch["shift_labels"], counts) == pytest.approx(losses, abs=2e-5)
    assert out.loss.item() == pytest.approx(sum(l * n for l, n in zip(losses, counts)) / sum(counts), abs=2e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad * sum(counts), summed[name], atol=2e-4, rtol=1e-4, msg=name)


def _counts_by_row(batch, examples, counts):
    """``(example index, answer tokens)`` in the order the packed rows hold them (rows are filled first-fit from
    the longest example down, the order of ``examples`` here; matched by the input ids of each segment)."""
    order = []
    for row_ids, row_pos in zip(batch["input_ids"].tolist(), batch["position_ids"].tolist()):
        starts = [k for k, p in enumerate(row_pos) if p == 0] + [len(row_pos)]
        for a, b in zip(starts, starts[1:]):
            match = [i for i, r in enumerate(examples) if r["input_ids"] == row_ids[a:b] and i not in dict(order)]
            if match:  # not a padding tail
                order.append((match[0], counts[match[0]]))
    assert sorted(i for i, _ in order) == list(range(len(examples)))
    return order


def test_without_restarting_position_ids_the_examples_would_see_each_other(lora_model, examples):
    """The check above can fail: the same packed row read as one sequence gives other losses."""
    model, tokenizer = lora_model
    losses, counts, _ = _alone(model, examples)
    batch = training_collator(tokenizer, model, "lora", True, one_row=True)(examples)
    batch.pop("position_ids")
    with torch.no_grad():
        out = model(**batch)
    leaked = _per_example(out.logits, batch["shift_labels"], counts)
    assert abs(leaked[0] - losses[0]) < 2e-5  # the first example sees nothing before it either way
    assert max(abs(a - b) for a, b in zip(leaked[1:], losses[1:])) > 1e-2


def _history(tiny_qwen, ner_files, out, packing):
    metrics = finetune(ModelArguments(model_name_or_path=str(tiny_qwen)),
                       DataArguments(train_file=str(ner_files["train"]), valid_file=str(ner_files["train"]), packing=packing),
                       FinetuningArguments(lora_target="all", lora_dropout=0.0),
                       TrainingArguments(output_dir=str(out), max_steps=12, learning_rate=3e-3, per_device_train_batch_size=8,
                                         logging_steps=1, save_strategy="no", overwrite_output_dir=True))
    history = json.loads((out / "training_history.json").read_text())
    return [row["loss"] for row in history if "loss" in row], metrics


def test_packed_training_follows_the_padded_loss_curve(tiny_qwen, ner_files, tmp_path, capsys):
    packed, packed_metrics = _history(tiny_qwen, ner_files, tmp_path / "packed", "true")
    assert "batches: packed" in capsys.readouterr().err
    padded, padded_metrics = _history(tiny_qwen, ner_files, tmp_path / "padded", "false")
    assert "batches: padded" in capsys.readouterr().err
    assert len(packed) == len(padded) == 12 and padded[-1] < padded[0] - 0.5  # it learns
    assert packed == pytest.approx(padded, abs=1e-3)
    assert packed_metrics["eval_loss"] == pytest.approx(padded_metrics["eval_loss"], abs=1e-3)


def test_example_by_example_attention_builds_no_mask_and_runs_once_per_example(lora_model, examples, segments,
                                                                                monkeypatch):
    import deepke_llm_core.packing as packing_module
    from transformers.masking_utils import AttentionMaskInterface

    model, tokenizer = lora_model
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, *a, **k: calls.append(q.shape[2]) or original(q, *a, **k))
    batch = training_collator(tokenizer, model, "lora", True)(examples)  # one row: the attention decides the layout
    assert batch["input_ids"].shape[0] == 1
    with torch.no_grad():
        model(**batch)
    layers = model.get_base_model().config.num_hidden_layers
    assert sorted(calls) == sorted(len(r["input_ids"]) for r in examples for _ in range(layers))
    assert AttentionMaskInterface()[SEGMENT_ATTENTION](batch_size=1) is None
    assert packing_module.segment_attention.__module__ == "deepke_llm_core.packing"


def test_packing_setting(lora_model):
    model, _ = lora_model
    assert use_packing("auto", model, "lora") is False  # sdpa: exact, but one dense row is slower (packing.py)
    assert use_packing("true", model, "full") is True and use_packing("false", model, "lora") is False
    assert use_packing("auto", model, "p_tuning") is False
    with pytest.raises(ValueError, match="not exact with P-Tuning"):
        use_packing("true", model, "p_tuning")
    with pytest.raises(ValueError, match="auto, true or false"):
        use_packing("yes", model, "lora")
