"""Chat formatting: every legacy template against the exact layouts of SPEC.md §3.4, OneKE's prompt (§7.2), auto."""

import json
from types import SimpleNamespace

import pytest

from deepke_llm_core import prompts

Q = json.dumps({"instruction": "You are an expert in named entity recognition.", "schema": ["person", "location"],
                "input": "Alice Smith lives in London."})
R = '{"person": ["Alice Smith"], "location": ["London"]}'
RECORD = {"instruction": Q, "output": R}
# A tokenizer stand-in with a BOS, like a Llama tokenizer: SPEC §3.4 writes <BOS>/<EOS> for the tokenizer's own.
LLAMA_LIKE = SimpleNamespace(bos_token="<s>", eos_token="</s>")

SYS_DEFAULT = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
               "detailed, and polite answers to the user's questions.")
SYS_LLAMA2 = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\nIf a question does not make "
    "any sense, or is not factually coherent, explain why instead of answering something not correct. If you don't "
    "know the answer to a question, please don't share false information.")
SYS_ZH = "You are a helpful assistant. 你是一个乐于助人的助手。"

# name -> (prompt part, target part), transcribed from the table of SPEC.md §3.4.
EXPECTED = {
    "alpaca": ("<s>Below is an instruction that describes a task. Write a response that appropriately completes the "
               "request.\n\n### Instruction:\n" + Q + "\n\n### Response:\n", R + "</s>"),
    "default": ("<s>" + SYS_DEFAULT + "\nHuman: " + Q + "\nAssistant:", R + "</s>"),
    "vicuna": ("<s>" + SYS_DEFAULT + "USER: " + Q + " ASSISTANT:", R + "</s>"),
    "llama2": ("<s>[INST] <<SYS>>\n" + SYS_LLAMA2 + "\n<</SYS>>\n\n" + Q + " [/INST]", R + "</s>"),
    "llama2_zh": ("<s>[INST] <<SYS>>\n" + SYS_ZH + "\n<</SYS>>\n\n" + Q + " [/INST]", R + "</s>"),
    "llama3": ("<s><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\n" + Q + "<|eot_id|><|start_header_id|>assistant"
               "<|end_header_id|>\n\n", R + "<|eot_id|>"),
    "llama3_zh": ("<s><|start_header_id|>system<|end_header_id|>\n\n" + SYS_ZH + "<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\n" + Q + "<|eot_id|><|start_header_id|>assistant"
                  "<|end_header_id|>\n\n", R + "<|eot_id|>"),
    "qwen": ("<s><|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + Q
             + "<|im_end|>\n<|im_start|>assistant\n", R + "<|im_end|>"),
    "baichuan": ("<s><reserved_102>" + Q + "<reserved_103>", R + "</s>"),
    "baichuan2": ("<s><reserved_106>" + Q + "<reserved_107>", R + "</s>"),
    "chatglm2": ("<s>[gMASK]sop\n\n[Round 1]\n\n问：" + Q + "\n\n答：", R + "</s>"),
    "chatglm3": ("<s>[gMASK]sop<|system|>\nYou are ChatGLM3, a large language model trained by Zhipu.AI. Follow the "
                 "user's instructions carefully. Respond using markdown.<|user|>\n" + Q + "<|assistant|>", R + "</s>"),
    "falcon": ("<s>User: " + Q + "\nFalcon:", R + "</s>"),
    "intern": ("<s><|User|>:" + Q + "<eoh>\n<|Bot|>:", R + "</s>"),
    "vanilla": ("<s>" + Q, R + "</s>"),
    "mistral": ("<s>[INST] " + Q + " [/INST]", R + "</s>"),
    "belle": ("<s>Human: " + Q + "\n\nBelle: ", R + "</s>"),
    "aquila": ("<s>A chat between a curious human and an artificial intelligence assistant. The assistant gives "
               "helpful, detailed, and polite answers to the human's questions.###Human: " + Q + "###Assistant:",
               R + "</s>"),
    "openchat": ("<s>GPT4 Correct User: " + Q + "<|end_of_turn|>GPT4 Correct Assistant:", R + "</s>"),
    "starchat": ("<s><|system|>\n<|end|>\n<|user|>\n" + Q + "<|end|>\n<|assistant|>", R + "</s>"),
    "xverse": ("<s>Human: " + Q + "\n\nAssistant: ", R + "</s>"),
    "ziya": ("<s><human>:" + Q + "\n<bot>:", R + "</s>"),
    "bluelm": ("<s>[|Human|]:" + Q + "[|AI|]:", R + "</s>"),
    "openba": ("<s><S>" + Q + "<extra_id_0>", R + "</s>"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_legacy_template_matches_spec_layout(name):
    assert prompts.format_example(RECORD, name, tokenizer=LLAMA_LIKE) == EXPECTED[name]
    assert prompts.format_prompt(RECORD, name, tokenizer=LLAMA_LIKE) == EXPECTED[name][0]


def test_every_spec_template_has_an_expected_layout():
    assert set(EXPECTED) <= set(prompts.TEMPLATES)
    assert set(prompts.TEMPLATES) - set(EXPECTED) == {"oneke"}


def test_no_bos_without_a_tokenizer_bos():
    qwen_like = SimpleNamespace(bos_token=None, eos_token="<|endoftext|>")
    prompt, response = prompts.format_example(RECORD, "qwen", tokenizer=qwen_like)
    assert prompt == EXPECTED["qwen"][0][len("<s>"):]
    assert response == R + "<|im_end|>"  # qwen replaces EOS with its stop word
    no_add = SimpleNamespace(bos_token="<s>", eos_token="</s>", add_bos_token=False)
    assert prompts.format_prompt(RECORD, "vanilla", tokenizer=no_add) == Q


def test_oneke_prompt_exactly_as_onekemd():
    # SPEC §7.2, with the example instruction of OneKE.md.
    instruction = json.dumps({
        "instruction": "You are an expert in named entity recognition. Please extract entities that match the schema "
                       "definition from the input. Return an empty list if the entity type does not exist. Please "
                       "respond in the format of a JSON string.",
        "schema": ["person", "organization", "else", "location"],
        "input": "284 Robert Allenby ( Australia ) 69 71 71 73 , Miguel Angel Martin ( Spain ) 75 70 71 68 "
                 "( Allenby won at first play-off hole )"}, ensure_ascii=False)
    record = {"instruction": instruction}
    onekemd = ('[INST] ' + '<<SYS>>\nYou are a helpful assistant. 你是一个乐于助人的助手。\n<</SYS>>\n\n'
               + instruction + '[/INST]')
    assert prompts.format_prompt(record, "oneke") == onekemd
    # The llama2_zh template (what upstream inference.py uses) differs by exactly one space before [/INST].
    assert prompts.format_prompt(record, "llama2_zh") == onekemd[: -len("[/INST]")] + " [/INST]"


def test_input_column_is_appended_to_the_query():
    record = {"instruction": "Extract.", "input": "Alice Smith", "output": "x"}
    assert prompts.query_of(record) == "Extract.\nAlice Smith"
    assert prompts.format_prompt(record, "vanilla") == "Extract.\nAlice Smith"
    assert prompts.query_of({"instruction": "Extract.", "input": ""}) == "Extract."


def test_system_override_and_empty_system():
    assert prompts.format_prompt(RECORD, "alpaca", system="") == "### Instruction:\n" + Q + "\n\n### Response:\n"
    assert prompts.format_prompt(RECORD, "llama2", system="S") == "[INST] <<SYS>>\nS\n<</SYS>>\n\n" + Q + " [/INST]"


def test_unknown_template_lists_valid_names():
    with pytest.raises(ValueError, match="unknown template 'llama4'") as info:
        prompts.format_prompt(RECORD, "llama4")
    for name in ("auto", "alpaca", "llama2_zh", "qwen", "chatglm3"):
        assert name in str(info.value)


def test_record_errors_are_specific():
    with pytest.raises(ValueError, match="instruction"):
        prompts.format_prompt({"text": "x"}, "vanilla")
    with pytest.raises(ValueError, match="output"):
        prompts.format_example({"instruction": "x"}, "vanilla")


def test_structured_output_is_serialised_without_ascii_escapes():
    _, response = prompts.format_example({"instruction": "x", "output": {"人物": ["张伟"]}}, "vanilla")
    assert response == '{"人物": ["张伟"]}'


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from deepke_llm_core.tiny import train_tiny_tokenizer

    return train_tiny_tokenizer()


def test_auto_uses_the_tokenizer_chat_template(tiny_tokenizer):
    prompt, response = prompts.format_example(RECORD, "auto", tokenizer=tiny_tokenizer)
    assert prompt == "<|im_start|>user\n" + Q + "<|im_end|>\n<|im_start|>assistant\n"
    assert response == R + "<|im_end|>"
    with_system = prompts.format_prompt(RECORD, tokenizer=tiny_tokenizer, system="Be brief.")
    assert with_system == "<|im_start|>system\nBe brief.<|im_end|>\n" + prompt


def test_auto_prompt_tokens_are_a_prefix_of_the_training_tokens(tiny_tokenizer):
    prompt, response = prompts.format_example(RECORD, "auto", tokenizer=tiny_tokenizer)
    p_ids = tiny_tokenizer.encode(prompt, add_special_tokens=False)
    full = tiny_tokenizer.encode(prompt + response, add_special_tokens=False)
    assert full[: len(p_ids)] == p_ids
    assert full[-1] == tiny_tokenizer.eos_token_id


def test_auto_needs_a_chat_template():
    with pytest.raises(ValueError, match="chat_template"):
        prompts.format_prompt(RECORD, "auto")
    with pytest.raises(ValueError, match="chat_template"):
        prompts.format_prompt(RECORD, "auto", tokenizer=SimpleNamespace(chat_template=None))


def test_missing_special_tokens(tiny_tokenizer):
    assert prompts.missing_special_tokens("qwen", tiny_tokenizer) == []
    assert prompts.missing_special_tokens("llama3", tiny_tokenizer) == [
        "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    assert prompts.missing_special_tokens("alpaca", tiny_tokenizer) == []
