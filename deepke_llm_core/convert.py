"""IE records -> IEPile/InstructIE instruction records (``deepke-llm convert``).

The task modules decide *which* schema items an instruction holds and *what* the answer is; this module does
the task-independent rest: chunking (SPEC §1.9), the record layout and ``id`` (§1.12), hard-negative
sampling (§1.10), streaming, worker processes and error reporting.

Why the string building below instead of ``json.dumps(record)``: a 2M-record IEPile conversion writes every
text once per chunk (12 times for 49 relations), escaped twice (the instruction is JSON inside JSON). JSON
string escaping works character by character, so the escaped text is computed once per record and the escaped
instruction head once per distinct chunk, and the line is joined from pieces. The bytes are the same as
``json.dumps(..., ensure_ascii=False)`` produces (a test checks this against a plain implementation).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from .io import DataError, iter_jsonl, read_json
from .schema import Schema, load_schema, write_schema
from .tasks import TASKS, ConvertOptions, Task, get_task
from .tasks.base import LabelListTask, binomial, order_items, sample_subset

__all__ = ["ConvertConfig", "ConvertReport", "convert_file", "chunk_items", "RecordConverter", "schema_path_for"]

TASK_NAMES = tuple(TASKS)
RELATION_KEYS = {"subject_object": ("subject", "object"), "head_tail": ("head", "tail")}


def _help(text: str, **more) -> dict:
    return {"help": text, **more}


@dataclass
class ConvertConfig:
    """Every ``deepke-llm convert`` flag. Paths are explicit; nothing is resolved against the cwd implicitly."""

    src_path: str = field(metadata=_help("raw IE records, JSON Lines"))
    tgt_path: str = field(metadata=_help("instruction records to write, JSON Lines"))
    schema_path: str | None = field(default=None, metadata=_help("three-line schema file; omitted: collected from the data"))
    task: str = field(default="NER", metadata=_help("the IE task", choices=list(TASK_NAMES)))
    language: str = field(default="zh", metadata=_help("instruction language", choices=["zh", "en"]))
    split: str = field(default="train", metadata=_help("train: with answers; test: with gold labels", choices=["train", "test"]))
    split_num: int = field(default=4, metadata=_help("max schema items per instruction; -1: no split (recommended: "
                                                     + ", ".join(f"{n} {t.recommended_split_num}" for n, t in TASKS.items()) + ")"))
    neg_schema: float = field(default=1.0, metadata=_help("negative schema sampling rate (1: keep all)"))
    random_sort: bool = field(default=False, metadata=_help("shuffle the schema order (seeded)"))
    cluster_mode: bool = field(default=False, metadata=_help("hard-negative sampling (train; NER/RE/SPO/EET)"))
    hard_negative_path: str | None = field(default=None, metadata=_help("JSON object: label -> confusable labels"))
    source: str | None = field(default=None, metadata=_help("the records' source; default: the input's parent folder name"))
    seed: int = 42
    relation_keys: str = field(default="subject_object", metadata=_help(
        "RE output keys: IEPile/OneKE subject/object (default) or DeepKE's head/tail", choices=["subject_object", "head_tail"]))
    legacy_spo_instruction: bool = field(default=False, metadata=_help("the older zh SPO sentence of IEPile's data"))
    skip_invalid: bool = field(default=False, metadata=_help("skip bad records and report them instead of stopping"))
    workers: int = field(default=1, metadata=_help("worker processes; output order is kept"))
    progress: bool | None = field(default=None, metadata=_help("progress bar on stderr (default: on a terminal)"))

    def __post_init__(self) -> None:
        self.task = self.task.upper()


@dataclass
class ConvertReport:
    """What happened: counts, and why records were skipped."""

    records_read: int = 0
    instructions_written: int = 0
    records_without_instruction: int = 0
    skipped: Counter = field(default_factory=Counter)
    schema_written: str | None = None

    def summary(self) -> str:
        text = (
            f"read {self.records_read} records, wrote {self.instructions_written} instructions"
            f" ({self.records_without_instruction} records produced none)"
        )
        if self.skipped:
            reasons = "; ".join(f"{n}x {reason}" for reason, n in self.skipped.most_common())
            text += f"; skipped {sum(self.skipped.values())} invalid records: {reasons}"
        if self.schema_written:
            text += f"; schema collected from the data written to {self.schema_written}"
        return text


def chunk_items(items: list, split_num: int, split: str = "train") -> list[list]:
    """Split an ordered item list into instructions of at most ``split_num`` items (SPEC §1.9).

    A remainder shorter than half a chunk joins the last chunk instead of standing alone.

    >>> [len(c) for c in chunk_items(list(range(49)), 4)]
    [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5]
    >>> [len(c) for c in chunk_items(list(range(6)), 4)]
    [4, 2]
    """
    if split_num == 0 or split_num < -1:
        raise ValueError(f"split_num must be -1 (no split) or a positive number, got {split_num}")
    n = len(items)
    if split_num == -1 or (split == "test" and n < split_num):
        return [list(items)]
    full = max(n // split_num, 1) * split_num
    chunks = [list(items[i:i + split_num]) for i in range(0, full, split_num)]
    rest = list(items[full:])
    if len(rest) >= max(1, split_num // 2):
        chunks.append(rest)
    elif rest:
        chunks[-1].extend(rest)
    return chunks


def _escape(text: str) -> str:
    """The body of ``json.dumps(text)`` without its quotes."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def cluster_items(task: Task, annotation: list, schema: Schema, opts: ConvertOptions, rng: random.Random,
                  hard: dict[str, list[str]], split_num: int) -> list:
    """Hard-negative sampling (SPEC §1.10): positives, their confusable labels, and a few random others.

    A label missing from the hard-negative file simply has no hard negatives (upstream raised KeyError).
    """
    universe = task.universe(schema)
    positives = task.positives(annotation)
    if len(universe) == 1:
        return list(universe)
    if not positives:
        n = max(binomial(rng, len(universe), opts.neg_schema / 2), 1)
        return order_items(sample_subset(universe, min(n, len(universe)), rng), opts.random_sort, rng)
    allowed = set(universe)
    chosen = dict.fromkeys(positives)
    for label in positives:
        for other in hard.get(label, []):
            if other in allowed:
                chosen.setdefault(other)
    rest = [u for u in universe if u not in chosen]
    for extra in sample_subset(rest, min(max(split_num, 0), len(rest)), rng):
        chosen.setdefault(extra)
    return order_items(list(chosen), opts.random_sort, rng)


