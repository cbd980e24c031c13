"""The loop every iterative method shares: epochs, the stopping rule, AdamW, masks, costs.

A method describes one epoch as a list of ``Pass``es (a data set, the loss to minimise on it, a
batch cap); ``optimise`` runs them with AdamW under a cosine schedule and, after every epoch,
``run_epochs`` scores the model on the validation splits and stops at the first epoch that meets
the task's goal (the same target SLUG's step search uses), else at the epoch limit. Methods that
edit weights without an optimiser (``ssd-slug``) reuse ``run_epochs`` alone.

Optimiser defaults are the reference CLIP fine-tuning settings (open_clip ``training/params.py`` for
ViT models, used unchanged by SLUG's ``unlearn_compare.py``): betas (0.9, 0.98), eps 1e-6,
weight decay 0.1 on matrices only, cosine decay without warm-up, logit scale clamped to [0, ln 100].
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

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import Outcome
from unlearnbench.task import Batch, UnlearningTask, iterate

LOGIT_SCALE_MAX = math.log(100)  # CLIP clamps its temperature at 100 (Radford et al. 2021, Sec. 2.5)


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
    # large"); METHODS.md gives 1e-7 ... 1e-5 as the reference range for CLIP.
    lr: float | None = None
    weight_decay: float = 0.1  # AdamW decoupled decay on >= 2-D tensors (SLUG script: --wd=0.1)
    betas: tuple[float, float] = (0.9, 0.98)  # open_clip's ViT defaults
    eps: float = 1e-6  # open_clip's ViT default

    def __post_init__(self) -> None:
        super().__post_init__()
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
               epoch_fn: Callable[[int, tqdm], dict[str, float]], total: int, unit: str) -> Outcome:
    """Call ``epoch_fn(epoch, bar)`` (update phase), then validate (search phase), until the goal
    is met (with ``cfg.stop_on_goal``) or ``cfg.epochs`` have run.

    ``epoch_fn`` returns per-epoch statistics for the trace and advances ``bar`` (``total`` units
    of ``unit`` planned). The trace has one row per epoch: its statistics, every validation metric,
    ``met`` and ``seconds`` since the loop started.
    """
    model = task.model
    was_training = model.training
    with task.costs.phase("search"):
        model.eval()
        task.base_validation()  # the goal's retain tolerance compares against the untouched model
    rows = []
    start = time.perf_counter()
    bar = tqdm(total=total, desc=f"{method} {task.target}", unit=unit)
    try:
        for epoch in range(1, cfg.epochs + 1):
            with task.costs.phase("update"):
                stats = epoch_fn(epoch, bar)
            with task.costs.phase("search"):
                model.eval()
                metrics = task.validate(model, set(task.editable))
                met = task.goal_met(metrics)
            rows.append({"epoch": epoch, **stats, **metrics, "met": met,
                         "seconds": time.perf_counter() - start})
            bar.set_postfix({task.goal.forget_metric: metrics[task.goal.forget_metric], "met": met})
            if met and cfg.stop_on_goal:
                break
    finally:
        bar.close()
        model.train(was_training)
    return Outcome(trace=pd.DataFrame(rows), info={"epochs": len(rows), "goal_met": bool(rows[-1]["met"])})


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
        # The cosine schedule spans the planned steps, so count the batches of one epoch first.
        per_epoch = sum(sum(1 for _ in iterate(p.batches(), p.limit)) for p in passes)
    if per_epoch == 0:
        raise UnlearnBenchError(f"{method}: no batches to train on for target {task.target!r} (passes: "
                                f"{', '.join(p.name for p in passes)}); check the task's forget and retain sets")
    planned = per_epoch * cfg.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / planned)))
    masked = {name: m.to(params[name].device, torch.bool) for name, m in (mask or {}).items()}
    start = {name: params[name].detach().clone() for name in masked}
    logit_scales = [p for name, p in params.items() if name.rsplit(".", 1)[-1] == "logit_scale"]
    step = 0

    def epoch_fn(epoch: int, bar: tqdm) -> dict[str, float]:
        nonlocal step
        model.train()
        stats = {}
        for p in passes:
            losses = []
            for batch in iterate(p.batches(), p.limit):
                step += 1
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
                schedule.step()
                with torch.no_grad():
                    for scale in logit_scales:
                        scale.clamp_(0, LOGIT_SCALE_MAX)
                restore_masked(optimizer, params, masked, start)
                losses.append(loss.item())
                bar.update(1)
            stats[f"loss_{p.name}"] = sum(losses) / len(losses) if losses else math.nan
        optimizer.zero_grad(set_to_none=True)
        return stats

    outcome = run_epochs(task, method, cfg, epoch_fn, planned, "step")
    outcome.info.update(steps=step, lr=lr)
    return outcome


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
