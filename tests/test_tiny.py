"""Tiny offline models: tokenizer behaviour, deterministic weights, loading through Auto classes, generation, cache."""

import hashlib
import json
import string

import pytest
import torch

from deepke_llm_core import synthetic, tiny


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.train_tiny_tokenizer()


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory, tokenizer):
    return tiny.build_tiny_model(tmp_path_factory.mktemp("qwen"), tokenizer=tokenizer)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _contains(haystack, needle):
    return any(haystack[i:i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


@pytest.mark.parametrize("text", [
    "张伟于2020年加入华为公司，担任工程师。",
    "Alice Smith joined Google in March 2022.",
    'Mixed 中文 and English: {"人物": ["张伟"], "person": ["Alice Smith"]}\n\ttabs & emoji 🙂 é',
    string.printable,
])
def test_round_trip_chinese_english_and_unseen_characters(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids


def test_entity_spans_tokenize_identically_in_text_and_json_answer(tokenizer):
    checked = 0
    for language in synthetic.LANGUAGES:
        for record in synthetic.make_records("NER", language, 50, seed=5, split="test"):
            text_ids = tokenizer.encode(record["text"], add_special_tokens=False)
            grouped = {}
            for e in record["entity"]:
                grouped.setdefault(e["entity_type"], []).append(e["entity"])
            answer = json.dumps(grouped, ensure_ascii=False)  # the NER output shape of SPEC §1.11
            answer_ids = tokenizer.encode(answer, add_special_tokens=False)
            for entity in record["entity"]:
                span = tokenizer.encode(entity["entity"], add_special_tokens=False)
                assert _contains(text_ids, span), (entity, record["text"])
                assert _contains(answer_ids, span), (entity, answer)
                checked += 1
    assert checked > 100


def test_held_out_names_are_made_of_pieces_that_training_text_uses(tokenizer):
    """A held-out name must not need a token that the training text never produces: that token's embedding would
    stay untrained and the model could not copy it (e.g. "Brook" alone, when every training "Brookton" is one token)."""
    used = {i for text in tiny.default_corpus() for i in tokenizer.encode(text, add_special_tokens=False)}
    for language in synthetic.LANGUAGES:
        for names in synthetic.vocabulary(language, "test").values():
            unused = {name: [tokenizer.decode([i]) for i in tokenizer.encode(name, add_special_tokens=False)
                             if i not in used] for name in names}
            assert not {name: pieces for name, pieces in unused.items() if pieces}


def test_words_are_whole_pieces_and_cjk_digits_are_single(tokenizer):
    pieces = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str('"Alice Smith" 在2019年')
    assert [p for p, _ in pieces] == ['"', "Alice", "Ġ", "Smith", '"', "Ġ", "åľ¨", "2", "0", "1", "9", "å¹´"]
    assert tokenizer.tokenize("Alice") == ["Alice"]  # a frequent training word is one token


def test_special_tokens_and_chat_template(tokenizer):
    im_start, im_end = (tokenizer.convert_tokens_to_ids(t) for t in (tiny.IM_START, tiny.IM_END))
    assert tokenizer.eos_token == tiny.IM_END and tokenizer.pad_token == tiny.PAD_TOKEN
    assert tokenizer.bos_token is None
    ids = tokenizer.encode("<|im_start|>user<|im_end|>", add_special_tokens=False)
    assert ids[0] == im_start and ids[-1] == im_end and im_start not in ids[1:-1]
    assert tokenizer.encode(tiny.IM_END, add_special_tokens=False) == [im_end]
    rendered = tokenizer.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "张伟"}],
        tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n张伟<|im_end|>\n<|im_start|>assistant\n"


def test_tokenizer_training_is_deterministic(tokenizer):
    again = tiny.train_tiny_tokenizer()
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    assert 300 < len(tokenizer) <= 2048
    small = tiny.train_tiny_tokenizer(["only this"], vocab_size=300, include_default_corpus=False)
    assert len(small) <= 300 and small.decode(small.encode("张伟 ok", add_special_tokens=False)) == "张伟 ok"


def test_same_arguments_give_byte_identical_weights(tmp_path, tokenizer, qwen_dir):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    again = tiny.build_tiny_model(tmp_path / "again", tokenizer=tokenizer)
    assert torch.rand(1) == before  # the caller's global RNG is untouched
    for name in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json"):
        assert _sha(again / name) == _sha(qwen_dir / name), name
    other = tiny.build_tiny_model(tmp_path / "seed1", seed=1, tokenizer=tokenizer)
    assert _sha(other / "model.safetensors") != _sha(qwen_dir / "model.safetensors")


def test_model_is_small(qwen_dir):
    size = sum(p.stat().st_size for p in qwen_dir.iterdir())
    assert size < 3 * 1024 * 1024


@pytest.mark.parametrize("arch,cls", [("qwen2", "Qwen2ForCausalLM"), ("llama", "LlamaForCausalLM")])
def test_loads_with_auto_classes_and_generates(tmp_path_factory, tokenizer, arch, cls):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny.build_tiny_model(tmp_path_factory.mktemp(arch), arch=arch, tokenizer=tokenizer, num_layers=2)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == cls and model.config.model_type == arch
    assert tok.eos_token == tiny.IM_END and tok.chat_template == tokenizer.chat_template
    # transformers 5 reloads a qwen2 folder as Qwen2Tokenizer (Qwen's own pre-tokenizer regex); ids must not change.
    for task in synthetic.TASKS:
        for record in synthetic.make_records(task, "en", 20, seed=9, split="test") + synthetic.make_records(
                task, "zh", 20, seed=9, split="test"):
            line = json.dumps(record, ensure_ascii=False)
            assert tok.encode(line, add_special_tokens=False) == tokenizer.encode(line, add_special_tokens=False)
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids(tiny.IM_END)
    assert model.generation_config.pad_token_id == tok.pad_token_id
    tok.padding_side = "left"
    prompts = [tok.apply_chat_template([{"role": "user", "content": c}], tokenize=False, add_generation_prompt=True)
               for c in ("张伟在北京。", "Alice Smith joined Google in 2020.")]
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2 and 0 < out.shape[1] - batch["input_ids"].shape[1] <= 4
    assert isinstance(tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True), str)


def test_cache_builds_once_and_reads_env_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPKE_LLM_CACHE", str(tmp_path / "c"))
    path = tiny.tiny_model_path(num_layers=1)
    assert path.parent == tmp_path / "c" / "tiny" and path.name.startswith("qwen2-")
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert tiny.tiny_model_path(num_layers=1) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    assert tiny.tiny_model_path(num_layers=1, seed=1) != path
    explicit = tiny.tiny_model_path(num_layers=1, cache_dir=tmp_path / "elsewhere")
    assert explicit.parent == tmp_path / "elsewhere" / "tiny" and explicit.name == path.name
    assert not [p for p in (tmp_path / "c" / "tiny").iterdir() if p.name.startswith(".")]  # no staging left over


def test_bad_arguments():
    with pytest.raises(ValueError, match="qwen2, llama"):
        tiny.tiny_model_path(arch="gpt2")
    with pytest.raises(TypeError):
        tiny.tiny_model_path(tokenizer=object())
    with pytest.raises(ValueError, match="divisible"):
        tiny.build_tiny_model("unused", hidden_size=30, num_heads=4)
