"""UniformMaskDropout: nn.Dropout's distribution from a cheaper mask, swapped into every LoRA layer."""

from __future__ import annotations

import pytest
import torch

from deepke_llm_core.lora_dropout import UniformMaskDropout, use_uniform_mask_dropout


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


def test_every_lora_layer_gets_it(tiny_qwen):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen),
                           LoraConfig(r=4, lora_dropout=0.1, target_modules="all-linear"))
    layers = [m for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)]
    assert use_uniform_mask_dropout(model) == len(layers) > 0
    assert all(type(m.lora_dropout["default"]) is UniformMaskDropout and m.lora_dropout["default"].p == 0.1
               for m in layers)
    assert use_uniform_mask_dropout(model) == 0  # already swapped


def test_finetune_trains_lora_through_it(tiny_qwen, ner_files, tmp_path, monkeypatch):
    from deepke_llm_core.train import DataArguments, FinetuningArguments, ModelArguments, TrainingArguments, finetune

    calls = []
    original = UniformMaskDropout.forward
    monkeypatch.setattr(UniformMaskDropout, "forward", lambda self, x: calls.append(self.p) or original(self, x))
    finetune(ModelArguments(model_name_or_path=str(tiny_qwen)), DataArguments(train_file=str(ner_files["train"])),
             FinetuningArguments(lora_target="all", lora_dropout=0.1),
             TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2,
                               save_strategy="no", overwrite_output_dir=True))
    assert calls and set(calls) == {0.1}
