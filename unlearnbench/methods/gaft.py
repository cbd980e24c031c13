"""GAFT — gradient ascent then fine-tuning, each epoch (SLUG, Cai et al., ICML 2025, Table 1).

Every epoch: one GA pass over D_f (minimise -L_f), then one FT pass over D_r (minimise L_r), with
one AdamW optimiser and one cosine schedule across both — SLUG's ``unlearn/GAFT.py`` order.
"""

from __future__ import annotations

from unlearnbench.methods.base import Method, Outcome, register_method
from unlearnbench.methods.ft import retain_pass
from unlearnbench.methods.ga import ascent_pass
from unlearnbench.methods.optim import IterativeConfig, optimise
from unlearnbench.task import UnlearningTask


@register_method("gaft")
class GradientAscentFineTune(Method):
    """Per epoch a gradient-ascent pass over D_f, then a fine-tuning pass over D_r."""

    Config = IterativeConfig
    kinds = frozenset({"clip", "diffusion", "vlm"})

    def unlearn(self, task: UnlearningTask) -> Outcome:
        cfg = self.config
        return optimise(task, self.name, cfg, [ascent_pass(task, cfg), retain_pass(task, cfg)])
