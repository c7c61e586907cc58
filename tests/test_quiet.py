"""Quiet by default: a real ``deepke-llm finetune`` prints its own lines, not the libraries' warnings and banners;
``--verbose`` (and ``DEEPKE_LLM_VERBOSE=1``) shows them again."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from deepke_llm_core.quiet import quiet
from deepke_llm_core.tiny_base import tiny_base_path

from .conftest import ROOT

# What the libraries print on a CPU machine without --verbose (transformers 5, DeepSpeed, bitsandbytes).
NOISE = ("FutureWarning", "DeprecationWarning", "UserWarning", "[real_accelerator.py", "kernels-community")


def finetune(ner_files, out, *global_flags, env=None) -> str:
    command = [sys.executable, "-m", "deepke_llm_core", *global_flags, "finetune", "--model_name_or_path",
               str(tiny_base_path()), "--train_file", str(ner_files["train"]), "--output_dir", str(out),
               "--max_steps", "1", "--per_device_train_batch_size", "4", "--save_strategy", "no", "--overwrite_output_dir"]
    clean_env = {k: v for k, v in os.environ.items() if k not in ("DEEPKE_LLM_VERBOSE", "PYTHONWARNINGS")}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**clean_env, "OMP_NUM_THREADS": "1", **(env or {})})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


@pytest.mark.slow
def test_finetune_is_quiet_by_default_and_verbose_on_request(ner_files, tmp_path):
    loud = finetune(ner_files, tmp_path / "loud", "--verbose")
    heard = [marker for marker in NOISE if marker in loud]
    if not heard:
        pytest.skip("the libraries printed no warnings on this machine: nothing to silence")
    assert "train_loss" in loud
    quiet_output = finetune(ner_files, tmp_path / "quiet")
    assert "train_loss" in quiet_output and "[finetune] train: 16 examples" in quiet_output
    assert not [marker for marker in heard if marker in quiet_output], quiet_output[-3000:]
    by_env = finetune(ner_files, tmp_path / "env", env={"DEEPKE_LLM_VERBOSE": "1"})
    assert [marker for marker in heard if marker in by_env] == heard


def test_quiet_hides_library_warnings_but_not_ours(monkeypatch):
    monkeypatch.delenv("DEEPKE_LLM_VERBOSE", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert quiet() is True
        warnings.warn_explicit("a library's deprecation", FutureWarning, "transformers/x.py", 1, module="transformers.x")
        warnings.warn_explicit("ours", UserWarning, "deepke_llm_core/icl/demos.py", 1, module="deepke_llm_core.icl.demos")
    assert [str(w.message) for w in caught] == ["ours"]


def test_verbose_changes_nothing(monkeypatch):
    monkeypatch.setenv("DEEPKE_LLM_VERBOSE", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert quiet() is False
        warnings.warn_explicit("a library's deprecation", FutureWarning, "transformers/x.py", 1, module="transformers.x")
    assert len(caught) == 1