class RecordConverter:
    """Turns one raw record into its instruction lines. Built once per process; holds a bounded cache."""

    def __init__(self, config: ConvertConfig, schema: Schema, hard: dict[str, list[str]] | None = None):
        self.config = config
        self.task = get_task(config.task)
        self.schema = schema
        self.hard = hard or {}
        if config.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {config.split!r}")
        if config.relation_keys not in RELATION_KEYS:
            raise ValueError(f"relation_keys must be one of {', '.join(RELATION_KEYS)}")
        chunk_items([], config.split_num)  # validates split_num early
        self.opts = ConvertOptions(
            language=config.language, split_num=config.split_num, neg_schema=config.neg_schema,
            random_sort=config.random_sort, relation_keys=RELATION_KEYS[config.relation_keys],
            legacy_spo_instruction=config.legacy_spo_instruction,
            cluster_mode=config.cluster_mode and config.split == "train",
        )
        if self.opts.cluster_mode and not isinstance(self.task, LabelListTask):
            raise ValueError(f"--cluster_mode supports NER, RE, SPO and EET, not {self.task.name}")
        sentence = json.dumps(self.task.instruction(config.language, self.opts), ensure_ascii=False)
        self._head_prefix = '{"instruction": ' + sentence + ', "schema": '
        self._record_prefix = (
            '{"task": ' + json.dumps(self.task.name) + ', "source": '
            + json.dumps(config.source or "", ensure_ascii=False) + ', "instruction": "'
        )
        self._heads: dict[tuple, str] = {}

    def _escaped_head(self, chunk: list) -> str:
        key = tuple(chunk)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) > 20000:  # random modes create many distinct chunks; keep memory flat
                self._heads.clear()
            schema = [self.task.schema_entry(item, self.config.split) for item in chunk]
            head = self._heads[key] = _escape(self._head_prefix + json.dumps(schema, ensure_ascii=False) + ', "input": ')
        return head

    def convert(self, index: int, record: object) -> list[str]:
        """The output lines (with newlines) for the record on line ``index``; raises :class:`DataError` without file/line."""
        if not isinstance(record, dict):
            raise DataError(None, None, None, f"expected a JSON object, got {type(record).__name__}")
        text = record.get("text")
        if not isinstance(text, str):
            raise DataError(None, None, "text", "missing" if "text" not in record else f"expected a string, got {type(text).__name__}")
        task, config = self.task, self.config
        annotation = task.read_annotation(record, self.schema)
        # Seeded per line, so a record's draws do not depend on how the file was split between workers.
        rng = random.Random(f"{config.seed}:{index}") if self.opts.needs_rng else None
        if config.split == "train":
            if annotation is None:
                raise DataError(None, None, task.annotation_field, "missing; a training record needs its annotation")
            if self.opts.cluster_mode:
                items = cluster_items(task, annotation, self.schema, self.opts, rng, self.hard, config.split_num)
            else:
                items = task.train_items(annotation, self.schema, self.opts, rng)
        else:
            items = task.test_items(annotation, self.schema)
        if items is None:
            return []
        text_escaped = _escape(json.dumps(text, ensure_ascii=False)) + '}"'
        if config.split == "train":
            labels = task.label_dict(annotation, text, self.opts)
            prefix = self._record_prefix
            return [
                prefix + self._escaped_head(chunk) + text_escaped + ', "output": '
                + json.dumps(json.dumps(task.render_output(chunk, labels, text), ensure_ascii=False), ensure_ascii=False)
                + "}\n"
                for chunk in chunk_items(items, config.split_num, "train")
            ]
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        prefix = '{"id": "' + digest + '", ' + self._record_prefix[1:]
        tail = "}\n" if annotation is None else ', "label": ' + json.dumps(json.dumps(annotation, ensure_ascii=False), ensure_ascii=False) + "}\n"
        return [prefix + self._escaped_head(chunk) + text_escaped + tail for chunk in chunk_items(items, config.split_num, "test")]


