"""SSD — Selective Synaptic Dampening (Foster, Schoepf & Brintrup, AAAI 2024, arXiv 2308.07707).

1. Importances: diagonal Fisher information, the mean over batches of squared gradients of the
   training loss: I_D on the whole training data (D_r and D_f), I_f on D_f.
2. Selection: parameters with I_f > alpha * I_D.
3. Dampening: theta <- beta * theta with beta = min(lambda * I_D / I_f, 1) on the selected entries.
One shot, no training loop. Defaults follow the reference code (``forget_full_class_main.py``):
lambda = 1, alpha = 10 scaled by 0.5 for ViT, i.e. 5 (identity forgetting is class forgetting).

``ssd-slug`` is SLUG's comparison (Cai et al., ICML 2025; its ``unlearn/SSD.py``, ``calc_grad.py``
and ``unlearn_compare.py``), read as follows:
- I_D from the retain data alone (its "train" shard) under the training loss; I_f from D_f under the
  *forget* loss (the cosine loss), not the training loss. Both are means over batches:
  ``calc_grad`` sums squared gradients and divides by the batch count. (METHODS.md says "summed
  importances"; the reference divides, so we do too.)
- alpha = 10 (hard-coded ``selection_weighting``); scalar tensors (the logit scale) are skipped.
- Dampening is re-applied to the current weights every epoch with lambda_e =
  linspace(0.1, 5, epochs)[e], the importances fixed from the original model, so its effect
  compounds; after each epoch the stopping rule of ``optim.run_epochs`` decides whether to go on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import Method, Outcome, register_method
from unlearnbench.methods.common import mean_gradients
from unlearnbench.methods.optim import BatchCaps, EpochConfig, run_epochs
from unlearnbench.task import UnlearningTask, iterate


@dataclass(frozen=True)
class SSDConfig(BatchCaps):
    # selection weighting: I_f > alpha * I_D. Reference forget_full_class_main.py: 10 for ResNet,
    # 10 * 0.5 for ViT (class forgetting, which identity forgetting is).
    alpha: float = 5.0
    dampening: float = 1.0  # lambda: beta = min(lambda * I_D / I_f, 1) (reference: 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.alpha > 0 and self.dampening > 0):
            raise UnlearnBenchError(f"ssd: alpha={self.alpha}, dampening={self.dampening}; both must be positive")


@dataclass(frozen=True)
class SSDSlugConfig(EpochConfig):
    alpha: float = 10.0  # SLUG unlearn/SSD.py: selection_weighting = 10
    dampening_first: float = 0.1  # lambda of the first epoch (SLUG: np.linspace(0.1, 5, 10)[epoch])
    dampening_last: float = 5.0  # lambda of the last planned epoch

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.alpha > 0 and self.dampening_first > 0 and self.dampening_last > 0):
            raise UnlearnBenchError(f"ssd-slug: alpha={self.alpha}, dampening_first={self.dampening_first}, "
                                    f"dampening_last={self.dampening_last}; all must be positive")


@torch.no_grad()
def dampen(params: dict[str, torch.nn.Parameter], i_d: dict[str, torch.Tensor], i_f: dict[str, torch.Tensor],
           alpha: float, dampening: float) -> dict[str, int]:
    """theta <- min(lambda I_D / I_f, 1) * theta where I_f > alpha I_D; returns how many per tensor."""
    selected = {}
    for name, param in params.items():
        chosen = i_f[name] > alpha * i_d[name]
        # I_f > 0 wherever chosen; elsewhere the ratio may be 0/0 and is discarded.
        beta = torch.where(chosen, (dampening * i_d[name] / i_f[name]).clamp(max=1), 1.0)
        param.mul_(beta.to(param.dtype))
        selected[name] = int(chosen.sum())
    return selected


def selection_table(selected: dict[str, int], params: dict[str, torch.nn.Parameter]) -> pd.DataFrame:
    return pd.DataFrame([{"tensor": name, "selected": n, "size": params[name].numel()}
                         for name, n in selected.items()])


@register_method("ssd")
class SSD(Method):
    """Selective Synaptic Dampening: shrink weights far more important to D_f than to all data."""

    Config = SSDConfig
    kinds = frozenset({"clip"})

    def unlearn(self, task: UnlearningTask) -> Outcome:
        cfg = self.config
        model = task.model
        params = task.editable_parameters(model)
        with task.costs.phase("precompute"):
            everything = itertools.chain(iterate(task.retain_batches(), cfg.retain_batches),
                                         iterate(task.forget_batches(), cfg.forget_batches))
            i_d = mean_gradients(task, model, everything, task.retain_loss, task.editable, squared=True)
            i_f = mean_gradients(task, model, iterate(task.forget_batches(), cfg.forget_batches),
                                 task.retain_loss, task.editable, squared=True)
        with task.costs.phase("update"):
            selected = dampen(params, i_d, i_f, cfg.alpha, cfg.dampening)
        table = selection_table(selected, params)
        info = {"selected": int(table.selected.sum()), "selected_fraction": float(table.selected.sum() / table["size"].sum())}
        return Outcome(info=info, tables={"selection": table})


@register_method("ssd-slug")
class SSDSlug(Method):
    """SSD as SLUG ran it: forget-loss I_f, alpha 10, dampening re-applied per epoch with rising lambda."""

    Config = SSDSlugConfig
    kinds = frozenset({"clip"})

    def unlearn(self, task: UnlearningTask) -> Outcome:
        cfg = self.config
        model = task.model
        # SLUG skips one-element tensors: its Fisher ratio is meaningless for the logit scale.
        params = {name: p for name, p in task.editable_parameters(model).items() if p.numel() > 1}
        with task.costs.phase("precompute"):
            i_d = mean_gradients(task, model, iterate(task.retain_batches(), cfg.retain_batches),
                                 task.retain_loss, list(params), squared=True)
            i_f = mean_gradients(task, model, iterate(task.forget_batches(), cfg.forget_batches),
                                 task.forget_loss, list(params), squared=True)
        schedule = np.linspace(cfg.dampening_first, cfg.dampening_last, cfg.epochs)
        selected: dict[str, int] = {}  # the same entries every epoch: the importances are fixed

        def epoch_fn(epoch: int, bar: tqdm) -> dict[str, float]:
            selected.update(dampen(params, i_d, i_f, cfg.alpha, float(schedule[epoch - 1])))
            bar.update(1)
            return {"dampening": float(schedule[epoch - 1])}

        outcome = run_epochs(task, self.name, cfg, epoch_fn, cfg.epochs, "epoch")
        outcome.tables["selection"] = selection_table(selected, params)
        return outcome
