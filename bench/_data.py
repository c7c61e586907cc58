"""Shared benchmark input: a mix of IE instruction records of realistic, varied lengths (NER, RE, EE; zh, en)."""

from __future__ import annotations

import random
from pathlib import Path


def mixed_instruction_file(root: Path, per_task: int = 64, seed: int = 0, split: str = "train") -> Path:
    """Synthetic records of three tasks and two languages converted with the project's converter, shuffled."""
    from deepke_llm_core import synthetic
    from deepke_llm_core.convert import ConvertConfig, convert_file
    from deepke_llm_core.io import write_jsonl

    lines: list[str] = []
    for task, split_num in (("NER", 6), ("RE", 4), ("EE", 4)):
        for language in ("zh", "en"):
            folder = root / f"{task}-{language}"
            folder.mkdir(parents=True, exist_ok=True)
            write_jsonl(folder / "raw.json", synthetic.make_records(task, language, per_task, seed=seed))
            (folder / "schema.json").write_text(synthetic.schema_text(task, language), encoding="utf-8")
            out = folder / f"{split}.json"
            convert_file(ConvertConfig(src_path=str(folder / "raw.json"), tgt_path=str(out), schema_path=str(folder / "schema.json"),
                                       task=task, language=language, split=split, split_num=split_num, progress=False))
            lines += out.read_text(encoding="utf-8").splitlines()
    random.Random(seed).shuffle(lines)
    target = root / f"mixed_{split}.json"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target
