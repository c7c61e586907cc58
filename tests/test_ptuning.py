"""P-Tuning adapters at prediction time: the engine generates with the virtual tokens, exactly.

The reference is the plainest computation there is: one full forward pass of the PEFT model per generated
token, no KV cache. Generating with a cache, PEFT 0.21 under transformers 5 re-injected P-Tuning's virtual
tokens at every step (garbage answers) and silently dropped prefix tuning's key/values (the base model's
answers), while training and the eval loss were fine. Comparing logits, not answers, catches both even with
PEFT's untrained initialisation, which rarely changes a greedy answer of the confident tiny IE base.
"""

from __future__ import annotations

import pytest

from deepke_llm_core.tiny_base import tiny_base_path
from deepke_llm_core.train import FinetuningArguments, ModelArguments, peft_config
from tests.conftest import read_lines

MAX_NEW_TOKENS = 12


def logits_without_cache(model, prompt: list[int], continuation: list[int]):
    """The next-token logits before each token of ``continuation``, recomputing the whole sequence every time."""
    import torch

    with torch.inference_mode():
        return torch.stack([model(input_ids=torch.tensor([prompt + continuation[:k]])).logits[0, -1]
                            for k in range(len(continuation))])


@pytest.fixture(scope="module")
def prompts_and_tokenizer(ner_files):
    from transformers import AutoTokenizer

    from deepke_llm_core.encoding import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_path())
    records = read_lines(ner_files["test"])[:2]
    return [encode_prompt(r, tokenizer, "auto", None, 512)[0] for r in records], tokenizer


@pytest.mark.parametrize("ptuning_type", ["prompt_encoder", "prefix"])
def test_hf_engine_generates_with_the_virtual_tokens(prompts_and_tokenizer, ptuning_type):
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from deepke_llm_core.engines import Sampling, TransformersEngine

    prompts, tokenizer = prompts_and_tokenizer
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_base_path())
    method = FinetuningArguments(finetuning_type="p_tuning", ptuning_type=ptuning_type, num_virtual_tokens=8)
    config = peft_config(base, ModelArguments(model_name_or_path=str(tiny_base_path())), method)
    model = get_peft_model(base, config).eval()
    engine = TransformersEngine(model, tokenizer, "auto")
    sampling = Sampling(max_tokens=MAX_NEW_TOKENS)
    assert len({len(p) for p in prompts}) > 1, "prompts of different lengths, so that the batch below is padded"
    alone = [engine.generate_ids([p], sampling)[0].text for p in prompts]
    assert [c.text for c in engine.generate_ids(prompts, sampling)] == alone  # left padding changes nothing
    for prompt, text in zip(prompts, alone):
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **engine._settings(sampling, MAX_NEW_TOKENS),
                                 output_logits=True, return_dict_in_generate=True)
        new = out.sequences[0, len(prompt):].tolist()
        expected = logits_without_cache(model, prompt, new)
        torch.testing.assert_close(torch.stack(out.logits)[:, 0], expected, atol=1e-4, rtol=1e-4)
        with model.disable_adapter():  # the check has teeth: the virtual tokens change the logits
            assert (logits_without_cache(model, prompt, new) - expected).abs().max() > 0.05
        answer = new[:next((k for k, t in enumerate(new) if t in engine.stop_ids), len(new))]
        assert text == tokenizer.decode(answer, skip_special_tokens=True)
