"""Model families and loading: base, adapters, merge, guards against wrong bases, quantization, padding."""

import importlib.util
import json
import shutil

import pytest
import torch

from deepke_llm_core import models, tiny

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize("name,family", [
    ("llama", "llama"), ("LLaMA2", "llama"), ("llama3", "llama"), ("alpaca", "llama"), ("vicuna", "llama"),
    ("zhixi", "llama"), ("qwen", "qwen"), ("qwen2", "qwen2"), ("baichuan2", "baichuan"), ("chatglm", "chatglm"),
    ("falcon", "falcon"), ("moss", "moss"), ("cpm-bee", "cpm-bee"), ("openba", "openba"), ("mistral", "mistral"),
    ("custom", "custom"),
])
def test_family_names(name, family):
    assert models.resolve_family(name) == family


def test_default_lora_targets_per_family():
    for name in ("llama", "qwen2", "mistral", "moss", "custom"):
        assert models.lora_targets(name) == LLAMA_TARGETS
    assert models.lora_targets("qwen") == ["c_attn", "attn.c_proj", "w1", "w2", "mlp.c_proj"]
    assert models.lora_targets("baichuan") == ["W_pack", "o_proj", "gate_proj", "down_proj", "up_proj"]
    assert models.lora_targets("falcon") == ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]
    assert models.FAMILIES["chatglm"].auto_class == "AutoModel"
    assert models.FAMILIES["openba"].auto_class == "AutoModelForSeq2SeqLM"


def test_unknown_family_lists_families_unless_targets_given():
    with pytest.raises(ValueError, match="unknown model family 'gemma'") as info:
        models.lora_targets("gemma")
    assert "qwen2" in str(info.value) and "lora_target" in str(info.value)
    assert models.lora_targets("gemma", "q_proj, v_proj") == ["q_proj", "v_proj"]
    assert models.lora_targets("qwen2", ["o_proj"]) == ["o_proj"]
    with pytest.raises(ValueError, match="model_name"):
        models.lora_targets()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny.tiny_model_path(cache_dir=tmp_path_factory.mktemp("cache"), num_layers=2)


@pytest.fixture(scope="module")
def other_base(tmp_path_factory):
    return tiny.tiny_model_path(cache_dir=tmp_path_factory.mktemp("cache2"), num_layers=2, hidden_size=32,
                                num_heads=2)


@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory):
    """A LoRA adapter with non-zero B matrices, so it visibly changes the base's outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=models.lora_targets("qwen2"),
                                                      init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


def _batch(tokenizer, texts):
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def test_base_loads_for_batched_left_padded_generation(base):
    model, tok = models.load_model_and_tokenizer(base)
    assert tok.padding_side == "left" and tok.pad_token is not None
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    texts = ["张伟在北京。", "Alice Smith joined Google in 2020 in London."]
    batch = _batch(tok, texts)
    out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    alone = model.generate(**_batch(tok, texts[:1]), max_new_tokens=5, do_sample=False)
    width = batch["input_ids"].shape[1]
    assert out[0, width:].tolist() == alone[0, alone.shape[1] - 5:].tolist()  # padding does not change the answer


def test_adapter_is_applied_and_merging_keeps_outputs(base, adapter):
    from peft import PeftModel

    plain, tok = models.load_model_and_tokenizer(base)
    with_adapter, _ = models.load_model_and_tokenizer(base, adapter)
    merged, _ = models.load_model_and_tokenizer(base, str(adapter), merge_adapters=True)
    assert isinstance(with_adapter, PeftModel) and not isinstance(merged, PeftModel)
    batch = _batch(tok, ["Alice Smith works for Google."])
    logits = with_adapter(**batch).logits
    assert not torch.allclose(plain(**batch).logits, logits)
    assert torch.allclose(merged(**batch).logits, logits, atol=1e-5)


def test_trainable_adapter_keeps_only_lora_gradients(base, adapter):
    model, _ = models.load_model_and_tokenizer(base, adapter, is_trainable=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_two_adapters_merge_the_first(base, adapter):
    from peft import PeftModel

    once, tok = models.load_model_and_tokenizer(base, adapter, merge_adapters=True)
    twice, _ = models.load_model_and_tokenizer(base, f"{adapter},{adapter}")
    assert isinstance(twice, PeftModel)
    batch = _batch(tok, ["张伟"])
    assert not torch.allclose(once(**batch).logits, twice(**batch).logits)  # the delta was applied twice


def test_adapter_passed_as_base_is_a_clear_error(adapter):
    with pytest.raises(ValueError, match="pass the base model as model_name_or_path and the adapter as "
                                         "checkpoint_dir"):
        models.load_model_and_tokenizer(adapter)


def test_full_model_passed_as_adapter_is_a_clear_error(base, other_base):
    with pytest.raises(ValueError, match="not a PEFT adapter.*model_name_or_path"):
        models.load_model_and_tokenizer(base, other_base)
    with pytest.raises(FileNotFoundError):
        models.load_model_and_tokenizer(base, str(base) + "-missing")


def test_adapter_on_the_wrong_base_is_rejected(other_base, adapter):
    with pytest.raises(ValueError, match="pass the matching base.*hidden_size"):
        models.load_model_and_tokenizer(other_base, adapter)


def test_wrong_base_is_found_by_shapes_when_the_recorded_base_is_unknown(other_base, adapter, tmp_path):
    moved = shutil.copytree(adapter, tmp_path / "adapter")
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "someone/some-model"
    (moved / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="adapter expects 64 .*base has 32"):
        models.load_model_and_tokenizer(other_base, moved)


def test_missing_pad_token_falls_back_to_eos(tmp_path):
    # llama, because AutoTokenizer turns a qwen2 folder into a Qwen2Tokenizer, which always defaults a pad token.
    copy = tiny.build_tiny_model(tmp_path / "nopad", arch="llama", num_layers=1)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.pop("pad_token")
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    model, tok = models.load_model_and_tokenizer(copy)
    assert tok.pad_token == tok.eos_token == tiny.IM_END
    assert model.generation_config.pad_token_id is not None


def test_dtype_and_quantization_arguments(base):
    model, _ = models.load_model_and_tokenizer(base, dtype="bf16")
    assert model.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        models.load_model_and_tokenizer(base, dtype="int3")
    with pytest.raises(ValueError, match="bits must be"):
        models.load_model_and_tokenizer(base, bits=3)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_quantization_without_bitsandbytes_says_how_to_install(base):
    with pytest.raises(ImportError, match="pip install"):
        models.load_model_and_tokenizer(base, bits=4)


def test_quantized_model_refuses_to_merge(base, adapter):
    with pytest.raises(ValueError, match="cannot be merged into a quantized model"):
        models.load_model_and_tokenizer(base, [adapter, adapter], bits=4)
    with pytest.raises(ValueError, match="cannot be merged into a quantized model"):
        models.load_model_and_tokenizer(base, adapter, bits=8, merge_adapters=True)