# ---- driving a file, in one process or several ----------------------------------------------------------------

def _convert_range(converter: RecordConverter, path: str, start: int, end: int, first_line: int,
                   out, report: ConvertReport, progress=None) -> DataError | None:
    """Convert the lines in bytes ``[start, end)`` of ``path`` (``end=-1``: to the end), writing to ``out``.

    Reads bytes (``json.loads`` takes UTF-8 bytes; no per-line decode) and writes in batches. Returns the
    first error when ``--skip_invalid`` is off; otherwise counts skipped records in ``report``.
    """
    skip_invalid = converter.config.skip_invalid
    pending: list[str] = []
    with open(path, "rb") as handle:
        handle.seek(start)
        position = start
        for number, raw in enumerate(handle, start=first_line):
            if end != -1 and position >= end:
                break
            position += len(raw)
            if progress is not None:
                progress.update(len(raw))
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            report.records_read += 1
            try:
                try:
                    record = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    detail = f"{exc.msg} (column {exc.pos + 1})" if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                    if number == 1 and raw.strip() in (b"[", b"{"):
                        detail += " (this looks like a pretty-printed JSON document; JSON Lines wants one record per line)"
                    raise DataError(None, None, None, f"not valid JSON: {detail}") from None
                lines = converter.convert(number, record)
            except DataError as exc:
                located = DataError(converter.config.src_path, number, exc.field, exc.reason)
                if not skip_invalid:
                    return located
                report.skipped[f"{exc.field or 'record'}: {exc.reason}"] += 1
                continue
            if not lines:
                report.records_without_instruction += 1
            report.instructions_written += len(lines)
            pending.extend(lines)
            if len(pending) >= 4096:
                out.write("".join(pending))
                pending.clear()
    out.write("".join(pending))
    return None


