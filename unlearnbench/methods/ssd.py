"""SSD — Selective Synaptic Dampening (Foster, Schoepf & Brintrup, AAAI 2024, arXiv 2308.07707).

1. Importances: diagonal Fisher information, the mean over batches of squared gradients of the
   training loss: I_D on the whole training data (D_r and D_f), I_f on D_f.
2. Selection: parameters with I_f > alpha * I_D.
3. Dampening: theta <- beta * theta with beta = min(lambda * I_D / I_f, 1) on the selected entries.

The SSD repository's settings: alpha 10 / lambda 1 for class forgetting (alpha x 0.5 for ViT), and
for face identities (its PinsFaceRecognition runs, the task type of ours) alpha 50 / lambda 0.1.
Both assume I_D over a whole training set: since D_f's batches are among D's, I_D >= (n_f / n) I_f
and I_f / I_D can never exceed n / n_f (batch counts). The repository's settings have n / n_f ~ 100
(one face of 105, one class of 100); the retain sample a suite hands us is far smaller (clip: 1,024
pairs against ~100 forget pairs, a cap of ~11), so alpha 50 selects nothing at all.

So by default (``alpha=None``) alpha is selected on validation with the budget every method here
gets (docs/PROTOCOLS.md, "methods"): SLUG's step search (``common.bisect_search``) over the step
1/alpha, ``search_steps`` evaluations, starting from the face-identity setting ``alpha_start`` = 50
(or, where the cap leaves nothing above it, just below the largest I_f / I_D present), forget split
first, retention only for steps that forget; the met step with the best retention is applied, else
the one closest to meeting the goal (``Goal.shortfall``). ``alpha=A`` applies the repository's one-shot
rule with that alpha and no validation at all. lambda is the face-identity 0.1.

``ssd-slug`` is SLUG's comparison (Cai et al., ICML 2025; its ``unlearn/SSD.py``, ``calc_grad.py``
and ``unlearn_compare.py``), read as follows:
- I_D from the retain data alone (its "train" shard) under the training loss; I_f from D_f under the
  *forget* loss (the cosine loss), not the training loss. Both are means over batches:
  ``calc_grad`` sums squared gradients and divides by the batch count. (Summed importances
  would scale both sides alike only for equal batch counts; the reference divides, so we do too.)
  With D_f outside I_D there is no cap.
- alpha = 10 (hard-coded ``selection_weighting``); scalar tensors (the logit scale) are skipped.
- Dampening is re-applied to the current weights every epoch with lambda_e =
  linspace(0.1, 5, epochs)[e], the importances fixed from the original model, so its effect
  compounds; after each epoch the stopping rule of ``optim.run_epochs`` decides whether to go on.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import Method, Outcome, register_method
from unlearnbench.methods.common import bisect_search, mean_gradients
from unlearnbench.methods.optim import BatchCaps, EpochConfig, run_epochs
from unlearnbench.methods.slug import choose_trial
from unlearnbench.task import UnlearningTask, iterate


@dataclass(frozen=True)
class SSDConfig(BatchCaps):
    # selection weighting: I_f > alpha * I_D. None: selected on validation (module docstring).
    alpha: float | None = None
    alpha_start: float = 50.0  # the SSD repository's face-identity alpha (PinsFaceRecognition)
    dampening: float = 0.1  # lambda: beta = min(lambda * I_D / I_f, 1); the repository's face-identity value
    search_steps: int = 10  # evaluations of the alpha search (SLUG's S; the iterative methods' 10 epochs)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not ((self.alpha is None or self.alpha > 0) and self.alpha_start > 0 and self.dampening > 0):
            raise UnlearnBenchError(f"ssd: alpha={self.alpha}, alpha_start={self.alpha_start}, "
                                    f"dampening={self.dampening}; all must be positive")
        if self.search_steps < 1:
            raise UnlearnBenchError(f"ssd.search_steps={self.search_steps}; it must be at least 1")


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
        trace = pd.DataFrame()
        alpha = cfg.alpha
        if alpha is None:
            trace = self.search_alpha(task, params, i_d, i_f)
            chosen = choose_trial(trace, task.goal)
            alpha = 1 / float(chosen["step"])
        with task.costs.phase("update"):
            selected = dampen(params, i_d, i_f, alpha, cfg.dampening)
        table = selection_table(selected, params)
        info = {"alpha": alpha, "selected": int(table.selected.sum()),
                "selected_fraction": float(table.selected.sum() / table["size"].sum()),
                "ratio_cap": largest_ratio(i_d, i_f)}
        if len(trace):
            info["goal_met"] = bool(chosen["met"])
        return Outcome(trace=trace, info=info, tables={"selection": table})

    def search_alpha(self, task: UnlearningTask, params: dict[str, torch.nn.Parameter],
                     i_d: dict[str, torch.Tensor], i_f: dict[str, torch.Tensor]) -> pd.DataFrame:
        """Every trial of the search over the step 1/alpha; the weights are left as they were."""
        cfg = self.config
        task.base_validation()  # on the original weights, before the first trial dampens them
        original = {name: p.detach().clone() for name, p in params.items()}

        def apply(step: float) -> dict:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(original[name])
            selected = dampen(params, i_d, i_f, 1 / step, cfg.dampening)
            return {"alpha": 1 / step, "selected": sum(selected.values())}

        cap = largest_ratio(i_d, i_f)
        start = cfg.alpha_start if cap > cfg.alpha_start or not math.isfinite(cap) else cap * (1 - 1e-6)
        scoring = "smallest" if task.expensive_validation else "forgetting"
        try:
            with task.costs.phase("search"):
                return pd.DataFrame(bisect_search(task, apply, 1 / start, cfg.search_steps, set(params), scoring))
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(original[name])


def largest_ratio(i_d: dict[str, torch.Tensor], i_f: dict[str, torch.Tensor]) -> float:
    """max I_f / I_D over the entries where both are positive (inf if there are none): no alpha at
    or above it selects any of them."""
    ratios = [(i_f[n] / i_d[n])[(i_d[n] > 0) & (i_f[n] > 0)] for n in i_d]
    ratios = [r.max().item() for r in ratios if r.numel()]
    return max(ratios) if ratios else math.inf


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

        outcome = run_epochs(task, self.name, cfg, epoch_fn, cfg.epochs, "epoch", params)
        outcome.tables["selection"] = selection_table(selected, params)
        return outcome
