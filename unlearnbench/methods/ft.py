"""FT — fine-tuning on the retain set (the baseline of SLUG, Cai et al., ICML 2025, Table 1; and of
SalUn, Fan et al., ICLR 2024): forgetting only through what D_r's training objective overwrites.

Minimise the retain loss L_r on D_r:  theta <- AdamW step on grad L_r(theta; B_r) for every retain
batch, epoch after epoch, until the validation goal is met (``optim``). It often never meets it;
the trace shows how far it got. CLIP: L_r = symmetric InfoNCE (SLUG's ``unlearn/FT.py``).
"""

from __future__ import annotations

from unlearnbench.methods.base import Method, Outcome, register_method
from unlearnbench.methods.optim import IterativeConfig, Pass, optimise
from unlearnbench.task import UnlearningTask


def retain_pass(task: UnlearningTask, cfg: IterativeConfig) -> Pass:
    """A sweep over D_r that lowers the model's training objective."""
    return Pass("ft", task.retain_batches, task.retain_loss, cfg.retain_batches)


@register_method("ft")
class FineTune(Method):
    """Fine-tuning on the retain set with the training objective, stopped by the validation goal."""

    Config = IterativeConfig
    kinds = frozenset({"clip", "diffusion", "vlm"})
    aims_to_forget = False  # a baseline that forgets only by accident; the contract requires a lower retain loss

    def unlearn(self, task: UnlearningTask) -> Outcome:
        return optimise(task, self.name, self.config, [retain_pass(task, self.config)])
