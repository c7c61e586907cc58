"""cpu_lora: nn.Dropout's distribution from a cheaper mask, and PEFT's LoRA update fused into one addmm, exactly."""

from __future__ import annotations

import pytest
import torch

from deepke_llm_core.cpu_lora import UniformMaskDropout, use_cpu_lora


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_keeps_each_element_with_probability_one_minus_p_scaled_like_dropout(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_000)
    dropout = UniformMaskDropout(p).train()
    y = dropout(x)
    kept = (y != 0).float().mean().item()
    sigma = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(kept - (1 - p)) < 5 * sigma
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
    assert y.mean().item() == pytest.approx(1.0, abs=5 * sigma / (1 - p))
    assert torch.equal(dropout.eval()(x), x)  # evaluation: identity, as nn.Dropout


def test_same_seed_same_mask_and_gradients_flow_through_kept_elements():
    x = torch.randn(64, 32, requires_grad=True)
    torch.manual_seed(1)
    a = UniformMaskDropout(0.2).train()(x)
    torch.manual_seed(1)
    b = UniformMaskDropout(0.2).train()(x)
    assert torch.equal(a, b)
    a.sum().backward()
    assert torch.equal(x.grad != 0, a != 0)


def test_every_lora_layer_gets_both(tiny_qwen):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen),
                           LoraConfig(r=4, lora_dropout=0.1, target_modules="all-linear"))
    layers = [m for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)]
    assert use_cpu_lora(model) == {"dropout": len(layers), "fused": len(layers)} and len(layers) > 0
    assert all(type(m.lora_dropout["default"]) is UniformMaskDropout and m.lora_dropout["default"].p == 0.1
               for m in layers)
    assert use_cpu_lora(model) == {"dropout": 0, "fused": 0}  # already installed


def test_finetune_trains_lora_through_it(tiny_qwen, ner_files, tmp_path, monkeypatch):
    from deepke_llm_core import cpu_lora
    from deepke_llm_core.train import (
        DataArguments,
        FinetuningArguments,
        ModelArguments,
        TrainingArguments,
        finetune,
    )

    calls, installed = [], []
    original = UniformMaskDropout.keep_mask
    monkeypatch.setattr(UniformMaskDropout, "keep_mask", lambda self, x: calls.append(self.p) or original(self, x))
    install = cpu_lora.use_cpu_lora
    monkeypatch.setattr(cpu_lora, "use_cpu_lora", lambda model: installed.append(install(model)) or installed[-1])
    finetune(ModelArguments(model_name_or_path=str(tiny_qwen)), DataArguments(train_file=str(ner_files["train"])),
             FinetuningArguments(lora_target="all", lora_dropout=0.1),
             TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2,
                               save_strategy="no", overwrite_output_dir=True))
    assert calls and set(calls) == {0.1}
    assert len(installed) == 1 and installed[0]["fused"] == installed[0]["dropout"] > 0


def _lora_pair(tiny_qwen, **config):
    """Two copies of one LoRA model (B random, so the update is not zero): PEFT's forward and the fused one, both
    with UniformMaskDropout (so the masks come from the same stream)."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import Linear
    from transformers import AutoModelForCausalLM

    models = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen),
                               LoraConfig(target_modules="all-linear", **config))
        for module in model.modules():
            if type(module) is Linear:
                torch.nn.init.normal_(module.lora_B["default"].weight, std=0.05)
                if not fused and isinstance(module.lora_dropout["default"], torch.nn.Dropout):
                    module.lora_dropout["default"] = UniformMaskDropout(module.lora_dropout["default"].p)
        if fused:
            assert use_cpu_lora(model)["fused"] > 0
        models.append(model.train())
    return models


def _loss_and_grads(model, batch, seed=3):
    torch.manual_seed(seed)
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _batch():
    ids = torch.randint(3, 200, (3, 40), generator=torch.Generator().manual_seed(5))
    labels = ids.clone()
    labels[:, :25] = -100
    return {"input_ids": ids, "labels": labels}


def test_fused_update_is_bit_identical_to_peft_with_power_of_two_scaling(tiny_qwen, monkeypatch):
    from peft.tuners.lora.layer import Linear

    peft_model, fused_model = _lora_pair(tiny_qwen, r=8, lora_alpha=16, lora_dropout=0.5)  # 1 / (1 - p) = 2
    calls = []  # PEFT's own forward: every layer of the PEFT model, none of the fused one
    original = Linear.forward
    monkeypatch.setattr(Linear, "forward", lambda self, *a, **k: calls.append(type(self)) or original(self, *a, **k))
    loss_a, grads_a = _loss_and_grads(peft_model, _batch())
    assert calls and set(calls) == {Linear}
    calls.clear()
    loss_b, grads_b = _loss_and_grads(fused_model, _batch())
    assert calls == []
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 0
    assert all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)


def test_fused_update_equals_peft_within_rounding_otherwise(tiny_qwen):
    peft_model, fused_model = _lora_pair(tiny_qwen, r=8, lora_alpha=12, lora_dropout=0.1)  # scaling 1.5
    loss_a, grads_a = _loss_and_grads(peft_model, _batch())
    loss_b, grads_b = _loss_and_grads(fused_model, _batch())
    assert torch.allclose(loss_a, loss_b, rtol=1e-6)
    assert all(torch.allclose(grads_a[n], grads_b[n], rtol=1e-4, atol=1e-7) for n in grads_a)


def test_fused_layers_fall_back_to_peft_where_they_do_not_apply(tiny_qwen):
    """Disabled or merged adapters and DoRA take PEFT's own path, with PEFT's results; saving is PEFT's."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    batch = {"input_ids": _batch()["input_ids"]}
    peft_model, fused_model = (m.eval() for m in _lora_pair(tiny_qwen, r=8, lora_alpha=16, lora_dropout=0.1))
    with torch.no_grad():
        assert torch.equal(peft_model(**batch).logits, fused_model(**batch).logits)
        with peft_model.disable_adapter(), fused_model.disable_adapter():
            base = peft_model(**batch).logits
            assert torch.equal(base, fused_model(**batch).logits)
        assert not torch.equal(base, fused_model(**batch).logits)  # the adapter is back on
    dora_peft, dora_fused = (m.eval() for m in _lora_pair(tiny_qwen, r=8, lora_alpha=16, lora_dropout=0.0, use_dora=True))
    with torch.no_grad():
        assert torch.equal(dora_peft(**batch).logits, dora_fused(**batch).logits)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        fused_model.save_pretrained(folder)
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_qwen), folder).eval()
        with torch.no_grad():
            assert torch.equal(reloaded(**batch).logits, peft_model(**batch).logits)
    merged = fused_model.merge_and_unload()
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, peft_model(**batch).logits, atol=1e-5)
