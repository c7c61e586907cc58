"""``deepke-llm finetune`` on the random tiny model: every method trains, saves what inference needs, resumes."""

from __future__ import annotations

import json

import pytest

from deepke_llm_core.cli import main
from deepke_llm_core.io import DataError
from deepke_llm_core.train import (DataArguments, FinetuningArguments, ModelArguments, TrainingArguments, finetune,
                                   parse_finetune_args)
from tests.conftest import read_lines, write_lines


def run(tiny_qwen, ner_files, out, method="lora", steps=20, lr=3e-3, **extra):
    model = ModelArguments(model_name_or_path=str(tiny_qwen), model_name="qwen2", **extra.pop("model", {}))
    data = DataArguments(train_file=str(ner_files["train"]), valid_file=str(ner_files["train"]), cutoff_len=512)
    training = TrainingArguments(output_dir=str(out), max_steps=steps, learning_rate=lr, per_device_train_batch_size=8,
                                 save_strategy="no", overwrite_output_dir=True, **{"logging_steps": 5, **extra})
    return finetune(model, data, FinetuningArguments(finetuning_type=method, lora_target="all", num_virtual_tokens=8), training)


@pytest.mark.parametrize("method,margin", [("lora", 0.3), ("full", 1.0), ("p_tuning", 0.05)])
def test_each_method_lowers_the_eval_loss(tiny_qwen, ner_files, tmp_path, method, margin):
    metrics = run(tiny_qwen, ner_files, tmp_path / method, method)
    assert metrics["eval_before_loss"] - metrics["eval_loss"] >= margin, metrics
    saved = {p.name for p in (tmp_path / method).iterdir()}
    assert {"deepke_llm.json", "training_history.json", "tokenizer.json", "tokenizer_config.json"} <= saved
    assert ("adapter_config.json" in saved) == (method != "full")
    info = json.loads((tmp_path / method / "deepke_llm.json").read_text())
    assert info["template"] == "auto" and info["finetuning_type"] == method
    history = json.loads((tmp_path / method / "training_history.json").read_text())
    assert any("loss" in row for row in history)


def test_qlora_trains_a_4bit_base(tiny_qwen, ner_files, tmp_path):
    pytest.importorskip("bitsandbytes")
    # A quantized base is not evaluated before training on CPU (see train.py), so compare with a 1-step run.
    first = run(tiny_qwen, ner_files, tmp_path / "q1", "lora", steps=1, model={"bits": 4})
    trained = run(tiny_qwen, ner_files, tmp_path / "qlora", "lora", model={"bits": 4})
    assert first["eval_loss"] - trained["eval_loss"] >= 0.1, (first, trained)
    assert json.loads((tmp_path / "qlora" / "deepke_llm.json").read_text())["bits"] == 4


def test_resume_continues_from_the_last_checkpoint(tiny_qwen, ner_files, tmp_path, capsys):
    out = tmp_path / "resume"
    args = ["--model_name_or_path", str(tiny_qwen), "--train_file", str(ner_files["train"]), "--output_dir", str(out),
            "--per_device_train_batch_size", "8", "--save_strategy", "steps", "--save_steps", "4", "--logging_steps", "2"]
    assert main(["finetune", *args, "--max_steps", "4"]) == 0  # "killed" after its first save interval
    assert (out / "checkpoint-4").is_dir()
    assert main(["finetune", *args, "--max_steps", "8"]) == 0
    assert "resuming from" in capsys.readouterr().err
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8 and state["log_history"][0]["step"] == 2  # one history, continued


def test_continue_training_from_a_lora_adapter(tiny_qwen, ner_files, tmp_path):
    run(tiny_qwen, ner_files, tmp_path / "first", "lora", steps=10)
    metrics = run(tiny_qwen, ner_files, tmp_path / "second", "lora", steps=10, model={"checkpoint_dir": str(tmp_path / "first")})
    assert metrics["eval_before_loss"] > metrics["eval_loss"]
    assert json.loads((tmp_path / "second" / "deepke_llm.json").read_text())["continued_from"] == str(tmp_path / "first")


def test_yaml_config_gives_the_same_settings_as_flags(tmp_path):
    config = tmp_path / "lora.yaml"
    config.write_text("model_name_or_path: some/model\ntrain_file: t.json\noutput_dir: out\nlora_r: 16\n"
                      "evaluation_strategy: epoch\nbits: 4\n", encoding="utf-8")
    from_yaml = parse_finetune_args([str(config)])
    from_flags = parse_finetune_args(["--model_name_or_path", "some/model", "--train_file", "t.json", "--output_dir", "out",
                                      "--lora_r", "16", "--evaluation_strategy", "epoch", "--bits", "4"])
    assert from_yaml == from_flags and from_yaml[2].lora_r == 16 and from_yaml[0].bits == 4


