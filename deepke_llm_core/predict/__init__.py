"""Prediction engines behind one interface: records in, the same records with ``output`` out.

``hf`` (transformers, batched greedy generation) is built in; ``vllm`` needs the ``gpu`` extra. Both write the
file ``deepke-llm evaluate`` scores, incrementally and resumably (``writer.py``).
"""

from .run import InferArguments, parse_infer_args, run_inference

__all__ = ["InferArguments", "parse_infer_args", "run_inference"]
