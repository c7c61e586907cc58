"""Paste a text, pick a task and a model, see the extractions highlighted: the interactive app, and the function behind it.

The work is :func:`extract` (text + task + schema -> the package's own IEPile instructions -> a backend -> the
parsed answer); the app is a thin ipywidgets form around it, so everything it does is testable without a browser.
A *backend* turns instruction records into answers; three are provided:

* :class:`LocalModelBackend`: a model on this machine (a merged model, or a base plus a LoRA/P-Tuning adapter),
  prompted exactly as ``deepke-llm infer`` prompts it (stored template, ``encode_prompt``, ``HFEngine``);
* :func:`oneke_backend`: the same with OneKE's ``llama2_zh`` prompt;
* :class:`ICLBackend`: an engine of the ICL registry (``ChatGPT`` with any ``base_url``, ``DeepSeek``, or a local
  chat model), sent the same instruction as a chat message. The API key comes from the environment
  (``OPENAI_API_KEY``...) or the ``api_key`` argument, never from a widget, so it is never saved in a notebook.

ipywidgets is imported only when the app is built (``pip install ipywidgets``, part of the ``dev`` extra).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any, Protocol

from .io import DataError
from .schema import Schema, load_schema

__all__ = ["Backend", "LocalModelBackend", "oneke_backend", "ICLBackend", "SPLIT_NUM", "parse_schema_text",
           "default_schema_text", "tiny_base_schema_text", "build_instructions", "merge_answers", "extract",
           "ExtractorApp", "extractor_app"]

# Schema items per instruction, as the README recommends (and as the tiny IE base was trained).
SPLIT_NUM = {"NER": 6, "RE": 4, "SPO": 4, "EE": 4, "EET": 4, "EEA": 4, "KG": 1}
LANGUAGES = ("en", "zh")


class Backend(Protocol):
    """Anything that answers IEPile instruction records with the model's raw output strings."""

    def complete(self, records: Sequence[dict]) -> list[str]: ...


class LocalModelBackend:
    """A local model (folder or Hub id; a base plus ``checkpoint_dir`` adapter, or a merged model), loaded on first use.

    The template defaults to the one stored with the adapter or model (``deepke_llm.json``), as in
    ``deepke-llm infer``, because a fine-tuned model asked in another template answers in prose.
    """

    def __init__(self, model_name_or_path: str | os.PathLike, checkpoint_dir: str | None = None, *,
                 template: str | None = None, system_prompt: str | None = None, max_new_tokens: int = 256,
                 cutoff_len: int = 512, bits: int | None = None, use_gpu: bool = False, batch_size: int = 8):
        from .run_info import resolve_template, stored_run_info

        self.model_name_or_path, self.checkpoint_dir = str(model_name_or_path), checkpoint_dir
        info = stored_run_info(checkpoint_dir, self.model_name_or_path)
        self.template = resolve_template(template, info, checkpoint_dir or self.model_name_or_path)
        self.system = system_prompt if system_prompt is not None else info.get("system_prompt")
        self.max_new_tokens, self.cutoff_len, self.bits = max_new_tokens, cutoff_len, bits
        self.use_gpu, self.batch_size = use_gpu, batch_size
        self._loaded: tuple[Any, Any, Any] | None = None

    def __repr__(self) -> str:
        return f"LocalModelBackend({self.model_name_or_path!r}, checkpoint_dir={self.checkpoint_dir!r}, template={self.template!r})"

    def _load(self) -> tuple[Any, Any, Any]:
        if self._loaded is None:
            from .models import load_model_and_tokenizer
            from .predict.hf import HFEngine
            from .run_info import require_chat_template

            device_map = None
            if self.use_gpu:
                import torch

                if not torch.cuda.is_available():
                    raise RuntimeError("use_gpu=True but torch sees no CUDA device; set use_gpu=False")
                device_map = "auto"
            model, tokenizer = load_model_and_tokenizer(self.model_name_or_path, self.checkpoint_dir, bits=self.bits,
                                                        device_map=device_map)
            require_chat_template(self.template, tokenizer, self.model_name_or_path, "template=")
            self._loaded = (model, tokenizer, HFEngine(model, tokenizer, self.template, self.max_new_tokens))
        return self._loaded

    def prompt_ids(self, record: dict) -> list[int]:
        """The token ids the model reads for one record (the same as ``deepke-llm infer`` builds)."""
        from .encoding import encode_prompt

        _, tokenizer, _ = self._load()
        return encode_prompt(record, tokenizer, self.template, self.system, self.cutoff_len)[0]

    def complete(self, records: Sequence[dict]) -> list[str]:
        """Greedy answers, in batches of ``batch_size``."""
        engine = self._load()[2]
        prompts = [self.prompt_ids(r) for r in records]
        return [text for start in range(0, len(prompts), self.batch_size)
                for text in engine.generate(prompts[start:start + self.batch_size])]


