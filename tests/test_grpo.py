"""``deepke-llm finetune --stage grpo``: the TRL wiring on the random tiny model, and learning on the tiny IE base.

The wiring tests use the random tiny Qwen2 (its answers are garbage, the rewards low but real). The learning test
starts from an SFT adapter on the committed tiny IE base (LoRA, 30 steps on 16 "new domain" sentences, as in
test_learning.py) and runs 30 GRPO steps of 2 prompts x 8 answers on the same sentences, one thread. The mean
logged reward of the last five steps minus that of the first five, measured for seeds 0 and 1: -0.019 -> 0.254
(+0.273) and -0.248 -> 0.310 (+0.558). Measured with the same runs: the mean reward of 8 sampled answers to each
of the 16 training prompts, SFT -> GRPO, 0.122 -> 0.255 and 0.023 -> 0.168; held-out F1 (48 other sentences,
greedy) 44.18 -> 48.54 and 45.57 -> 46.89.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from deepke_llm_core.cli import main
from tests.conftest import ROOT

LEARN = {"records": 16, "sft_steps": 30, "grpo_steps": 30, "lr": "3e-3", "num_generations": 8, "batch": 16,
         "max_target_length": 64, "margin": 0.15}

GRPO = ["--stage", "grpo", "--num_generations", "4", "--per_device_train_batch_size", "8", "--max_target_length", "12",
        "--logging_steps", "1", "--learning_rate", "1e-3", "--lora_target", "all"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread samples several times faster than two on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def grpo(tiny_qwen, train_file, out, *extra) -> int:
    return main(["finetune", "--model_name_or_path", str(tiny_qwen), "--train_file", str(train_file),
                 "--output_dir", str(out), *GRPO, *extra])


def history(out) -> list[dict]:
    return [row for row in json.loads((out / "training_history.json").read_text()) if "reward" in row]


def test_grpo_trains_a_lora_adapter_and_logs_every_reward_term(tiny_qwen, ner_files, tmp_path, monkeypatch):
    from deepke_llm_core import cpu_lora
    from deepke_llm_core.viz import plot_rewards

    installed = []  # LoRA on CPU: TRL's LoRA layers get cpu_lora's dropout and fused update, as SFT's do
    install = cpu_lora.use_cpu_lora
    monkeypatch.setattr(cpu_lora, "use_cpu_lora", lambda model: installed.append(install(model)) or installed[-1])
    out = tmp_path / "grpo"
    assert grpo(tiny_qwen, ner_files["train"], out, "--max_steps", "3", "--save_strategy", "no") == 0
    saved = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "deepke_llm.json", "training_history.json",
            "tokenizer.json"} <= saved and "ref" not in saved
    info = json.loads((out / "deepke_llm.json").read_text())
    assert info["stage"] == "grpo" and info["template"] == "auto" and info["finetuning_type"] == "lora"
    assert len(installed) == 1 and installed[0]["fused"] == installed[0]["dropout"] > 0
    rows = history(out)
    assert [row["step"] for row in rows] == [1, 2, 3]
    for row in rows:
        terms = {name: row[f"rewards/{name}_reward/mean"] for name in ("f1", "format", "grounding")}
        assert 0 <= terms["f1"] <= 1 and -1 <= terms["format"] <= 0 and -1 <= terms["grounding"] <= 0
        assert row["reward"] == pytest.approx(terms["f1"] + 0.2 * terms["format"] + 0.5 * terms["grounding"], abs=1e-5)
    figure = plot_rewards(out, tmp_path / "rewards.png")
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["reward (weighted sum)", "f1", "format", "grounding"] and (tmp_path / "rewards.png").stat().st_size > 5000


def test_grpo_continues_an_sft_adapter_with_its_template(tiny_qwen, ner_files, tmp_path, capsys):
    sft = tmp_path / "sft"
    assert main(["finetune", "--model_name_or_path", str(tiny_qwen), "--train_file", str(ner_files["train"]),
                 "--output_dir", str(sft), "--template", "qwen", "--max_steps", "2", "--save_strategy", "no"]) == 0
    out = tmp_path / "grpo"
    common = ["--checkpoint_dir", str(sft), "--max_steps", "1", "--save_strategy", "no", "--beta", "0.04"]
    assert grpo(tiny_qwen, ner_files["train"], out, *common) == 2  # the default template, auto, is not the stored one
    assert "trained with --template qwen, not auto: pass --template qwen" in capsys.readouterr().err
    assert grpo(tiny_qwen, ner_files["train"], out, *common, "--template", "qwen") == 0
    info = json.loads((out / "deepke_llm.json").read_text())
    assert info["template"] == "qwen" and info["continued_from"] == str(sft)
    assert "kl" in history(out)[0] and not (out / "ref").exists()  # beta > 0: TRL's frozen copy of the SFT adapter
    # inference refuses another template for the GRPO adapter too
    predict = ["infer", "--model_name_or_path", str(tiny_qwen), "--checkpoint_dir", str(out), "--max_new_tokens", "4",
               "--input_file", str(ner_files["test"]), "--output_file", str(tmp_path / "pred.json")]
    assert main([*predict, "--template", "llama2"]) == 2
    assert "trained with --template qwen" in capsys.readouterr().err
    assert main(predict) == 0 and json.loads(capsys.readouterr().out)["template"] == "qwen"


def test_full_fine_tuning_saves_a_model(tiny_qwen, ner_files, tmp_path):
    out = tmp_path / "full"
    assert grpo(tiny_qwen, ner_files["train"], out, "--finetuning_type", "full", "--max_steps", "1",
                "--save_strategy", "no") == 0
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()


def test_qlora_trains_an_adapter_on_a_4bit_base(ner_files, tmp_path):
    """On the tiny IE base (the random model's answers all score alike, which leaves no gradient)."""
    pytest.importorskip("bitsandbytes")
    from deepke_llm_core.tiny_base import tiny_base_path

    out = tmp_path / "qlora"
    assert grpo(tiny_base_path(), ner_files["train"], out, "--bits", "4", "--max_steps", "3", "--save_strategy", "no",
                "--max_target_length", "48") == 0
    rows = history(out)
    assert any(row["grad_norm"] > 0 for row in rows) and json.loads((out / "deepke_llm.json").read_text())["bits"] == 4


@pytest.mark.slow
def test_torchrun_and_deepspeed_share_the_prompts(tiny_qwen, ner_files, tmp_path):
    """Two processes over gloo, under DeepSpeed ZeRO-2 where it is installed: 2 x 4 answers per step, one prompt per
    process; 16 prompts make an epoch of 8 steps (one process alone would need 16)."""
    import importlib.util
    import socket

    deepspeed = "ds_zero2.json" if importlib.util.find_spec("deepspeed") else None

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
               "-m", "deepke_llm_core", "finetune", "--model_name_or_path", str(tiny_qwen), "--train_file",
               str(ner_files["train"]), "--output_dir", str(out), *GRPO, "--per_device_train_batch_size", "4",
               "--max_steps", "2", "--save_strategy", "no",
               *(["--deepspeed", str(ROOT / "cookbook" / "configs" / deepspeed)] if deepspeed else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [row["epoch"] for row in history(out)] == [pytest.approx(0.125), pytest.approx(0.25)]
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.slow  # a kill mid-run and a resumed run: the slowest of the GRPO tests
def test_a_killed_run_resumes_and_continues_the_step_count(tiny_qwen, ner_files, tmp_path, capsys):
    out = tmp_path / "resume"
    args = ["finetune", "--model_name_or_path", str(tiny_qwen), "--train_file", str(ner_files["train"]),
            "--output_dir", str(out), *GRPO, "--max_steps", "40", "--save_strategy", "steps", "--save_steps", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "deepke_llm_core", *args], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = out / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 240
    while not saved.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert saved.exists() and not (out / "training_history.json").exists()  # killed mid-run
    # a kill during a save leaves a folder without trainer_state.json (written last): the rerun passes over it
    last = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").exists())
    before = json.loads((out / f"checkpoint-{last}" / "trainer_state.json").read_text())["log_history"]
    assert main([*args[:-6], "--max_steps", str(last + 2), "--save_strategy", "steps", "--save_steps", "2"]) == 0
    assert f"resuming from {out / f'checkpoint-{last}'}" in capsys.readouterr().err
    rows = history(out)
    assert [row["step"] for row in rows] == list(range(1, last + 3))  # one history, continued
    # the first run's steps are the killed run's own (their timings could not be reproduced by training them again)
    assert rows[:last] == [row for row in before if "reward" in row]


def test_prompts_are_the_token_ids_inference_uses(tiny_qwen):
    """TRL would tokenize the prompt text again (adding the tokenizer's BOS to ours, with no budget); we hand it the
    ids ``deepke-llm infer`` generates from, the input text shortened to fit ``max_source_length``."""
    from deepke_llm_core.encoding import encode_prompt
    from deepke_llm_core.grpo import _trainer_class, build_prompts
    from deepke_llm_core.models import load_model_and_tokenizer

    _, tokenizer = load_model_and_tokenizer(str(tiny_qwen))
    instruction = {"instruction": "...", "schema": ["person"], "input": "Tom " * 200}
    records = [{"task": "NER", "instruction": json.dumps(instruction), "output": '{"person": ["Tom"]}'}]
    short = {**records[0], "instruction": json.dumps({**instruction, "input": "Tom"})}
    budget = len(encode_prompt(short, tokenizer, "qwen", None, 10_000)[0]) + 20  # room for a few words of input
    rows, ids_by_text = build_prompts(records, tokenizer, "qwen", None, budget)
    ours, shortened = encode_prompt(records[0], tokenizer, "qwen", None, budget)
    trainer = object.__new__(_trainer_class())
    trainer.prompt_ids = ids_by_text
    assert trainer._tokenize_prompts([rows[0]["prompt"]])[0] == [ours] and shortened and len(ours) <= budget


@pytest.mark.parametrize("extra,message", [
    (["--finetuning_type", "p_tuning"], "P-Tuning"),
    (["--val_set_size", "2"], "no held-out evaluation"),
    (["--num_generations", "3"], "must be divisible by num_generations"),
])
def test_unsupported_settings_are_clear_errors(tiny_qwen, ner_files, tmp_path, capsys, extra, message):
    assert grpo(tiny_qwen, ner_files["train"], tmp_path / "x", "--max_steps", "1", *extra) == 2
    assert message in capsys.readouterr().err


def test_records_without_a_task_are_refused(tiny_qwen, ner_files, tmp_path, capsys):
    """The reward needs each record's task; a file that lost it says so instead of scoring nothing."""
    from tests.conftest import read_lines, write_lines

    records = [{k: v for k, v in r.items() if k != "task"} for r in read_lines(ner_files["train"])]
    bad = write_lines(tmp_path / "no_task.json", records)
    assert grpo(tiny_qwen, bad, tmp_path / "x", "--max_steps", "1") == 2
    assert "needs each record's task" in capsys.readouterr().err


def test_grpo_settings_without_the_grpo_stage_are_refused(tiny_qwen, ner_files, tmp_path, capsys):
    assert main(["finetune", "--model_name_or_path", str(tiny_qwen), "--train_file", str(ner_files["train"]),
                 "--output_dir", str(tmp_path / "x"), "--num_generations", "4"]) == 2
    assert "need --stage grpo" in capsys.readouterr().err


@pytest.mark.slow
def test_grpo_raises_the_reward_of_an_sft_adapter(tmp_path):
    from deepke_llm_core import synthetic
    from deepke_llm_core.quickstart import new_domain_records
    from deepke_llm_core.tiny_base import tiny_base_path
    from tests.test_learning import convert, lora

    base, seed = tiny_base_path(), 0  # one thread (the autouse fixture): the measured numbers are reproduced exactly
    train, _ = new_domain_records(seed, LEARN["records"], 1)  # the quickstart's new domain
    files = convert(tmp_path, {"train": (train, "train")}, synthetic.schema_lines("NER", "en")[0])
    sft = lora(base, files["train"], tmp_path / "sft", LEARN["sft_steps"], LEARN["lr"], seed)
    out = tmp_path / "grpo"
    assert main(["finetune", "--stage", "grpo", "--model_name_or_path", str(base), "--checkpoint_dir", str(sft),
                 "--train_file", str(files["train"]), "--output_dir", str(out), "--max_steps", str(LEARN["grpo_steps"]),
                 "--learning_rate", LEARN["lr"], "--num_generations", str(LEARN["num_generations"]),
                 "--per_device_train_batch_size", str(LEARN["batch"]), "--max_target_length", str(LEARN["max_target_length"]),
                 "--logging_steps", "1", "--save_strategy", "no", "--seed", str(seed)]) == 0
    rewards = [row["reward"] for row in history(out)]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    print(f"GRPO seed {seed}: mean reward of the first five steps {first:.3f}, of the last five {last:.3f}")
    assert len(rewards) == LEARN["grpo_steps"] and last - first >= LEARN["margin"], rewards
