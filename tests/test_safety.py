"""Nothing lost, nothing silently wrong: no command destroys its input, a model or a user's file, and a rerun
continues only the run it belongs to. Each test is a reproduction from issue 11: it failed before the fix."""

from __future__ import annotations

import json
import shutil

import pytest

from deepke_llm_core.cli import main
from deepke_llm_core.convert import ConvertConfig, convert_file
from deepke_llm_core.io import DataError
from tests.conftest import read_lines, write_lines


def _finetune(tiny_qwen, train_file, out, *extra):
    return main(["finetune", "--model_name_or_path", str(tiny_qwen), "--train_file", str(train_file), "--output_dir",
                 str(out), "--per_device_train_batch_size", "8", "--save_strategy", "steps", "--save_steps", "2",
                 "--logging_steps", "1", "--max_steps", "2", *extra])


def test_finetune_refuses_to_resume_another_run_and_never_writes_into_a_users_folder(tiny_qwen, ner_files, tmp_path, capsys):
    out = tmp_path / "run"
    assert _finetune(tiny_qwen, ner_files["train"], out) == 0
    adapter = (out / "adapter_model.safetensors").read_bytes()
    other = write_lines(tmp_path / "other.json", read_lines(ner_files["train"])[:5])
    assert _finetune(tiny_qwen, other, out, "--max_steps", "4") == 2  # another train file: not a "resume"
    assert "holds a run with other settings or data (data.train_file" in capsys.readouterr().err
    assert _finetune(tiny_qwen, ner_files["train"], out, "--lora_r", "4") == 2  # another rank: a message, no traceback
    assert "method.lora_r: 8 -> 4" in capsys.readouterr().err
    assert (out / "adapter_model.safetensors").read_bytes() == adapter  # nothing overwritten
    assert _finetune(tiny_qwen, ner_files["train"], out, "--max_steps", "4") == 0  # the same run, longer: resumes
    assert "resuming from" in capsys.readouterr().err
    mine = tmp_path / "my-notes"
    mine.mkdir()
    (mine / "README.md").write_text("my notes", encoding="utf-8")
    assert _finetune(tiny_qwen, ner_files["train"], mine) == 2
    assert "non-empty folder that no deepke-llm run created" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["README.md"]


def test_a_checkpoint_cut_off_by_a_kill_is_skipped_for_the_last_whole_one(tiny_qwen, ner_files, tmp_path, capsys):
    out = tmp_path / "run"
    assert _finetune(tiny_qwen, ner_files["train"], out) == 0
    (out / "checkpoint-4").mkdir()  # a kill the moment the folder was created
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-3")
    weights = out / "checkpoint-3" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a kill mid-write
    assert _finetune(tiny_qwen, ner_files["train"], out, "--max_steps", "4") == 0
    err = capsys.readouterr().err
    assert "checkpoint-4 is incomplete" in err and "checkpoint-3 is incomplete" in err
    assert "resuming from" in err and err.split("resuming from")[1].split()[0].endswith("checkpoint-2")
    assert json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4


def _raw(tmp_path):
    src = write_lines(tmp_path / "raw.json", [{"text": "Tom lives in Paris.", "entity": [{"entity": "Tom", "entity_type": "person"}]}])
    schema = tmp_path / "schema.json"
    schema.write_text('["person"]\n[]\n{}\n', encoding="utf-8")
    return src, schema


@pytest.mark.parametrize("target", ["raw.json", "./raw.json", "schema.json"])
def test_convert_never_writes_over_its_inputs(tmp_path, monkeypatch, capsys, target):
    src, schema = _raw(tmp_path)
    before = {p: p.read_bytes() for p in (src, schema)}
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "--src_path", "raw.json", "--schema_path", "schema.json", "--tgt_path", target,
                 "--task", "NER", "--language", "en"]) == 2
    assert "would destroy that input" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before


