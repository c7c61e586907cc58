"""JSON and JSON Lines input/output shared by every stage.

Why one module: every file this project reads or writes is UTF-8 JSON Lines written with
``json.dumps(obj, ensure_ascii=False)`` (the byte format IEPile/InstructIE use, SPEC.md §0), and every error
about bad input must name the file, the line and the field. Keeping the reader, the error type and the
resumable writer here means no stage formats those differently.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "x.json")
>>> with open(path, "w", encoding="utf-8") as f:
...     _ = f.write('{"text": "a"}\\n\\n{"text": "b"}\\n')
>>> [(n, r["text"]) for n, r in iter_jsonl(path)]
[(1, 'a'), (3, 'b')]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "DataError",
    "same_file",
    "check_input_file",
    "check_output_path",
    "dumps",
    "iter_jsonl",
    "read_json",
    "read_instruction_records",
    "write_jsonl",
    "count_complete_lines",
    "open_for_resume",
]

PathLike = str | os.PathLike


class DataError(ValueError):
    """Bad input, located: ``file:line: field: what was wrong``.

    Attributes are kept separately so callers (``--skip_invalid``) can count skips by reason.
    """

    def __init__(self, path: PathLike | None, line: int | None, field: str | None, message: str):
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = self.path or "<input>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")

    def __reduce__(self):
        # Rebuilt from its parts, so it crosses process boundaries (a worker's error reaches the parent instead of
        # failing to unpickle there, which left a multiprocessing pool waiting forever).
        return type(self), (self.path, self.line, self.field, self.reason)


def same_file(a: PathLike | None, b: PathLike | None) -> bool:
    """Whether two paths name the same file (``./x`` and ``x``, links, case on case-insensitive disks)."""
    if not a or not b:
        return False
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.abspath(os.path.realpath(a)) == os.path.abspath(os.path.realpath(b))


def check_input_file(path: PathLike, flag: str) -> None:
    """An input that must be an existing file; a located error otherwise (a folder is a common slip)."""
    if os.path.isdir(path):
        raise DataError(path, None, None, f"{flag} is a directory; expected a file")
    if not os.path.exists(path):
        raise DataError(path, None, None, f"{flag}: file not found")


def check_output_path(path: PathLike, flag: str, *inputs: tuple[PathLike | None, str]) -> None:
    """An output that is not a folder and not one of the command's own inputs (``(path, flag)`` pairs)."""
    if os.path.isdir(path):
        raise DataError(path, None, None, f"{flag} is a directory; expected a file path")
    for other, other_flag in inputs:
        if same_file(path, other):
            raise DataError(path, None, None, f"{flag} is the same file as {other_flag}; writing it would destroy "
                            "that input: choose another path")


def dumps(obj: Any) -> str:
    """Serialize exactly as upstream does: raw non-ASCII, default separators, insertion order."""
    return json.dumps(obj, ensure_ascii=False)


def iter_jsonl(path: PathLike, *, start_line: int = 1) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for each non-blank line of a JSON Lines file, streaming.

    A line that is not JSON raises :class:`DataError` naming the file and line. A file that is a single
    pretty-printed JSON array (a common mix-up, USER_REPORTS.md) is reported as such instead of failing on
    its first line with a confusing message.
    """
    import orjson  # 3-4x faster than json on these records; json reads what it refuses (NaN, a BOM) and words errors

    fast_loads, fast_error = orjson.loads, orjson.JSONDecodeError
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number < start_line:
                continue
            try:
                yield number, fast_loads(raw)
                continue
            except fast_error:
                if not raw.strip():
                    continue
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(path, number, None, f"not UTF-8 (byte {exc.start + 1} of the line); save the file as UTF-8, "
                                "e.g. open(path, 'w', encoding='utf-8') on Windows") from None
            try:
                value = json.loads(line)
            except (ValueError, RecursionError) as exc:
                hint = ""
                if number == 1 and line.strip() in ("[", "{"):
                    hint = " (this looks like a pretty-printed JSON document; JSON Lines wants one record per line)"
                where = f"{exc.msg} (column {exc.pos + 1})" if isinstance(exc, json.JSONDecodeError) else str(exc)
                raise DataError(path, number, None, f"not valid JSON: {where}{hint}") from None
            yield number, value


def read_instruction_records(path: PathLike, need_output: bool = False) -> list[dict]:
    """Instruction records (training or prediction input), each checked; errors name file, line and field.

    ``need_output``: training needs the answer; a test file there gets a hint about ``--split train``.
    """
    records = []
    for number, record in iter_jsonl(path):
        if not isinstance(record, dict):
            raise DataError(path, number, None, "expected a JSON object")
        if not isinstance(record.get("instruction"), str) or not record["instruction"]:
            raise DataError(path, number, "instruction", "missing or not a string (convert the data with deepke-llm convert)")
        if need_output and "output" not in record:
            hint = " (is this a test file? training needs files converted with --split train)" if "label" in record else ""
            raise DataError(path, number, "output", "missing" + hint)
        records.append(record)
    if not records:
        raise DataError(path, None, None, "no records")
    return records


def read_json(path: PathLike) -> Any:
    """Read a whole JSON document, with the file named in the error."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(path, exc.lineno, None, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None


def write_jsonl(path: PathLike, records: Any) -> int:
    """Write records as JSON Lines (overwriting); return how many were written."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(dumps(record) + "\n")
            count += 1
    return count


def count_complete_lines(path: PathLike) -> int:
    """Number of complete (newline-terminated, parseable) records at the start of ``path``.

    A job killed mid-write leaves at most one partial last line; resuming keeps everything before it.
    """
    if not os.path.exists(path):
        return 0
    count = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            try:
                json.loads(line)
            except json.JSONDecodeError:
                break
            count += 1
    return count


def open_for_resume(path: PathLike) -> tuple[Any, int]:
    """Open ``path`` for appending after its last complete record; return ``(handle, records_kept)``.

    Any partial trailing line is cut off first, so a rerun after a kill continues cleanly.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    kept = count_complete_lines(path)
    if os.path.exists(path):
        with open(path, "r+b") as raw:
            offset = 0
            for _ in range(kept):
                offset += len(raw.readline())
            raw.truncate(offset)
    return open(path, "a", encoding="utf-8", newline="\n"), kept