def oneke_backend(model_name_or_path: str | os.PathLike = "zjunlp/OneKE", checkpoint_dir: str | None = None,
                  **options: Any) -> LocalModelBackend:
    """OneKE (or a model fine-tuned from it): a local model prompted with the ``llama2_zh`` template.

    On a GPU pass ``use_gpu=True`` (and ``bits=4`` to fit 13B parameters in about 10 GB).
    """
    return LocalModelBackend(model_name_or_path, checkpoint_dir, template="llama2_zh", **options)


class ICLBackend:
    """An engine of the ICL registry, asked the IEPile instruction as one chat message (no demonstrations)."""

    def __init__(self, engine: str = "ChatGPT", model_id: str | None = None, base_url: str | None = None,
                 api_key: str | None = None, max_tokens: int = 512, timeout: float = 60.0):
        from .icl.engines import EngineOptions, Sampling, create_engine

        self.engine = create_engine(engine, EngineOptions(model_id=model_id, api_key=api_key, base_url=base_url,
                                                          timeout=timeout))
        self.sampling = Sampling(max_tokens=max_tokens)

    def __repr__(self) -> str:
        return f"ICLBackend({self.engine!r})"

    def complete(self, records: Sequence[dict]) -> list[str]:
        from .prompts import query_of

        batch = [self.engine.messages(query_of(r)) for r in records]
        return [c.text for c in self.engine.complete_batch(batch, self.sampling)]


def parse_schema_text(text: str) -> Schema:
    """A schema typed or pasted as text, in either file form (three lines, or one JSON object).

    Goes through ``load_schema`` (via a temporary file) so a pasted schema is checked exactly like a schema file;
    errors name the field ``schema`` instead of the temporary path.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "schema.json"
        path.write_text(text, encoding="utf-8")
        try:
            return load_schema(path)
        except DataError as exc:
            raise DataError("schema", exc.line, exc.field, exc.reason) from None


def default_schema_text(task: str, language: str) -> str:
    """The bundled sample schema ``data/<language>/<task>/schema.json``."""
    from .resources import data_dir

    return (data_dir() / language / task.upper() / "schema.json").read_text(encoding="utf-8")


def tiny_base_schema_text(task: str, language: str) -> str:
    """The ontology the tiny IE base was trained on (it knows no other types); other tasks: the sample schema."""
    from . import synthetic
    from .tiny_base import HELD_OUT_TYPE

    if task.upper() in synthetic.TASKS:
        return synthetic.schema_text(task.upper(), language, exclude=(HELD_OUT_TYPE,))
    return default_schema_text(task, language)


def build_instructions(text: str, task: str, schema: Schema | str, language: str, split_num: int | None = None) -> list[dict]:
    """The test-split instruction records of one text, built by the converter (``deepke-llm convert --split test``)."""
    from .convert import ConvertConfig, RecordConverter

    if not text.strip():
        raise ValueError("the text is empty: paste or type a text to extract from")
    schema = parse_schema_text(schema) if isinstance(schema, str) else schema
    task = task.upper()
    config = ConvertConfig(src_path="<text>", tgt_path="", task=task, language=language, split="test",
                           split_num=split_num or SPLIT_NUM.get(task, 4))
    return [json.loads(line) for line in RecordConverter(config, schema).convert(1, {"text": text})]


def merge_answers(answers: Sequence[dict | None]) -> dict:
    """One answer from the answers of a text's chunks: lists are concatenated, objects merged, unparsed ones skipped."""
    merged: dict = {}
    for answer in answers:
        for key, value in (answer or {}).items():
            old = merged.get(key)
            if isinstance(old, list) and isinstance(value, list):
                merged[key] = old + value
            elif isinstance(old, dict) and isinstance(value, dict):
                merged[key] = {**old, **value}
            else:
                merged[key] = value
    return merged