def test_training_file_without_output_names_the_line(tiny_qwen, ner_files, tmp_path):
    records = read_lines(ner_files["train_as_test"])
    bad = write_lines(tmp_path / "test_as_train.json", records)
    with pytest.raises(DataError, match=r"test_as_train.json:1: output: missing \(is this a test file"):
        finetune(ModelArguments(model_name_or_path=str(tiny_qwen)), DataArguments(train_file=str(bad)),
                 FinetuningArguments(), TrainingArguments(output_dir=str(tmp_path / "o")))


def test_unknown_template_and_adapter_as_base_are_clear_errors(tiny_qwen, ner_files, tmp_path, capsys):
    base = ["--train_file", str(ner_files["train"]), "--max_steps", "1", "--save_strategy", "no"]
    assert main(["finetune", "--model_name_or_path", str(tiny_qwen), "--template", "qwen3", "--output_dir", str(tmp_path / "a"), *base]) == 2
    assert "unknown template 'qwen3'; valid names: auto, alpaca" in capsys.readouterr().err
    run(tiny_qwen, ner_files, tmp_path / "adapter", "lora", steps=1)
    assert main(["finetune", "--model_name_or_path", str(tmp_path / "adapter"), "--output_dir", str(tmp_path / "b"), *base]) == 2
    assert "checkpoint_dir" in capsys.readouterr().err


def test_training_history_is_plotted(tiny_qwen, ner_files, tmp_path):
    from deepke_llm_core.viz import load_history, plot_training_history

    run(tiny_qwen, ner_files, tmp_path / "run", "lora", steps=10, logging_steps=2)
    rows = load_history(tmp_path / "run")
    assert [r["step"] for r in rows if "loss" in r] == [2, 4, 6, 8, 10]
    figure = plot_training_history(tmp_path / "run", tmp_path / "history.png")
    assert (tmp_path / "history.png").stat().st_size > 5000
    assert len(figure.axes[0].lines) == 2  # train loss and eval loss


def test_tokenizing_in_worker_processes_gives_the_same_examples(tiny_qwen, ner_files, capsys):
    """``--preprocessing_num_workers`` (the draft README passes 16) tokenizes with datasets' ``num_proc``."""
    from deepke_llm_core.models import load_model_and_tokenizer
    from deepke_llm_core.train import build_dataset, load_training_records

    _, tokenizer = load_model_and_tokenizer(str(tiny_qwen))
    records = load_training_records(str(ner_files["train"]))
    model = ModelArguments(model_name_or_path=str(tiny_qwen))
    lengths = sorted(row["length"] for row in build_dataset(records, tokenizer, model, DataArguments(train_file="t"), "all").to_list())
    cutoff = lengths[len(lengths) // 2]  # skips the longer half
    built = {}
    for workers in (None, 2):
        data = DataArguments(train_file=str(ner_files["train"]), cutoff_len=cutoff, preprocessing_num_workers=workers)
        built[workers] = build_dataset(records, tokenizer, model, data, "train").to_list()
        built[workers, "report"] = capsys.readouterr().err.strip().splitlines()[-1]
    assert built[None] == built[2] and 0 < len(built[2]) < len(records)  # the same examples skipped
    assert built[None, "report"] == built[2, "report"] and f"longer than cutoff_len={cutoff} skipped" in built[2, "report"]
    assert parse_finetune_args(["--model_name_or_path", "m", "--train_file", "t", "--output_dir", "o",
                                "--preprocessing_num_workers", "16"])[1].preprocessing_num_workers == 16


@pytest.mark.slow  # two full training runs compared
def test_the_same_command_trains_the_same_adapter_bit_for_bit(tiny_qwen, ner_files, tmp_path):
    """Seeded before the adapter is built: two runs of one command give the same losses and the same weights.

    (On one thread; with two, torch's reductions may add in another order and the last digits can differ.)
    """
    import torch
    from safetensors.torch import load_file

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = [run(tiny_qwen, ner_files, tmp_path / f"run{i}", "lora", steps=10, seed=7) for i in range(2)]
    finally:
        torch.set_num_threads(threads)
    losses = [[row["loss"] for row in json.loads((tmp_path / f"run{i}" / "training_history.json").read_text()) if "loss" in row]
              for i in range(2)]
    assert losses[0] == losses[1] and len(losses[0]) == 2, losses
    assert runs[0]["eval_loss"] == runs[1]["eval_loss"]
    first, second = (load_file(tmp_path / f"run{i}" / "adapter_model.safetensors") for i in range(2))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    third = run(tiny_qwen, ner_files, tmp_path / "run2", "lora", steps=10, seed=8)
    assert third["eval_loss"] != runs[0]["eval_loss"]  # the seed is what decides
