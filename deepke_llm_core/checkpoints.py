"""A training output folder: whose it is, whether a rerun may continue it, and which checkpoint is whole.

Resume is a contract, not a guess (DESIGN.md §3b). ``finetune`` writes ``deepke_llm.json`` into its output folder
before the first step, with a fingerprint of what defines the run: the base model and adapter, the template, the
method and its settings, the optimisation settings that shape the weights, and the content of the training and
validation files. A rerun continues only a run with the same fingerprint (raising ``max_steps`` or the number of
epochs to train further is allowed); another train file or LoRA rank is refused with the fix, and a non-empty
folder that no run of this project created is never written into, unless ``--overwrite_output_dir`` says so.

A kill can strike while a checkpoint is being written, leaving an empty or truncated ``checkpoint-N``. Every file a
checkpoint needs is checked cheaply (JSON parses, a safetensors header reads, a ``.pt`` zip has its central
directory, which is written last), and the newest *whole* checkpoint is the one resumed; at most one save
interval is lost, as the README promises.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

from .io import DataError

__all__ = ["file_digest", "run_fingerprint", "check_output_dir", "checkpoint_is_complete", "last_complete_checkpoint"]

# Optimisation settings that shape the weights; the length of training (max_steps, epochs) may grow on resume.
_TRAINING_KEYS = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "weight_decay",
                  "lr_scheduler_type", "optim", "seed", "warmup_steps", "max_grad_norm", "bf16", "fp16")


def file_digest(path: str | os.PathLike | None) -> str | None:
    """SHA-256 of a file's bytes (streamed), or ``None`` for no file."""
    if not path:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_fingerprint(model: Any, data: Any, method: Any, training: Any) -> dict[str, Any]:
    """What defines a training run (JSON-serialisable); see the module docstring."""
    from dataclasses import asdict

    return {
        "model": {k: v for k, v in asdict(model).items()},
        "data": {"train_file": file_digest(data.train_file), "valid_file": file_digest(data.valid_file),
                 "val_set_size": data.val_set_size, "max_source_length": data.max_source_length,
                 "cutoff_len": data.cutoff_len},
        "method": asdict(method),
        "training": {k: getattr(training, k) for k in _TRAINING_KEYS if hasattr(training, k)},
    }


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def check_output_dir(output_dir: str, fingerprint: dict[str, Any], overwrite: bool) -> None:
    """Refuse to write into a folder of another run, or into a user's folder; see the module docstring."""
    from .run_info import RUN_INFO_FILE

    folder = Path(output_dir)
    if folder.is_file():
        raise DataError(output_dir, None, None, "--output_dir is a file; expected a folder")
    if overwrite or not folder.is_dir() or not any(folder.iterdir()):
        return
    info_path = folder / RUN_INFO_FILE
    if not info_path.is_file():
        raise DataError(output_dir, None, None, "--output_dir is a non-empty folder that no deepke-llm run created; "
                        "choose a new folder (or pass --overwrite_output_dir to write into it anyway)")
    from .run_info import stored_run_info

    previous = stored_run_info(folder).get("fingerprint")
    if previous is None:
        return  # written by an older version of this project: nothing to compare
    changed = _differences(json.loads(json.dumps(previous, default=str)), json.loads(json.dumps(fingerprint, default=str)))
    if changed:
        raise DataError(output_dir, None, None, "holds a run with other settings or data (" + "; ".join(changed[:6])
                        + "); resuming would mix the two: choose another --output_dir, or pass --overwrite_output_dir "
                        "to start over")


def _whole(path: Path) -> bool:
    try:
        if path.suffix == ".json":
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
        elif path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        elif path.suffix in (".pt", ".bin", ".pth"):
            with zipfile.ZipFile(path) as archive:  # torch.save writes a zip whose directory comes last
                archive.namelist()
        return path.stat().st_size > 0
    except Exception:  # noqa: BLE001 - any failure to read means the file is not whole
        return False


def checkpoint_is_complete(folder: str | os.PathLike) -> bool:
    """A checkpoint with its trainer state and every weight, optimizer and scheduler file readable."""
    folder = Path(folder)
    if not (folder / "trainer_state.json").is_file():
        return False
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors", ".pt", ".bin", ".pth")]
    has_weights = any(p.suffix in (".safetensors", ".bin") for p in files) or (folder / "global_step").exists() or any(
        p.name.startswith("global_step") for p in folder.iterdir())
    return has_weights and all(_whole(p) for p in files)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest whole ``checkpoint-N`` in ``output_dir`` (incomplete ones are reported and skipped)."""
    if not os.path.isdir(output_dir):
        return None
    found = sorted((int(m.group(1)), name) for name in os.listdir(output_dir)
                   if (m := re.fullmatch(r"checkpoint-(\d+)", name)) and os.path.isdir(os.path.join(output_dir, name)))
    for _, name in reversed(found):
        path = os.path.join(output_dir, name)
        if checkpoint_is_complete(path):
            return path
        print(f"[finetune] {path} is incomplete (a run was stopped while saving it); skipping it", file=sys.stderr)
    return None
