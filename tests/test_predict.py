"""``deepke-llm infer``: batched = one by one, resumable, ordered, template-checked; and ``export`` merging."""

from __future__ import annotations

import json

import pytest

from deepke_llm_core.cli import main
from deepke_llm_core.io import DataError
from deepke_llm_core.predict import InferArguments, run_inference
from deepke_llm_core.predict.writer import OrderedResumableWriter
from deepke_llm_core.train import DataArguments, FinetuningArguments, ModelArguments, TrainingArguments, finetune
from tests.conftest import read_lines, write_lines


@pytest.fixture(scope="module")
def lora_adapter(tiny_qwen, ner_files, tmp_path_factory):
    """A LoRA adapter trained hard enough on the tiny model that its generations differ from the base's."""
    out = tmp_path_factory.mktemp("adapter") / "lora"
    finetune(ModelArguments(model_name_or_path=str(tiny_qwen), model_name="qwen2"),
             DataArguments(train_file=str(ner_files["train"]), cutoff_len=512),
             FinetuningArguments(lora_r=16, lora_target="all"),
             TrainingArguments(output_dir=str(out), max_steps=40, learning_rate=1e-2, per_device_train_batch_size=8,
                               save_strategy="no", overwrite_output_dir=True))
    return out


def infer(model, test_file, out, **kw):
    return run_inference(InferArguments(model_name_or_path=str(model), input_file=str(test_file), output_file=str(out),
                                        max_new_tokens=kw.pop("max_new_tokens", 24), **kw))


def outputs(path):
    return [r["output"] for r in read_lines(path)]


def test_batched_generation_equals_one_by_one(tiny_qwen, lora_adapter, ner_files, tmp_path):
    batched = infer(tiny_qwen, ner_files["test"], tmp_path / "b.json", checkpoint_dir=str(lora_adapter), batch_size=8)
    infer(tiny_qwen, ner_files["test"], tmp_path / "s.json", checkpoint_dir=str(lora_adapter), batch_size=1)
    assert batched["complete"] and outputs(tmp_path / "b.json") == outputs(tmp_path / "s.json")
    records = read_lines(tmp_path / "b.json")
    assert [{k: v for k, v in r.items() if k != "output"} for r in records] == read_lines(ner_files["test"])


def test_adapter_changes_generations_and_export_reproduces_them(tiny_qwen, lora_adapter, ner_files, tmp_path):
    infer(tiny_qwen, ner_files["test"], tmp_path / "base.json")
    infer(tiny_qwen, ner_files["test"], tmp_path / "lora.json", checkpoint_dir=str(lora_adapter))
    assert outputs(tmp_path / "base.json") != outputs(tmp_path / "lora.json")
    merged = tmp_path / "merged"
    assert main(["export", "--model_name_or_path", str(tiny_qwen), "--checkpoint_dir", str(lora_adapter),
                 "--export_dir", str(merged)]) == 0
    assert json.loads((merged / "deepke_llm.json").read_text())["template"] == "auto"
    infer(merged, ner_files["test"], tmp_path / "merged.json")
    assert outputs(tmp_path / "merged.json") == outputs(tmp_path / "lora.json")


def test_resume_after_a_kill_gives_the_uninterrupted_file(tiny_qwen, ner_files, tmp_path):
    infer(tiny_qwen, ner_files["test"], tmp_path / "full.json", batch_size=2)
    expected = (tmp_path / "full.json").read_bytes()
    lines = expected.decode("utf-8").splitlines(keepends=True)
    # killed mid-run: three records written, half a fourth, and one out-of-order batch in the side file
    from deepke_llm_core.predict.writer import record_hash

    (tmp_path / "part.json").write_text("".join(lines[:3]) + lines[3][:40], encoding="utf-8")
    (tmp_path / "part.json.run").write_bytes((tmp_path / "full.json.run").read_bytes())
    inputs = read_lines(ner_files["test"])
    (tmp_path / "part.json.pending").write_text(json.dumps({"index": 6, "hash": record_hash(inputs[6]),
                                                            "output": json.loads(lines[6])["output"]}) + "\n{\"ind",
                                                encoding="utf-8")
    stats = infer(tiny_qwen, ner_files["test"], tmp_path / "part.json", batch_size=2)
    assert stats["already_done"] == 4 and stats["generated"] == len(lines) - 4
    assert (tmp_path / "part.json").read_bytes() == expected
    assert not (tmp_path / "part.json.pending").exists()
    again = infer(tiny_qwen, ner_files["test"], tmp_path / "part.json")
    assert again["generated"] == 0 and (tmp_path / "part.json").read_bytes() == expected


