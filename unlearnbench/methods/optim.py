"""The loop every iterative method shares: epochs, the stopping rule, AdamW, masks, costs.

A method describes one epoch as a list of ``Pass``es (a data set, the loss to minimise on it, a
batch cap); ``optimise`` runs them with AdamW and ``run_epochs`` applies the stopping rule every
method here shares with SLUG's step search (docs/PROTOCOLS.md, "methods"):

1. after every epoch, score the forget-validation split alone (``task.validate_forget``);
2. only if the target is forgotten, score retention too (``task.validate``) and judge the goal;
3. stop at the first epoch that meets the goal; if none does within the epoch limit, restore the
   epoch closest to meeting it with the least damage (``Goal.shortfall``: an epoch that forgets,
   by its retention, before one that does not; ties to the earlier epoch), the rule SLUG's step
   choice follows too. The trace marks the epoch kept.

Methods that edit weights without an optimiser (``ssd-slug``, ``esd``) reuse ``run_epochs`` alone.

Optimiser defaults are the reference CLIP fine-tuning settings (open_clip ``training/params.py`` for
ViT models, used unchanged by SLUG's ``unlearn_compare.py``): betas (0.9, 0.98), eps 1e-6, weight
decay 0.1 on matrices only, logit scale clamped to [0, ln 100]. The learning rate follows SLUG's
``unlearn_compare.py`` with ``--warmup 0``: one cosine over the *retain* set's planned steps
(its "train" loader x epochs), each pass indexing it by its own batch count (``epoch * n_pass + i``),
so a GA pass over a small forget set runs at ~0.99 of the base rate throughout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from unlearnbench.contrastive import LOGIT_SCALE_MAX
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import Outcome
from unlearnbench.progress import bar as progress
from unlearnbench.schedules import SHAPES, lr_multiplier
from unlearnbench.task import Batch, UnlearningTask, iterate



@dataclass(frozen=True)
class BatchCaps:
    """How much of each data set one pass reads (None: all of it, the references' setting)."""

    forget_batches: int | None = None  # cap on forget batches per pass
    retain_batches: int | None = None  # cap on retain batches per pass

    def __post_init__(self) -> None:
        for name in ("forget_batches", "retain_batches"):
            cap = getattr(self, name)
            if cap is not None and cap < 1:
                raise UnlearnBenchError(f"{name}={cap}; use a positive number of batches, or none for all")


@dataclass(frozen=True)
class EpochConfig(BatchCaps):
    """The stopping rule of a method that works epoch by epoch."""

    epochs: int = 10  # epoch limit (SLUG scripts/run_clip_comparison.sh: --epochs=10)
    stop_on_goal: bool = True  # stop at the first epoch whose validation meets the task's goal

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 1:
            raise UnlearnBenchError(f"epochs={self.epochs}; it must be at least 1")


@dataclass(frozen=True)
class IterativeConfig(EpochConfig):
    """``EpochConfig`` plus AdamW: the hyperparameters of every optimised baseline."""

    # None: the suite's reference learning rate for its model (UnlearningTask.reference_lr). SLUG's
    # scripts/run_clip_comparison.sh trains every baseline on ViT-B-32 with 1e-7 ("1e-5 is too
    # large"); its other CLIP runs use up to 1e-5.
    lr: float | None = None
    weight_decay: float = 0.1  # AdamW decoupled decay on >= 2-D tensors (SLUG script: --wd=0.1)
    betas: tuple[float, float] = (0.9, 0.98)  # open_clip's ViT defaults
    eps: float = 1e-6  # open_clip's ViT default
    # "cosine" (SLUG's unlearn_compare.py: cosine_lr, no warm-up) or "constant"; see the module docstring.
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule not in SHAPES:
            raise UnlearnBenchError(f"schedule={self.schedule!r}; expected one of {', '.join(SHAPES)}")
        if self.lr is not None and not self.lr > 0:
            raise UnlearnBenchError(f"lr={self.lr}; the learning rate must be positive")
        if self.weight_decay < 0:
            raise UnlearnBenchError(f"weight_decay={self.weight_decay}; it must be >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UnlearnBenchError(f"betas={self.betas}; expected two values in [0, 1), e.g. 0.9,0.98")


@dataclass(frozen=True)
class Pass:
    """One sweep within an epoch: a step on each batch of ``batches`` (at most ``limit``) that
    lowers ``loss``. ``name`` labels the pass in errors and in the trace's ``loss_<name>`` column."""

    name: str
    batches: Callable[[], Iterator[Batch]]
    loss: Callable[[nn.Module, Batch], torch.Tensor]
    limit: int | None = None


def run_epochs(task: UnlearningTask, method: str, cfg: EpochConfig,
               epoch_fn: Callable[[int, tqdm], dict[str, float]], total: int, unit: str,
               edited: dict[str, torch.Tensor] | None = None) -> Outcome:
    """Call ``epoch_fn(epoch, bar)`` (update phase), then check it (search phase), until the goal is
    met (with ``cfg.stop_on_goal``) or ``cfg.epochs`` have run; see the module docstring.

    ``epoch_fn`` returns per-epoch statistics for the trace and advances ``bar`` (``total`` units
    of ``unit`` planned). ``edited``: the tensors the epochs change (default: ``task.editable``),
    snapshotted at the best epoch so far so that a missed goal can restore it. The trace has one
    row per epoch: its statistics, the forget metrics, the retain metrics where the epoch forgot
    (NaN elsewhere), ``met``, ``kept`` and ``seconds`` since the loop started.
    """
    model = task.model
    edited = edited if edited is not None else task.editable_parameters(model)
    changed = set(edited)
    keep_best = cfg.stop_on_goal  # without the rule the run is the reference budget: the last epoch
    was_training = model.training
    with task.costs.phase("search"):
        model.eval()
        task.base_validation()  # the goal's retain tolerance compares against the untouched model
    rows: list[dict] = []
    best: tuple | None = None
    best_epoch = 0
    snapshot: dict[str, torch.Tensor] = {}
    start = time.perf_counter()
    bar = progress(total=total, desc=f"{method} {task.target}", unit=unit)
    try:
        for epoch in range(1, cfg.epochs + 1):
            with task.costs.phase("update"):
                stats = epoch_fn(epoch, bar)
            with task.costs.phase("search"):
                model.eval()
                metrics, met = check(task, model, changed)
            rows.append({"epoch": epoch, **stats, **metrics, "met": met, "seconds": time.perf_counter() - start})
            bar.set_postfix({task.goal.forget_metric: metrics[task.goal.forget_metric], "met": met})
            if met and cfg.stop_on_goal:
                break
            rank = task.goal.shortfall(metrics, epoch)
            if keep_best and (best is None or rank < best):
                best, best_epoch = rank, epoch
                with torch.no_grad():
                    for name, tensor in edited.items():
                        snapshot.setdefault(name, torch.empty_like(tensor)).copy_(tensor)
        kept = len(rows)
        if keep_best and not rows[-1]["met"] and best_epoch != kept:
            with torch.no_grad():
                for name, tensor in edited.items():
                    tensor.copy_(snapshot[name])
            kept = best_epoch
    finally:
        bar.close()
        model.train(was_training)
    trace = pd.DataFrame(rows)
    trace["kept"] = trace.epoch == kept
    return Outcome(trace=trace, info={"epochs": len(rows), "kept_epoch": kept,
                                      "goal_met": bool(rows[kept - 1]["met"])})


def check(task: UnlearningTask, model: nn.Module, changed: set[str]) -> tuple[dict[str, float], bool]:
    """The forget split first; retention only when the target is forgotten. Returns the metrics
    measured and whether the task's goal is met."""
    metrics = dict(task.validate_forget(model, changed))
    if not task.goal.forget_met(metrics):
        return metrics, False
    if task.goal.retain_metric not in metrics:  # a suite without a forget-only check gave everything
        metrics.update(task.validate(model, changed))
    return metrics, task.goal_met(metrics)


def optimise(task: UnlearningTask, method: str, cfg: IterativeConfig, passes: list[Pass],
             mask: dict[str, torch.Tensor] | None = None) -> Outcome:
    """Minimise each pass's loss over ``task.editable`` with AdamW, epoch by epoch (``run_epochs``).

    ``mask`` (name -> bool tensor) confines the update to its True entries: the rest keep their
    starting values exactly, whatever the weight decay and the optimiser's moments would do.
    Tensors absent from ``mask`` train freely.
    """
    model = task.model
    params = task.editable_parameters(model)
    lr = task.learning_rate(cfg.lr, method)
    optimizer = adamw(params, cfg, lr)
    with task.costs.phase("precompute"):
        counts = {p.name: count_batches(p.batches, p.limit) for p in passes}
        # The schedule's horizon is the retain set's planned steps, as SLUG's scripts plan it.
        retain = next((counts[p.name] for p in passes
                       if p.batches is task.retain_batches and p.limit == cfg.retain_batches), None)
        if retain is None:
            retain = count_batches(task.retain_batches, cfg.retain_batches)
    if sum(counts.values()) == 0:
        raise UnlearnBenchError(f"{method}: no batches to train on for target {task.target!r} (passes: "
                                f"{', '.join(p.name for p in passes)}); check the task's forget and retain sets")
    horizon = (retain or max(counts.values())) * cfg.epochs
    masked = {name: m.to(params[name].device, torch.bool) for name, m in (mask or {}).items()}
    start = {name: params[name].detach().clone() for name in masked}
    logit_scales = [p for name, p in params.items() if name.rsplit(".", 1)[-1] == "logit_scale"]
    step = 0

    def epoch_fn(epoch: int, bar: tqdm) -> dict[str, float]:
        nonlocal step
        model.train()
        stats = {}
        for p in passes:
            losses, scales = [], []
            for i, batch in enumerate(iterate(p.batches(), p.limit)):
                step += 1
                scale = lr_multiplier((epoch - 1) * counts[p.name] + i, horizon, 0, cfg.schedule)
                for group in optimizer.param_groups:
                    group["lr"] = lr * scale
                loss = p.loss(model, batch)
                if not torch.isfinite(loss):
                    raise UnlearnBenchError(
                        f"{method}: the {p.name} loss is {loss.item()} at epoch {epoch}, step {step} while "
                        f"unlearning {task.target!r}; the optimisation diverged — lower {method}.lr "
                        f"(now {lr})")
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                task.costs.count(backward=len(batch[0]))
                for param, grad in zip(params.values(), grads):
                    param.grad = grad
                optimizer.step()
                with torch.no_grad():
                    for logit_scale in logit_scales:
                        logit_scale.clamp_(0, LOGIT_SCALE_MAX)
                restore_masked(optimizer, params, masked, start)
                losses.append(loss.item())
                scales.append(scale)
                bar.update(1)
            stats[f"loss_{p.name}"] = sum(losses) / len(losses) if losses else math.nan
            stats[f"lr_scale_{p.name}"] = sum(scales) / len(scales) if scales else math.nan
        optimizer.zero_grad(set_to_none=True)
        return stats

    outcome = run_epochs(task, method, cfg, epoch_fn, sum(counts.values()) * cfg.epochs, "step", params)
    outcome.info.update(steps=step, lr=lr)
    return outcome


def count_batches(batches: Callable[[], Iterator[Batch]], limit: int | None) -> int:
    return sum(1 for _ in iterate(batches(), limit))


def adamw(params: dict[str, nn.Parameter], cfg: IterativeConfig, lr: float) -> torch.optim.AdamW:
    """AdamW that decays matrices only: open_clip exempts gains, biases and the logit scale."""
    decay = [p for p in params.values() if p.ndim >= 2]
    rest = [p for p in params.values() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=cfg.betas, eps=cfg.eps)


@torch.no_grad()
def restore_masked(optimizer: torch.optim.Optimizer, params: dict[str, nn.Parameter],
                   mask: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> None:
    """Put masked-out entries back to ``start`` and zero their optimiser moments.

    Masking the gradient would not be enough: decoupled weight decay shrinks every entry, and a
    moment an entry carries keeps pushing it after its gradient is gone. Restoring after each step
    and clearing the moments leaves the optimiser nothing to move them with.
    """
    for name, keep in mask.items():
        param = params[name]
        param.copy_(torch.where(keep, param, start[name]))
        for key, value in optimizer.state.get(param, {}).items():
            if key != "step":  # the step count is shared by the whole tensor
                value.mul_(keep)
