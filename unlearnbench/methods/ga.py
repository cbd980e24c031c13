"""GA — Gradient Ascent on the forget set (the baseline of SLUG, Cai et al., ICML 2025, Table 1).

Maximise the forget loss L_f on D_f, i.e. minimise -L_f:  theta <- AdamW step on -grad L_f(theta; B_f)
for every forget batch B_f, epoch after epoch, until the validation goal is met (``optim``).
CLIP: L_f = mean(1 - cos(img, txt)), as SLUG's ``unlearn/GA.py`` (CosineEmbeddingLoss, sign flipped).
"""

from __future__ import annotations

from unlearnbench.methods.base import Method, Outcome, register_method
from unlearnbench.methods.optim import IterativeConfig, Pass, optimise
from unlearnbench.task import UnlearningTask


def ascent_pass(task: UnlearningTask, cfg: IterativeConfig) -> Pass:
    """A sweep over D_f that raises the forget loss."""
    return Pass("ga", task.forget_batches, lambda model, batch: -task.forget_loss(model, batch),
                cfg.forget_batches)


@register_method("ga")
class GradientAscent(Method):
    """Gradient ascent on the forget loss over D_f with AdamW, stopped by the validation goal."""

    Config = IterativeConfig
    kinds = frozenset({"clip", "diffusion", "vlm"})

    def unlearn(self, task: UnlearningTask) -> Outcome:
        return optimise(task, self.name, self.config, [ascent_pass(task, self.config)])