def test_writer_orders_out_of_order_batches(tmp_path):
    records = [{"id": str(i)} for i in range(5)]
    writer = OrderedResumableWriter(str(tmp_path / "o.json"), records)
    writer.add({3: "c", 4: "d"})
    assert (tmp_path / "o.json").read_text() == ""
    writer.add({0: "x", 1: "y"})
    assert [r["output"] for r in read_lines(tmp_path / "o.json")] == ["x", "y"]
    writer.add({2: "z"})
    assert writer.close() and [r["output"] for r in read_lines(tmp_path / "o.json")] == ["x", "y", "z", "c", "d"]


def test_template_mismatch_with_the_adapter_is_refused(tiny_qwen, lora_adapter, ner_files, tmp_path, capsys):
    args = ["infer", "--model_name_or_path", str(tiny_qwen), "--checkpoint_dir", str(lora_adapter),
            "--input_file", str(ner_files["test"]), "--output_file", str(tmp_path / "o.json")]
    assert main([*args, "--template", "alpaca"]) == 2
    assert "was trained with --template auto, not alpaca: pass --template auto" in capsys.readouterr().err


def test_bad_input_files_are_located_errors(tiny_qwen, tmp_path):
    no_instruction = write_lines(tmp_path / "a.json", [{"id": "1", "label": "[]"}])
    with pytest.raises(DataError, match=r"a.json:1: instruction: missing"):
        infer(tiny_qwen, no_instruction, tmp_path / "o.json")
    pretty = tmp_path / "b.json"
    pretty.write_text('[\n  {"instruction": "x"}\n]\n', encoding="utf-8")
    with pytest.raises(DataError, match="pretty-printed JSON document; JSON Lines wants one record per line"):
        infer(tiny_qwen, pretty, tmp_path / "o2.json")


def test_eight_bit_loading_does_not_cast_a_quantized_model(tiny_qwen, ner_files, tmp_path):
    pytest.importorskip("bitsandbytes")
    stats = infer(tiny_qwen, ner_files["test"], tmp_path / "q.json", bits=8, bf16=True, max_new_tokens=4)
    assert stats["complete"] and len(read_lines(tmp_path / "q.json")) == len(read_lines(ner_files["test"]))


def test_shards_merge_back_into_the_single_run_file(tiny_qwen, ner_files, tmp_path):
    infer(tiny_qwen, ner_files["test"], tmp_path / "single.json", max_new_tokens=8)
    for index in range(3):
        stats = infer(tiny_qwen, ner_files["test"], tmp_path / "sharded.json", num_shards=3, shard_index=index, max_new_tokens=8)
        assert stats["output_file"].endswith(f".shard-{index}-of-3")
    assert main(["merge", "--output_file", str(tmp_path / "sharded.json"), "--num_shards", "3",
                 "--input_file", str(ner_files["test"])]) == 0
    assert (tmp_path / "sharded.json").read_bytes() == (tmp_path / "single.json").read_bytes()


def test_merge_refuses_unfinished_shards(tmp_path, capsys):
    (tmp_path / "o.json.shard-0-of-2").write_text("{}\n")
    assert main(["merge", "--output_file", str(tmp_path / "o.json"), "--num_shards", "2"]) == 2
    assert "shards not finished" in capsys.readouterr().err


@pytest.mark.gpu
def test_vllm_engine_matches_the_transformers_engine(tiny_qwen, lora_adapter, ner_files, tmp_path):
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    infer(tiny_qwen, ner_files["test"], tmp_path / "hf.json", checkpoint_dir=str(lora_adapter))
    infer(tiny_qwen, ner_files["test"], tmp_path / "vllm.json", checkpoint_dir=str(lora_adapter), engine="vllm")
    assert outputs(tmp_path / "vllm.json") == outputs(tmp_path / "hf.json")


def test_ground_flag_adds_offsets_to_prediction_records(tiny_qwen, ner_files, tmp_path):
    infer(tiny_qwen, ner_files["test"], tmp_path / "g.json", ground=True, max_new_tokens=8)
    records = read_lines(tmp_path / "g.json")
    assert all(set(r["grounding"]) >= {"spans", "not_found"} for r in records)


def test_a_base_without_a_chat_template_needs_a_legacy_template(tiny_qwen, ner_files, tmp_path, capsys):
    """``--template auto`` on a model whose tokenizer has no chat template is refused with the fix, not rendered."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_qwen, bare)
    config_path = bare / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config))
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    args = ["infer", "--model_name_or_path", str(bare), "--input_file", str(ner_files["test"]),
            "--output_file", str(tmp_path / "out.json")]
    assert main(args) == 2
    assert "has no chat template: pass --template with a legacy name" in capsys.readouterr().err
    assert main(args + ["--template", "alpaca", "--max_new_tokens", "4"]) == 0
