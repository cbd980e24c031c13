"""SalUn — Saliency Unlearning (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based
Weight Saliency in Both Image Classification and Generation", ICLR 2024, arXiv 2310.12508).

1. Weight saliency: m_S = 1(|grad_theta L_f(theta_o; D_f)| >= gamma), with gamma the value that keeps
   the top ``saliency_ratio`` fraction of all editable weights ranked together (largest gradients
   kept; reference ``generate_mask.py``, threshold 0.5).
2. Saliency-based unlearning: theta_u = m_S * (theta_o + delta) + (1 - m_S) * theta_o — only salient
   weights train; the rest stay at theta_o exactly (``optim.restore_masked``). Where the task names
   a saliency loss (``task.extras['saliency_loss']``: for diffusion, SalUn-SD's loss on the guided
   noise prediction) the gradient is that loss's, else the forget loss's.
3. ``salun`` (the paper's random labelling): minimise L_train(theta; x_f, y') + L_train(theta; D_r),
   y' a random other label. For CLIP, y' is another identity's caption and L_train the task's
   training objective (``retain_loss``), so the forget images are fitted to wrong names. Each epoch
   is a relabelled pass over D_f then a pass over D_r, as the reference ``unlearn/RL.py`` does.
   For diffusion, one combined step per forget batch, as SalUn-SD's ``random_label.py``: the
   relabelled loss + ``alpha`` x the retain loss on the next retain batch (alpha 0.5, its README's
   Stable Diffusion recipe; UnlearnCanvas's port uses 1.0).
   ``salun-ga``: the same mask over GA + FT passes, SLUG's comparison (its ``unlearn_compare.py``
   runs GAFT with the mask; unlike ours, it masks gradients only, so weight decay moves masked-out
   weights there).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import Method, Outcome, register_method
from unlearnbench.methods.common import mean_gradients
from unlearnbench.methods.ft import retain_pass
from unlearnbench.methods.ga import ascent_pass
from unlearnbench.methods.optim import IterativeConfig, Pass, optimise
from unlearnbench.task import UnlearningTask, iterate


@dataclass(frozen=True)
class SalUnConfig(IterativeConfig):
    # r: share of weights that train. SalUn generate_mask.py and SLUG's get_salun_mask both use 0.5.
    saliency_ratio: float = 0.5
    alpha: float = 0.5  # diffusion: weight of the retain loss in the combined step (SalUn-SD's README: 0.5)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.saliency_ratio <= 1:
            raise UnlearnBenchError(f"saliency_ratio={self.saliency_ratio}; expected a fraction in (0, 1]")
        if not self.alpha >= 0:
            raise UnlearnBenchError(f"alpha={self.alpha}; the retain loss weight must be >= 0")


def saliency_mask(grads: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """True for the ``int(ratio * n)`` entries with the largest |grad| over all tensors together.

    Ties are broken by position (stable sort), so the mask is reproducible.
    """
    magnitudes = torch.cat([g.abs().flatten() for g in grads.values()])
    keep = int(len(magnitudes) * ratio)
    chosen = torch.zeros(len(magnitudes), dtype=torch.bool, device=magnitudes.device)
    chosen[torch.argsort(magnitudes, descending=True, stable=True)[:keep]] = True
    parts = chosen.split([g.numel() for g in grads.values()])
    return {name: part.view_as(g) for (name, g), part in zip(grads.items(), parts)}


@register_method("salun")
class SalUn(Method):
    """Saliency unlearning, random labels: forget images fitted to other captions, on salient weights."""

    Config = SalUnConfig
    kinds = frozenset({"clip", "diffusion", "vlm"})

    def passes(self, task: UnlearningTask) -> list[Pass]:
        if task.random_label_loss_fn is None:
            raise UnlearnBenchError(
                f"salun needs a task that can pair forget samples with other labels; suite {task.suite!r} "
                "gives none (UnlearningTask.random_label_loss_fn) — use salun-ga instead")
        # Drawn from the seeded global generator, so the random labels repeat with the run's seed.
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        if task.kind == "diffusion":
            return [combined_pass(task, self.config, generator)]
        relabelled = Pass("relabel", task.forget_batches,
                          lambda model, batch: task.random_label_loss(model, batch, generator),
                          self.config.forget_batches)
        return [relabelled, retain_pass(task, self.config)]

    def unlearn(self, task: UnlearningTask) -> Outcome:
        cfg = self.config
        passes = self.passes(task)
        with task.costs.phase("precompute"):
            saliency_loss = task.extras.get("saliency_loss")
            loss = task.forget_loss if saliency_loss is None else counted(task, saliency_loss, passes=2)
            grads = mean_gradients(task, task.model, iterate(task.forget_batches(), cfg.forget_batches),
                                   loss, task.editable)
            mask = saliency_mask(grads, cfg.saliency_ratio)
        outcome = optimise(task, self.name, cfg, passes, mask)
        kept = pd.DataFrame([{"tensor": name, "kept": int(m.sum()), "size": m.numel()} for name, m in mask.items()])
        outcome.tables["saliency"] = kept
        outcome.info["saliency_kept"] = float(kept.kept.sum() / kept["size"].sum())
        return outcome


def counted(task: UnlearningTask, loss_fn, passes: int):
    """``loss_fn`` with its forward samples counted (``passes`` model calls per sample)."""
    def loss(model, batch):
        task.costs.count(forward=passes * len(batch[0]))
        return loss_fn(model, batch)
    return loss


def combined_pass(task: UnlearningTask, cfg: SalUnConfig, generator: torch.Generator) -> Pass:
    """SalUn-SD's step: per forget batch, the relabelled loss + alpha x the retain loss on the next
    retain batch (the retain set cycles). A batch is (forget images, forget batch, retain batch)."""

    def batches():
        retain = cycle_epochs(task.retain_batches)
        for forget in iterate(task.forget_batches(), cfg.forget_batches):
            yield forget[0], forget, next(retain)

    def loss(model, batch):
        _, forget, retain = batch
        task.costs.count(backward=len(retain[0]))  # the combined loss backpropagates both batches
        return task.random_label_loss(model, forget, generator) + cfg.alpha * task.retain_loss(model, retain)

    return Pass("combined", batches, loss, None)


def cycle_epochs(epochs):
    """Batches of ``epochs()`` forever, a fresh epoch whenever one ends."""
    while True:
        empty = True
        for batch in epochs():
            empty = False
            yield batch
        if empty:
            raise UnlearnBenchError("salun: the retain set has no batches")


@register_method("salun-ga")
class SalUnGA(SalUn):
    """Saliency-masked gradient ascent + fine-tuning (SLUG's SalUn comparison)."""

    def passes(self, task: UnlearningTask) -> list[Pass]:
        return [ascent_pass(task, self.config), retain_pass(task, self.config)]
