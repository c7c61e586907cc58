"""LoRA training on CPU with fewer passes over memory: a cheaper dropout mask and a fused low-rank update.

At the tiny model's size a LoRA step on CPU is bound by memory passes, not arithmetic, and PEFT's LoRA layer
makes several that the maths does not need. Two replacements, both installed by :func:`use_cpu_lora` after
``get_peft_model`` (or on a resumed adapter), on CPU only; on GPU PEFT's own modules stay:

* ``UniformMaskDropout`` for each LoRA layer's ``nn.Dropout``. On CPU, ``torch.nn.functional.dropout`` draws its
  mask with ``bernoulli_``, measured at 12-19% of a LoRA step (``bench/train.py``'s settings: r 8 on all linear
  layers, dropout 0.05, one thread). Uniform numbers compared with ``p`` cost about a third less, and numpy's
  PCG64 fills them 20-30% faster than torch's CPU generator: an element is kept with probability ``1 - p`` and
  scaled by ``1 / (1 - p)``, exactly the distribution of ``nn.Dropout`` (from another random stream, seeded from
  torch's generator call by call, so a run is reproducible against itself and across a resume, not against
  plain dropout).
* ``FusedLoraLinear`` for PEFT's ``lora.Linear``: the update ``result + lora_B(lora_A(dropout(x))) * scaling``
  is one ``torch.addmm(result, h, B.T, alpha=scaling / (1 - p))`` on the unscaled 0/1 mask, so the dropout's
  scaling, the LoRA scaling and the addition happen inside the matrix product instead of as three more passes
  over memory (and a fourth, the scaling's, in the backward pass): about 7% of the step. The same sums in the
  same order: where ``scaling`` and ``1 / (1 - p)`` are powers of two (alpha = 2 r, the default, and no dropout)
  loss and gradients are bit-identical to PEFT's (``tests/test_cpu_lora.py``), otherwise equal within float
  rounding. Only the plain case is fused (one active adapter, no DoRA or other variant, no LoRA bias, no extra
  arguments, input and weights of one dtype, no autocast); anything else, merging and saving included, is PEFT's own
  code, because the class is a subclass that overrides only ``forward``.

PEFT has no CPU-specific path for either, and torch.compile would fuse more but recompiles for every batch
shape and costs more to compile than a short run trains; so these two are written here.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy
import torch

__all__ = ["UniformMaskDropout", "fused_lora_class", "use_cpu_lora"]


class UniformMaskDropout(torch.nn.Dropout):
    """``nn.Dropout`` whose training mask is ``uniform >= p`` (see the module docstring)."""

    def keep_mask(self, x: torch.Tensor) -> torch.Tensor:
        """0/1 of ``x``'s shape, 1 with probability ``1 - p``, unscaled; seeded from torch's generator."""
        if x.dtype != torch.float32:
            return torch.empty_like(x).uniform_().ge_(self.p)
        # numpy's PCG64 fills float32 uniforms 20-30% faster than torch's CPU generator (both 24-bit); each
        # call's seed is drawn from torch's generator, so seeding and checkpointed RNG states still govern it
        uniform = torch.empty(x.shape, dtype=torch.float32)
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        numpy.random.Generator(numpy.random.PCG64(seed)).random(out=uniform.numpy(), dtype=numpy.float32)
        return uniform.ge_(self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        return x * self.keep_mask(x).mul_(1.0 / (1.0 - self.p))


def _plain_adapter(layer: Any, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
    """The one active adapter when the fused forward computes exactly PEFT's update; ``None`` sends PEFT's own.

    Decided before anything is computed, so a layer that falls back does its work once.
    """
    names = layer.active_adapters
    if args or kwargs or layer.disable_adapters or layer.merged or len(names) != 1:
        return None
    name = names[0]
    if name not in layer.lora_A or name in layer.lora_variant or layer.lora_B[name].bias is not None:
        return None
    weights = (getattr(layer.base_layer, "weight", None), layer.lora_A[name].weight, layer.lora_B[name].weight)
    if any(w is None or w.dtype != x.dtype for w in weights) or torch.is_autocast_enabled(x.device.type):
        return None  # mixed dtypes or autocast: PEFT's forward casts back and forth
    return name


@functools.cache
def fused_lora_class(lora_linear: type) -> type:
    """The subclass of PEFT's LoRA ``Linear`` class whose plain-case forward is one ``addmm`` (module docstring)."""

    def forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        name = _plain_adapter(self, x, args, kwargs)
        if name is None:
            return super(fused, self).forward(x, *args, **kwargs)
        result = self.base_layer(x)
        dropout, alpha = self.lora_dropout[name], self.scaling[name]
        if isinstance(dropout, UniformMaskDropout) and dropout.training and 0.0 < dropout.p < 1.0:
            dropped = x * dropout.keep_mask(x)  # the 1 / (1 - p) of dropout goes into addmm's alpha
            alpha = alpha / (1.0 - dropout.p)
        else:
            dropped = dropout(x)
        h = torch.nn.functional.linear(dropped, self.lora_A[name].weight)
        out = torch.addmm(result.reshape(-1, result.shape[-1]), h.reshape(-1, h.shape[-1]),
                          self.lora_B[name].weight.t(), alpha=alpha)
        return out.view(result.shape)

    fused = type(f"Fused{lora_linear.__name__}", (lora_linear,), {
        "forward": forward, "__module__": __name__,
        "__doc__": f"PEFT's ``{lora_linear.__name__}`` with the LoRA update fused into one ``addmm`` (CPU)."})
    return fused


def use_cpu_lora(model: Any) -> dict[str, int]:
    """Install both replacements in every LoRA layer of a model on CPU; how many of each were installed.

    Idempotent (a second call installs nothing); a model on another device is left as it is.
    """
    counts = {"dropout": 0, "fused": 0}
    if next(model.parameters()).device.type != "cpu":
        return counts
    from peft.tuners.lora.layer import Linear as LoraLinear

    fused = fused_lora_class(LoraLinear)
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name, dropout in list(dropouts.items()):
                if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                    dropouts[name] = UniformMaskDropout(dropout.p)
                    counts["dropout"] += 1
        if type(module) is LoraLinear:  # exactly PEFT's dense Linear, not its quantized or other subclasses
            module.__class__ = fused
            counts["fused"] += 1
    return counts
