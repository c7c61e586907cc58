"""Scale-out on existing engines, on CPU: torchrun with 2 processes over gloo, and DeepSpeed ZeRO-2/3."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # real multi-process runs: part of `make test`, not of `make test-fast`


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp_path, tiny_qwen, ner_files, *extra) -> dict:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               "-m", "deepke_llm_core", "finetune", "--model_name_or_path", str(tiny_qwen),
               "--train_file", str(ner_files["train"]), "--output_dir", str(out), "--max_steps", "4",
               "--per_device_train_batch_size", "2", "--save_strategy", "no", "--logging_steps", "1", *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": out, "history": json.loads((out / "training_history.json").read_text())}


def test_torchrun_two_processes_share_the_data(tmp_path, tiny_qwen, ner_files):
    result = torchrun(tmp_path, tiny_qwen, ner_files)
    steps = [row for row in result["history"] if "loss" in row]
    # 16 examples, 2 processes x 2 per step: an epoch is 4 steps (one process alone would need 8)
    assert steps[0]["epoch"] == pytest.approx(0.25) and steps[-1]["epoch"] == pytest.approx(1.0)
    assert (result["out"] / "adapter_config.json").exists()


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_trains_on_cpu(tmp_path, tiny_qwen, ner_files, stage):
    pytest.importorskip("deepspeed")
    config = ROOT / "cookbook" / "configs" / f"ds_zero{stage}.json"
    result = torchrun(tmp_path, tiny_qwen, ner_files, "--finetuning_type", "full", "--deepspeed", str(config))
    losses = [row["loss"] for row in result["history"] if "loss" in row]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert (result["out"] / "model.safetensors").exists()
