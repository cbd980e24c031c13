"""quantize — round the weights to k-bit integers and back, then the test metrics again.

Zhang et al. ("Catastrophic Failure of LLM Unlearning via Quantization", ICLR 2025) found that unlearning
which moves weights by less than a quantization step is undone by the int4 round trip anyone deploying the
model applies. Here every floating-point tensor the method changed (``quantize-int<b>``), and every one of the
model (``quantize-int<b>-model``), goes through a symmetric round trip: per output row for matrices (per
tensor for vectors), scale = max |w| / (2^(b-1) - 1), w' = round(w / scale) * scale, in the tensor's dtype.
No data, no gradients: its budget is the bit widths it tries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnbench.attacks.base import Attack, AttackContext, register_attack
from unlearnbench.errors import UnlearnBenchError

SCOPES = ("changed", "model")


@dataclass(frozen=True)
class QuantizeConfig:
    bits: tuple[int, ...] = (8, 4)  # integer widths of the round trip (2..16)
    scopes: tuple[str, ...] = ("changed", "model")  # changed: the tensors the method changed; model: every tensor


@register_attack("quantize")
class Quantize(Attack):
    """Round trip the changed tensors (and the whole model) through int8 and int4 and test again."""

    Config = QuantizeConfig
    kinds = frozenset({"clip", "diffusion", "vlm"})

    def __init__(self, config: QuantizeConfig | None = None) -> None:
        super().__init__(config)
        bad = [b for b in self.config.bits if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 16]
        if bad or not self.config.bits:
            raise UnlearnBenchError(f"attack 'quantize': bits={self.config.bits!r}; give integer widths from 2 to 16, "
                                    "e.g. --attack-set quantize.bits=8,4")
        unknown = [s for s in self.config.scopes if s not in SCOPES]
        if unknown or not self.config.scopes:
            raise UnlearnBenchError(f"attack 'quantize': scopes={self.config.scopes!r}; expected some of "
                                    f"{', '.join(SCOPES)}")

    def labels(self) -> tuple[str, ...]:
        return tuple(f"quantize-int{b}" + ("" if scope == "changed" else "-model")
                     for scope in self.config.scopes for b in self.config.bits)

    def attack(self, context: AttackContext) -> dict[str, dict[str, float]]:
        params = dict(context.model.named_parameters())
        out = {}
        for scope in self.config.scopes:
            names = context.changed if scope == "changed" else tuple(params)
            for bits in self.config.bits:
                with context.scratch():
                    with context.costs.phase("update"), torch.no_grad():
                        for name in names:
                            if name in params and params[name].is_floating_point():
                                params[name].copy_(round_trip(params[name], bits))
                    out[f"quantize-int{bits}" + ("" if scope == "changed" else "-model")] = context.evaluate()
        return out


def round_trip(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``weight`` quantized to symmetric ``bits``-bit integers and back: per row for tensors of two or more
    dimensions (the first is the output), per tensor otherwise; an all-zero row stays zero. The error of
    each entry is at most half its row's step, max |w| / (2^(bits-1) - 1) / 2."""
    levels = 2 ** (bits - 1) - 1
    w = weight.detach().float()
    rows = w.reshape(len(w), -1) if w.ndim >= 2 else w.reshape(1, -1)
    scale = rows.abs().amax(dim=1, keepdim=True) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    quantized = torch.clamp(torch.round(rows / scale), -levels, levels) * scale
    return quantized.reshape(weight.shape).to(weight.dtype)
