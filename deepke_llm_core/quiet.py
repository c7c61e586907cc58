"""Quiet by default: the command line prints its steps, progress bars and results, not the libraries' chatter.

Without it a ``deepke-llm finetune`` or ``make quickstart`` on a CPU prints DeepSpeed's accelerator banner,
transformers' deprecation ``FutureWarning``s (``gradient_checkpointing``...), bitsandbytes' "Failed to load CPU
gemm_4bit_forward from kernels-community": messages about the libraries, none of which a user can act on. ``quiet()`` silences exactly those channels, and nothing of ours:

* warnings *attributed to* a library module (our own ``warnings.warn`` calls keep showing);
* the loggers of transformers (errors still shown), DeepSpeed and bitsandbytes, below ``ERROR``.

Progress bars (downloads, weight loading, training, prediction) stay: they tell the user something is happening.

``deepke-llm --verbose ...`` or ``DEEPKE_LLM_VERBOSE=1`` leaves everything as the libraries set it. ``quiet()``
only installs filters and levels (cheap; it imports nothing heavy), so it runs before the libraries are imported,
which is what catches their import-time messages.
"""

from __future__ import annotations

import logging
import os
import warnings

__all__ = ["quiet", "verbose_requested", "LIBRARIES"]

LIBRARIES = ("transformers", "torch", "peft", "trl", "accelerate", "datasets", "huggingface_hub", "bitsandbytes",
             "deepspeed", "tokenizers", "safetensors", "vllm", "lmformatenforcer", "setuptools", "pkg_resources")
_LOGGERS = ("DeepSpeed", "bitsandbytes", "accelerate", "peft", "trl", "datasets", "torch.distributed")


class _BelowError(logging.Filter):
    """Drops records below ERROR; a filter, because DeepSpeed resets its logger's level when it creates it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def verbose_requested() -> bool:
    """``DEEPKE_LLM_VERBOSE`` set to anything but ``""``/``0``/``false``."""
    return os.environ.get("DEEPKE_LLM_VERBOSE", "").strip().lower() not in ("", "0", "false", "no")


def quiet(verbose: bool | None = None) -> bool:
    """Silence library noise unless ``verbose`` (default: :func:`verbose_requested`); returns whether it did.

    Safe to call more than once.
    """
    if verbose if verbose is not None else verbose_requested():
        os.environ["DEEPKE_LLM_VERBOSE"] = "1"  # child processes (torchrun workers, servers) stay verbose too
        return False
    for library in LIBRARIES:
        warnings.filterwarnings("ignore", module=rf"{library}(\.|$)")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read by transformers when it is first imported
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the fork warning of the Rust tokenizers
    below_error = _BelowError()
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _BelowError) for f in logger.filters):
            logger.addFilter(below_error)
        logger.setLevel(logging.ERROR)
    import sys

    if "transformers" in sys.modules:  # imported before us: its level was read already
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    return True
