"""Write prediction records in input order while batches finish out of order, and resume only the same run.

Batches are generated longest-first (less padding), so they finish out of input order. Each finished batch is
appended at once to a side file ``<output>.pending`` (``{"index", "hash", "output"}`` lines); whenever the next
records in input order are all done they are appended to the output file. A kill therefore loses at most the
batch in flight, and a finished output file is never rewritten.

Resume is a contract, not a guess (DESIGN.md §3b): ``<output>.run`` records a fingerprint of everything that
decides the answers (the engine's identity: model, adapter, template, endpoint; the sampling settings; the
task's prompt settings) before the first answer is written. A rerun continues only when that fingerprint is the
same, every line already in the output is its input record plus the fields this run adds, and every pending
answer carries the hash of the record it answers. Anything else (another model, a changed or reordered input, an
unrelated file at ``--output_file``) is refused with the fix, and nothing on disk is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from ..io import DataError, dumps, open_for_resume

__all__ = ["OrderedResumableWriter", "record_hash", "fingerprint"]


def record_hash(record: dict) -> str:
    """A short content hash of an input record (its canonical JSON)."""
    return hashlib.sha256(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _flat(settings: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(settings, dict) or not settings:
        return {prefix: settings}
    out: dict[str, Any] = {}
    for key, value in settings.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every differing setting, nested keys dotted (``engine.model: 'a' -> 'b'``)."""
    old, new = _flat(old), _flat(new)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


class OrderedResumableWriter:
    """Collects ``(index, output)`` results and writes ``record + output`` lines in input order.

    Args:
        path: the output file.
        records: the input records, in order.
        transform: applied to each finished record before it is written (e.g. grounding).
        settings: what decides the answers (JSON-serialisable); stored in ``<path>.run`` and compared on resume.
        added: the fields this run adds to an input record (``output`` and whatever ``transform`` adds).
    """

    def __init__(self, path: str, records: list[dict], transform: Callable[[dict], dict] | None = None,
                 settings: dict[str, Any] | None = None, added: Iterable[str] = ("output",)):
        self.path, self.records, self.transform = path, records, transform
        self.pending_path, self.run_path = f"{path}.pending", f"{path}.run"
        self.added = set(added)
        self.settings = json.loads(json.dumps(settings or {}, ensure_ascii=False, default=str))
        # Hashed without the fields this run writes, so an input that already has an ``output`` still matches.
        self.hashes = [record_hash({k: v for k, v in r.items() if k not in self.added}) for r in records]
        if os.path.isdir(path):
            raise DataError(path, None, None, "is a directory; --output_file must be a file path")
        self._check_previous_run()
        self.handle, self.next_index = open_for_resume(path)
        self.done: dict[int, str] = self._read_pending()
        self.side = open(self.pending_path, "a", encoding="utf-8")
        self._flush_ready()

    # ---- the resume contract ----------------------------------------------------------------------------------
    def _refuse(self, why: str) -> None:
        raise DataError(self.path, None, None, f"{why}; this run would mix its answers with them. Choose another "
                        f"--output_file, or delete {self.path} (and {os.path.basename(self.run_path)}, "
                        f"{os.path.basename(self.pending_path)}) to start over")

    def _check_previous_run(self) -> None:
        started = os.path.exists(self.path) and os.path.getsize(self.path) > 0 or os.path.exists(self.pending_path)
        if not os.path.exists(self.run_path):
            if started:
                self._refuse("the file exists but no run of this command wrote it (no .run file beside it)")
            self._write_run_file()
            return
        try:
            with open(self.run_path, encoding="utf-8") as handle:
                previous = json.load(handle)
            old = previous["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            return self._refuse(f"{self.run_path} is unreadable")
        if fingerprint(old) != fingerprint(self.settings):
            changed = "; ".join(_differences(old, self.settings))
            self._refuse(f"it was written by a run with other settings ({changed})")
        if not started:
            self._write_run_file()
            return
        self._check_written_lines()

    def _write_run_file(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.run_path)), exist_ok=True)
        tmp = f"{self.run_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"settings": self.settings, "records": len(self.records)}, handle, ensure_ascii=False, indent=2)
        os.replace(tmp, self.run_path)

    def _check_written_lines(self) -> None:
        """Every complete line already written must be its input record plus this run's fields."""
        if not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.endswith("\n"):
                    break  # a partial last line from a kill: open_for_resume cuts it
                try:
                    written = json.loads(line)
                except json.JSONDecodeError:
                    break
                if number > len(self.records):
                    self._refuse(f"it has more records than the input ({len(self.records)})")
                original = {k: v for k, v in written.items() if k not in self.added} if isinstance(written, dict) else None
                if original is None or record_hash(original) != self.hashes[number - 1]:
                    self._refuse(f"line {number} does not answer input record {number} (the input changed or was "
                                 "reordered since that run)")

    def _read_pending(self) -> dict[int, str]:
        done: dict[int, str] = {}
        if not os.path.exists(self.pending_path):
            return done
        with open(self.pending_path, encoding="utf-8") as side:
            for line in side:
                try:
                    item = json.loads(line)
                    index, digest, output = item["index"], item["hash"], item["output"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    break  # a partial last line from a kill
                if not isinstance(index, int) or not 0 <= index < len(self.records) or digest != self.hashes[index]:
                    self._refuse(f"{self.pending_path} holds an answer to a record that is not in this input")
                if index >= self.next_index:
                    done[index] = output
        return done

    # ---- writing -----------------------------------------------------------------------------------------------
    def todo(self) -> list[int]:
        """Indices still to generate."""
        return [i for i in range(self.next_index, len(self.records)) if i not in self.done]

    def add(self, results: dict[int, str]) -> None:
        """Record a finished batch durably, then write whatever is now complete in input order."""
        for index, output in results.items():
            self.side.write(json.dumps({"index": index, "hash": self.hashes[index], "output": output},
                                       ensure_ascii=False) + "\n")
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
