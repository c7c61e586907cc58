"""Paste a text, pick a task and a model, see the extractions highlighted: the interactive app.

The work is :func:`deepke_llm_core.extract.extract` (text + task + schema -> the package's own IEPile
instructions -> an engine -> typed extractions located in the text); the app is a thin ipywidgets form around it,
so everything it does is testable without a browser. Three kinds of engine can be chosen:

* a model on this machine (a merged model, or a base plus a LoRA/P-Tuning adapter), prompted exactly as
  ``deepke-llm infer`` prompts it (its stored template);
* OneKE (or a model fine-tuned from it): the same with OneKE's ``llama2_zh`` prompt;
* an engine of the registry (``ChatGPT`` with any ``base_url``, ``DeepSeek``, or a local chat model), sent the same
  instruction as a chat message. The API key comes from the environment (``OPENAI_API_KEY``...), never from a
  widget, so it is never saved in a notebook.

ipywidgets is imported only when the app is built (``pip install ipywidgets``, part of the ``dev`` extra).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from html import escape
from typing import Any

__all__ = ["default_schema_text", "tiny_base_schema_text", "ExtractorApp", "extractor_app", "BACKENDS"]

LANGUAGES = ("en", "zh")


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


BACKENDS = ("local model", "OneKE (llama2_zh)", "ICL API engine")


class ExtractorApp:
    """The form: text, task, language, schema, backend choice, an Extract button, the highlighted result and raw JSON.

    ``app.widget`` is the ipywidgets box (the app displays itself in a notebook); ``app.run()`` is what the button does.
    Backends are built from the form and kept, so a model loads once.
    """

    def __init__(self, *, text: str = "", task: str = "NER", language: str = "en", model: str | None = None,
                 checkpoint_dir: str | None = None, template: str | None = None, engine: str | None = None,
                 base_url: str | None = None, use_gpu: bool | None = None,
                 schema_for: Callable[[str, str], str] | None = None, engine_object: Any = None):
        import ipywidgets as w

        from .engines import engine_names
        from .tasks import TASKS

        self.schema_for = schema_for or default_schema_text
        self.use_gpu = use_gpu
        self._engines: dict[tuple, Any] = {}
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
        self.engine = w.Dropdown(options=[n for n in engine_names() if n not in ("transformers", "vllm")],
                                 value=engine or "ChatGPT", description="ICL engine")
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
        if engine_object is not None:  # a ready engine stands for the form's initial settings
            self._engines[self._form_key()] = engine_object

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

    def engine_for_form(self) -> Any:
        """The engine the form describes (built on first use, then reused, so a model loads once)."""
        from .engines import EngineOptions, create_engine
        from .engines.local import TransformersEngine

        key = self._form_key()
        kind, model, checkpoint, template, engine, base_url = key
        checkpoint, template, base_url = checkpoint or None, template or None, base_url or None
        if key not in self._engines:
            if kind == BACKENDS[2]:
                self._engines[key] = create_engine(engine, EngineOptions(model_id=model or None, base_url=base_url))
            elif not model:
                raise ValueError("enter a model folder or Hub id")
            else:
                template = "llama2_zh" if kind == BACKENDS[1] else template
                self._engines[key] = TransformersEngine.load(model, checkpoint, template=template, use_gpu=self.use_gpu)
        return self._engines[key]

    def run(self) -> Any:
        """Extract from the form's text and show the result; errors are shown in the form, not raised."""
        from .extract import extract
        from .viz import highlight_html

        self.status.value = "extracting..."
        self.button.disabled = True
        try:
            result = extract(self.text.value, self.task.value, self.schema.value, self.engine_for_form(),
                             language=self.language.value)
        except Exception as exc:  # a widget callback has nowhere to raise to: show what went wrong
            self.result.value = self.raw.value = ""  # never leave an earlier answer under a new error
            self.status.value = f'<span class="dk-error" style="color:#a00">{escape(type(exc).__name__)}: {escape(str(exc))}</span>'
            return None
        finally:
            self.button.disabled = False
        self.result.value = highlight_html(result.text, self.task.value, result.extractions)
        shown = json.dumps([e.to_json() for e in result.extractions], ensure_ascii=False, indent=2)
        count = len(result.outputs)
        self.raw.value = (f'<details open><summary>extractions</summary><pre class="dk-json">{escape(shown)}</pre></details>'
                          f'<details><summary>raw output ({count} instruction{"s" if count != 1 else ""})</summary>'
                          f'<pre class="dk-raw">{escape(chr(10).join(result.outputs))}</pre></details>')
        self.status.value = '<span class="dk-done">done</span>'
        return result


def extractor_app(model: str | os.PathLike | None = None, *, text: str = "", task: str = "NER", language: str = "en",
                  **options: Any) -> ExtractorApp:
    """The app; with no ``model`` (and no ``engine``) it runs the committed tiny IE base with its own ontology.

    Other keyword arguments go to :class:`ExtractorApp` (``checkpoint_dir``, ``template``, ``engine``, ``base_url``,
    ``use_gpu``, ``schema_for``, ``engine_object``).
    """
    if model is None and not options.get("engine"):
        from .tiny_base import tiny_base_path

        model = tiny_base_path()
        options.setdefault("schema_for", tiny_base_schema_text)
    return ExtractorApp(text=text, task=task, language=language, model=str(model) if model else None, **options)
