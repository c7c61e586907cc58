"""LoRA's input dropout with a cheaper random mask: the same distribution, 5-10% less LoRA step time on CPU.

PEFT gives every LoRA layer an ``nn.Dropout`` on its input. On CPU, ``torch.nn.functional.dropout`` draws its
mask with ``bernoulli_``, which measured 12-19% of a LoRA training step of the tiny model (``bench/train.py``'s
settings: r 8 on all linear layers, dropout 0.05, one thread). ``UniformMaskDropout`` draws uniform numbers and
compares them with ``p`` instead, which costs about a third less (the step 5-10% less): an element is kept with
probability ``1 - p`` and scaled by ``1 / (1 - p)``, exactly the distribution of ``nn.Dropout`` (from another
random stream, so a run is reproducible against itself, not against plain dropout). It replaces PEFT's modules
in place after ``get_peft_model``; nothing else in PEFT changes. On GPU the fused built-in dropout is kept.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["UniformMaskDropout", "use_uniform_mask_dropout"]


class UniformMaskDropout(torch.nn.Dropout):
    """``nn.Dropout`` whose training mask is ``uniform_() >= p`` (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        keep = torch.empty_like(x).uniform_().ge_(self.p).mul_(1.0 / (1.0 - self.p))
        return x * keep


def use_uniform_mask_dropout(model: Any) -> int:
    """Swap the ``nn.Dropout`` of every LoRA layer of a model on CPU for ``UniformMaskDropout``; how many were."""
    if next(model.parameters()).device.type != "cpu":
        return 0
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                dropouts[name] = UniformMaskDropout(dropout.p)
                swapped += 1
    return swapped
