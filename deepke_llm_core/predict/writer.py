"""Write prediction records in input order while batches finish out of order, and resume after a kill.

Batches are generated longest-first (less padding), so they finish out of input order. Each finished batch is
appended at once to a side file ``<output>.pending`` (``{"index", "output"}`` lines); whenever the next records
in input order are all done they are appended to the output file. A kill therefore loses at most the batch in
flight; a rerun keeps the output's complete prefix and the side file's records, and a finished output file is
never rewritten (the side file is removed when the output is complete).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..io import dumps, open_for_resume

__all__ = ["OrderedResumableWriter"]


class OrderedResumableWriter:
    """Collects ``(index, output)`` results and writes ``record + output`` lines in input order."""

    def __init__(self, path: str, records: list[dict], transform=None):
        self.path = path
        self.transform = transform  # e.g. grounding: applied to each finished record before it is written
        self.pending_path = f"{path}.pending"
        self.records = records
        self.handle, self.next_index = open_for_resume(path)
        if self.next_index > len(records):
            raise ValueError(f"{path} has {self.next_index} records but the input has {len(records)}: "
                             "it belongs to another input file; choose another --output_file")
        self.done: dict[int, str] = {}
        if os.path.exists(self.pending_path):
            with open(self.pending_path, encoding="utf-8") as side:
                for line in side:
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError:
                        break  # a partial last line from a kill
                    if item["index"] >= self.next_index:
                        self.done[item["index"]] = item["output"]
        self.side = open(self.pending_path, "a", encoding="utf-8")
        self._flush_ready()

    def todo(self) -> list[int]:
        """Indices still to generate."""
        return [i for i in range(self.next_index, len(self.records)) if i not in self.done]

    def add(self, results: dict[int, str]) -> None:
        """Record a finished batch durably, then write whatever is now complete in input order."""
        for index, output in results.items():
            self.side.write(json.dumps({"index": index, "output": output}, ensure_ascii=False) + "\n")
        self.side.flush()
        self.done.update(results)
        self._flush_ready()

    def _flush_ready(self) -> None:
        wrote = False
        while self.next_index in self.done:
            record: dict[str, Any] = dict(self.records[self.next_index])
            record["output"] = self.done.pop(self.next_index)
            if self.transform is not None:
                record = self.transform(record)
            self.handle.write(dumps(record) + "\n")
            self.next_index += 1
            wrote = True
        if wrote:
            self.handle.flush()

    def close(self) -> bool:
        """Close both files; remove the side file when every record is written. Returns completeness."""
        self.handle.close()
        self.side.close()
        complete = self.next_index == len(self.records)
        if complete and os.path.exists(self.pending_path):
            os.remove(self.pending_path)
        return complete