def test_convert_keeps_the_target_when_the_input_is_empty_and_guards_the_collected_schema(tmp_path, capsys):
    src, schema = _raw(tmp_path)
    target = tmp_path / "out.json"
    convert_file(ConvertConfig(src_path=str(src), tgt_path=str(target), schema_path=str(schema), task="NER", language="en"))
    kept = target.read_bytes()
    empty = tmp_path / "empty.json"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no records"):
        convert_file(ConvertConfig(src_path=str(empty), tgt_path=str(target), schema_path=str(schema), task="NER"))
    assert target.read_bytes() == kept
    # without --schema_path the schema is collected into <target stem>.schema.json: never over a file that is not one
    notes = tmp_path / "notes.schema.json"
    notes.write_text("my notes\n", encoding="utf-8")
    assert main(["convert", "--src_path", str(src), "--tgt_path", str(tmp_path / "notes.json"), "--task", "NER"]) == 2
    assert "is not a schema file" in capsys.readouterr().err and notes.read_text(encoding="utf-8") == "my notes\n"
    assert main(["convert", "--src_path", str(tmp_path), "--tgt_path", str(tmp_path / "x.json")]) == 2
    assert "--src_path is a directory" in capsys.readouterr().err


def test_convert_workers_report_a_bad_record_instead_of_hanging(tmp_path):
    src, schema = _raw(tmp_path)
    lines = [json.dumps({"text": f"Tom {i} lives in Paris.", "entity": [{"entity": "Tom", "entity_type": "person"}]})
             for i in range(40)] + ['{"text": "bad", "entity": "not a list"}']
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"raw.json:41: entity: expected a list"):
        convert_file(ConvertConfig(src_path=str(src), tgt_path=str(tmp_path / "o.json"), schema_path=str(schema),
                                   task="NER", workers=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.json", "schema.json"]  # no part files left


def test_export_and_merge_refuse_what_would_destroy_data(tiny_qwen, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = tmp_path / "base"
    shutil.copytree(tiny_qwen, base)
    lora_adapter = tmp_path / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(lora_adapter)
    weights = (base / "model.safetensors").read_bytes()
    assert main(["export", "--model_name_or_path", str(base), "--checkpoint_dir", str(lora_adapter),
                 "--export_dir", str(base)]) == 2
    assert "would overwrite it" in capsys.readouterr().err and (base / "model.safetensors").read_bytes() == weights
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x", encoding="utf-8")
    assert main(["export", "--model_name_or_path", str(base), "--checkpoint_dir", str(lora_adapter),
                 "--export_dir", str(mine)]) == 2
    assert "did not create" in capsys.readouterr().err
    merged = write_lines(tmp_path / "merged.json", [{"id": "1", "output": "x"}])
    for shards in ("0", "-1"):
        assert main(["merge", "--output_file", str(merged), "--num_shards", shards]) == 2
        assert "--num_shards must be the positive number" in capsys.readouterr().err
    assert read_lines(merged) == [{"id": "1", "output": "x"}]


def test_no_flag_is_matched_by_its_prefix_and_a_mistyped_secret_is_never_echoed(capsys):
    assert main(["serve", "--model_name_or_path", "x", "--api_key", "sk-SECRET-123"]) == 2
    err = capsys.readouterr().err
    assert "unknown setting: --api_key (did you mean --api_key_env?)" in err and "sk-SECRET" not in err
    assert main(["evaluate", "--path1", "x.json", "--out", "o.json"]) == 2  # not silently --out_path
    assert "unknown setting: --out (did you mean --out_path?)" in capsys.readouterr().err


def test_a_missing_model_folder_or_an_unreachable_hub_id_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    # read once at import: an earlier test may have imported it online (then each Hub call waits out its retries)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    test_file = write_lines(tmp_path / "t.json", [{"instruction": "x"}])
    for model in (str(tmp_path / "no-such-model"), "no-such-org/no-such-model"):
        assert main(["infer", "--model_name_or_path", model, "--input_file", str(test_file),
                     "--output_file", str(tmp_path / "o.json")]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and model in err and ("not found" in err or "could not be loaded" in err)
