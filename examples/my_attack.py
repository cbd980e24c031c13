"""``noise``: Gaussian noise on the tensors the method changed — a worked attack plugin.

Run it beside the built-in attacks with ``python bench.py --plugin examples.my_attack --methods slug --attacks
noise,quantize`` and see its settings with ``python bench.py ls --plugin examples.my_attack noise``.

Does a small random perturbation of the edited tensors undo the edit? For each scale s of ``scales`` and each
of ``draws`` seeded draws: W <- W + s * std(W) * N(0, 1) on every tensor the method changed, then the suite's
attack metrics on test; recorded per scale as the mean over the draws (``FA@1|noise-0.1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearnbench.attacks.base import Attack, AttackContext, check_budget, register_attack
from unlearnbench.errors import UnlearnBenchError


@dataclass(frozen=True)
class NoiseConfig:
    scales: tuple[float, ...] = (0.1, 0.3)  # noise std as a fraction of each tensor's own std
    draws: int = 2  # seeded draws per scale; the metrics are their mean


@register_attack("noise")
class Noise(Attack):
    """Gaussian noise on the tensors the method changed, at a few scales (worked example)."""

    Config = NoiseConfig
    kinds = frozenset({"clip", "diffusion", "vlm"})

    def __init__(self, config: NoiseConfig | None = None) -> None:
        super().__init__(config)
        check_budget(self.config.draws, "draws", "noise")
        if not self.config.scales or any(not s > 0 for s in self.config.scales):
            raise UnlearnBenchError(f"attack 'noise': scales={self.config.scales!r}; give positive fractions, "
                                    "e.g. --attack-set noise.scales=0.1,0.3")

    def labels(self) -> tuple[str, ...]:
        return tuple(f"noise-{scale:g}" for scale in self.config.scales)

    def attack(self, context: AttackContext) -> dict[str, dict[str, float]]:
        params = dict(context.model.named_parameters())
        generator = torch.Generator().manual_seed(context.seed)
        out = {}
        for label, scale in zip(self.labels(), self.config.scales):
            runs = []
            for _ in range(self.config.draws):
                with context.scratch():  # every tensor comes back when the block ends
                    with context.costs.phase("update"), torch.no_grad():
                        for name in context.changed:
                            weight = params[name]
                            noise = torch.randn(weight.shape, generator=generator).to(weight)
                            weight.add_(scale * weight.float().std().to(weight.dtype) * noise)
                    runs.append(context.evaluate())
            out[label] = {metric: sum(r[metric] for r in runs) / len(runs) for metric in runs[0]}
        return out
