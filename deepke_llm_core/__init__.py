"""DeepKE-LLM Cookbook core: knowledge extraction with large language models.

Stages (each a module, each a ``deepke-llm`` sub-command): ``convert`` raw IE records into IEPile/InstructIE
instructions, ``evaluate`` predictions with upstream-compatible F1. Importing the package does no work: no
seeding, no device probing, no heavy imports.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
