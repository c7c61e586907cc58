"""Split one test file over N processes or machines, and merge the parts back in input order.

Shard ``i`` of ``N`` takes a contiguous block of the input, so merging is concatenation in shard order. Each
shard writes ``<output_file>.shard-<i>-of-<N>`` resumably like any prediction file; ``merge_shards`` refuses
to merge until every part is complete.
"""

from __future__ import annotations

import os
import shutil

from ..io import count_complete_lines

__all__ = ["shard_bounds", "shard_path", "merge_shards"]


def shard_bounds(total: int, num_shards: int, shard_index: int) -> tuple[int, int]:
    """``[start, end)`` of shard ``shard_index``; sizes differ by at most one record."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard_index must be in 0..{num_shards - 1} for --num_shards {num_shards}, got {shard_index}")
    return total * shard_index // num_shards, total * (shard_index + 1) // num_shards


def shard_path(output_file: str, num_shards: int, shard_index: int) -> str:
    return f"{output_file}.shard-{shard_index}-of-{num_shards}"


def merge_shards(output_file: str, num_shards: int, expected_records: int | None = None) -> int:
    """Concatenate the shard files into ``output_file``; returns the number of records written.

    Nothing is written unless every shard is complete, so a wrong ``num_shards`` never empties a merged file.
    """
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"--num_shards must be the positive number the shards were run with, got {num_shards}")
    if os.path.isdir(output_file):
        raise ValueError(f"{output_file}: --output_file is a directory; expected the file path the shards were run with")
    parts = [shard_path(output_file, num_shards, i) for i in range(num_shards)]
    missing = [p for p in parts if not os.path.exists(p) or os.path.exists(p + ".pending")]
    if missing:
        raise ValueError(f"shards not finished (missing or still pending): {', '.join(missing)}")
    total = sum(count_complete_lines(p) for p in parts)
    if expected_records is not None and total != expected_records:
        raise ValueError(f"the shards hold {total} records, the input has {expected_records}: rerun the unfinished shards")
    temporary = output_file + ".merging"
    with open(temporary, "wb") as out:
        for part in parts:
            with open(part, "rb") as source:
                shutil.copyfileobj(source, out)
    os.replace(temporary, output_file)
    return total