def extract(text: str, task: str, schema: Schema | str, language: str, backend: Backend, *,
            split_num: int | None = None, lenient: bool = True) -> tuple[list[str], dict]:
    """Extract from one text: ``(raw outputs, one per instruction chunk; the merged parsed answer)``.

    ``lenient`` reads answers wrapped in code fences or slightly broken JSON (``evaluate.parse_json_output``);
    an answer that still does not parse contributes nothing.
    """
    from .evaluate import parse_json_output

    raw = backend.complete(build_instructions(text, task, schema, language, split_num))
    return raw, merge_answers([parse_json_output(r, lenient) for r in raw])


BACKENDS = ("local model", "OneKE (llama2_zh)", "ICL API engine")


class ExtractorApp:
    """The form: text, task, language, schema, backend choice, an Extract button, the highlighted result and raw JSON.

    ``app.widget`` is the ipywidgets box (the app displays itself in a notebook); ``app.run()`` is what the button does.
    Backends are built from the form and kept, so a model loads once.
    """

    def __init__(self, *, text: str = "", task: str = "NER", language: str = "en", model: str | None = None,
                 checkpoint_dir: str | None = None, template: str | None = None, engine: str | None = None,
                 base_url: str | None = None, use_gpu: bool = False,
                 schema_for: Callable[[str, str], str] | None = None, backend: Backend | None = None):
        import ipywidgets as w

        from .icl.engines import engine_names
        from .tasks import TASKS

        self.schema_for = schema_for or default_schema_text
        self.use_gpu = use_gpu
        self._backends: dict[tuple, Backend] = {}
        kind = BACKENDS[2] if engine else BACKENDS[1] if template == "llama2_zh" else BACKENDS[0]
        full = w.Layout(width="95%")
        self.text = w.Textarea(value=text, placeholder="Paste a text here", description="Text", layout=w.Layout(width="95%", height="6em"))
        self.task = w.Dropdown(options=list(TASKS), value=task.upper(), description="Task")
        self.language = w.Dropdown(options=list(LANGUAGES), value=language, description="Language")
        self.schema = w.Textarea(description="Schema", layout=w.Layout(width="95%", height="5em"))
        self.kind = w.Dropdown(options=list(BACKENDS), value=kind, description="Backend")
        self.model = w.Text(value=str(model or ""), description="Model", layout=full,
                            placeholder="model folder or Hub id (ICL: the endpoint's model id)")
        self.checkpoint = w.Text(value=checkpoint_dir or "", description="Adapter", placeholder="optional adapter folder", layout=full)
        self.template = w.Text(value=template or "", description="Template", placeholder="empty: the stored one, else auto")
        self.engine = w.Dropdown(options=engine_names(), value=engine or "ChatGPT", description="ICL engine")
        self.base_url = w.Text(value=base_url or "", description="Base URL", placeholder="OpenAI-compatible endpoint", layout=full)
        self.button = w.Button(description="Extract", button_style="primary", icon="search")
        self.status = w.HTML()
        self.result = w.HTML()
        self.raw = w.HTML()
        self.task.observe(self._refill_schema, names="value")
        self.language.observe(self._refill_schema, names="value")
        self.button.on_click(lambda _: self.run())
        self._refill_schema()
        self.widget = w.VBox([self.text, w.HBox([self.task, self.language]), self.schema,
                              w.HBox([self.kind, self.engine]), self.model, self.checkpoint, self.template,
                              self.base_url, w.HBox([self.button, self.status]), self.result, self.raw])
        self.widget.add_class("deepke-extractor")
        if backend is not None:  # a ready backend stands for the form's initial settings
            self._backends[self._form_key()] = backend

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.widget._repr_mimebundle_(**kwargs)

    def _refill_schema(self, _change: Any = None) -> None:
        try:
            self.schema.value = self.schema_for(self.task.value, self.language.value)
        except FileNotFoundError as exc:
            self.schema.value = ""
            self.status.value = f'<span style="color:#a00">{escape(str(exc))}</span>'

    def _form_key(self) -> tuple:
        """The backend settings of the form (engine and base URL matter only for the ICL backend)."""
        api = self.kind.value == BACKENDS[2]
        return (self.kind.value, self.model.value.strip(), self.checkpoint.value.strip(), self.template.value.strip(),
                self.engine.value if api else "", self.base_url.value.strip() if api else "")

    def backend(self) -> Backend:
        """The backend the form describes (built on first use, then reused)."""
        key = self._form_key()
        kind, model, checkpoint, template, engine, base_url = key
        checkpoint, template, base_url = checkpoint or None, template or None, base_url or None
        if key not in self._backends:
            if kind == BACKENDS[2]:
                self._backends[key] = ICLBackend(engine, model_id=model or None, base_url=base_url)
            elif not model:
                raise ValueError("enter a model folder or Hub id")
            elif kind == BACKENDS[1]:
                self._backends[key] = oneke_backend(model, checkpoint, use_gpu=self.use_gpu)
            else:
                self._backends[key] = LocalModelBackend(model, checkpoint, template=template, use_gpu=self.use_gpu)
        return self._backends[key]

    def run(self) -> tuple[list[str], dict] | None:
        """Extract from the form's text and show the result; errors are shown in the form, not raised."""
        from .viz import highlight_html

        self.status.value = "extracting..."
        self.button.disabled = True
        try:
            raw, parsed = extract(self.text.value, self.task.value, self.schema.value, self.language.value, self.backend())
        except Exception as exc:  # a widget callback has nowhere to raise to: show what went wrong
            self.result.value = self.raw.value = ""  # never leave an earlier answer under a new error
            self.status.value = f'<span class="dk-error" style="color:#a00">{escape(type(exc).__name__)}: {escape(str(exc))}</span>'
            return None
        finally:
            self.button.disabled = False
        self.result.value = highlight_html(self.text.value, self.task.value, parsed)
        shown = json.dumps(parsed, ensure_ascii=False, indent=2)
        self.raw.value = (f'<details open><summary>parsed answer</summary><pre class="dk-json">{escape(shown)}</pre></details>'
                          f'<details><summary>raw output ({len(raw)} instruction{"s" if len(raw) != 1 else ""})</summary>'
                          f'<pre class="dk-raw">{escape(chr(10).join(raw))}</pre></details>')
        self.status.value = '<span class="dk-done">done</span>'
        return raw, parsed


def extractor_app(model: str | os.PathLike | None = None, *, text: str = "", task: str = "NER", language: str = "en",
                  **options: Any) -> ExtractorApp:
    """The app; with no ``model`` (and no ``engine``) it runs the committed tiny IE base with its own ontology.

    Other keyword arguments go to :class:`ExtractorApp` (``checkpoint_dir``, ``template``, ``engine``, ``base_url``,
    ``use_gpu``, ``schema_for``, ``backend``).
    """
    if model is None and not options.get("engine"):
        from .tiny_base import tiny_base_path

        model = tiny_base_path()
        options.setdefault("schema_for", tiny_base_schema_text)
    return ExtractorApp(text=text, task=task, language=language, model=str(model) if model else None, **options)