def _line_ranges(path: str, parts: int) -> list[tuple[int, int, int]]:
    """Split a file into ``parts`` byte ranges on line boundaries: ``(start, end, number of first line)``."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as handle:
        for k in range(1, parts):
            handle.seek(max(size * k // parts, cuts[-1]))
            if handle.tell() > 0:
                handle.readline()
            cuts.append(min(handle.tell(), size))
    cuts.append(size)
    ranges, line = [], 1
    with open(path, "rb") as handle:
        for a, b in zip(cuts, cuts[1:]):
            ranges.append((a, b, line))
            line += handle.read(b - a).count(b"\n") if b > a else 0
    return [r for r in ranges if r[1] > r[0]] or [(0, size, 1)]


def _worker_job(args) -> tuple[ConvertReport, DataError | None]:
    """One worker process: its byte range of the input into its own part file (no output crosses processes)."""
    config, schema, hard, start, end, first_line, part = args
    converter = RecordConverter(config, schema, hard)
    report = ConvertReport()
    with open(part, "w", encoding="utf-8", newline="\n") as out:
        error = _convert_range(converter, config.src_path, start, end, first_line, out, report)
    return report, error


def _check_paths(config: ConvertConfig) -> None:
    """Inputs exist and are files; the target is none of them (``./x`` and ``x`` are the same file)."""
    from .io import check_input_file, check_output_path

    check_input_file(config.src_path, "--src_path")
    inputs = [(config.src_path, "--src_path"), (config.schema_path, "--schema_path"),
              (config.hard_negative_path, "--hard_negative_path")]
    check_output_path(config.tgt_path, "--tgt_path", *inputs)
    if config.neg_schema != config.neg_schema:  # NaN compares unequal to itself
        raise ValueError(f"--neg_schema must be a number (a rate in [0, 1]; 1 keeps every negative), got {config.neg_schema}")
    if config.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {config.workers}")


def _check_collected_schema_path(config: ConvertConfig, path: str) -> None:
    """The collected schema goes beside the target; it must not replace an input or a file that is not a schema."""
    from .io import check_output_path

    check_output_path(path, "the collected schema (<target>.schema.json)", (config.src_path, "--src_path"),
                      (config.tgt_path, "--tgt_path"), (config.hard_negative_path, "--hard_negative_path"))
    if os.path.exists(path):
        try:
            load_schema(path)
        except DataError:
            raise DataError(path, None, None, "exists and is not a schema file; the collected schema would replace it: "
                            "pass --schema_path, or move that file") from None


def schema_path_for(tgt_path: str) -> str:
    """Where a collected schema is written: beside the output, ``<name>.schema.json``."""
    target = Path(tgt_path)
    return str(target.with_name(target.stem + ".schema.json"))


def _collect_schema(config: ConvertConfig, task: Task) -> Schema:
    """First pass when no schema file is given: read every annotation (streaming) and gather the labels."""

    def annotations() -> Iterator[list]:
        for number, record in iter_jsonl(config.src_path):
            try:
                if not isinstance(record, dict):
                    raise DataError(None, None, None, "expected a JSON object")
                annotation = task.read_annotation(record, None)
            except DataError as exc:
                if config.skip_invalid:
                    continue
                raise DataError(config.src_path, number, exc.field, exc.reason) from None
            if annotation:
                yield annotation

    return task.collect_schema(annotations())


def convert_file(config: ConvertConfig) -> ConvertReport:
    """Convert ``config.src_path`` into ``config.tgt_path``; streaming, ordered, optionally multi-process.

    The output is written to a temporary file and moved into place at the end, so a failed run never leaves
    a truncated file that looks complete.
    """
    from tqdm import tqdm

    task = get_task(config.task)
    _check_paths(config)
    # The caller's config is not modified: the resolved values go into a copy.
    config = replace(config, task=task.name,
                     source=config.source if config.source is not None else Path(config.src_path).resolve().parent.name)
    report = ConvertReport()
    if config.schema_path:
        schema = load_schema(config.schema_path)
    else:
        schema = _collect_schema(config, task)
        report.schema_written = schema_path_for(config.tgt_path)
        _check_collected_schema_path(config, report.schema_written)
        write_schema(schema, report.schema_written)
    hard = None
    if config.cluster_mode:
        if not config.hard_negative_path:
            raise ValueError("--cluster_mode needs --hard_negative_path (a JSON object: label -> [confusable labels])")
        hard = read_json(config.hard_negative_path)
        if not isinstance(hard, dict) or not all(isinstance(v, list) for v in hard.values()):
            raise DataError(config.hard_negative_path, None, None, "expected a JSON object mapping each label to a list of labels")
    converter = RecordConverter(config, schema, hard)  # validates options before any work

    Path(config.tgt_path).parent.mkdir(parents=True, exist_ok=True)
    temporary = f"{config.tgt_path}.part"
    parts: list[str] = []
    bar = tqdm(total=os.path.getsize(config.src_path), unit="B", unit_scale=True, desc=f"convert {task.name}",
               disable=None if config.progress is None else not config.progress)
    try:
        with open(temporary, "w", encoding="utf-8", newline="\n") as out:
            if config.workers > 1:
                error = _convert_in_workers(config, schema, hard, out, report, bar, parts)
            else:
                error = _convert_range(converter, config.src_path, 0, -1, 1, out, report, bar)
            if error is not None:
                raise error
        if report.records_read == 0:  # keep whatever the target held: an empty input is a mistake, not a result
            raise DataError(config.src_path, None, None, f"no records (the file is empty); {config.tgt_path} was not written")
        os.replace(temporary, config.tgt_path)
    finally:
        bar.close()
        for path in parts + [temporary]:
            if os.path.exists(path):
                os.remove(path)
    return report


def _convert_in_workers(config: ConvertConfig, schema: Schema, hard, out, report: ConvertReport, bar, parts: list[str]):
    """Each worker converts a contiguous byte range into a part file; parts are appended in input order.

    Sending records to workers and output back through pipes cost more than the conversion itself (the output
    is ~12x the input); with byte ranges only counts cross process boundaries.
    """
    import multiprocessing
    import shutil

    ranges = _line_ranges(config.src_path, config.workers)
    parts.extend(f"{config.tgt_path}.part{i}" for i in range(len(ranges)))
    jobs = [(config, schema, hard, a, b, line, part) for (a, b, line), part in zip(ranges, parts)]
    with multiprocessing.get_context("spawn").Pool(min(config.workers, len(jobs))) as pool:
        results = pool.map(_worker_job, jobs, chunksize=1)
    out.flush()
    for (a, b, _), part, (sub, error) in zip(ranges, parts, results):
        if error is not None:
            return error
        report.records_read += sub.records_read
        report.instructions_written += sub.instructions_written
        report.records_without_instruction += sub.records_without_instruction
        report.skipped.update(sub.skipped)
        with open(part, "rb") as src:
            shutil.copyfileobj(src, out.buffer, 1 << 20)
        bar.update(b - a)
    return None
