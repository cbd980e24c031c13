"""Math shared by several methods: mean gradients over a data set, the Pareto front, and the step
search on validation that SLUG and SSD's alpha selection share."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.task import Batch, UnlearningTask


PROCEDURES = ("cached", "reference")  # how a search scores its trials (bisect_search; checked by its configs)


def mean_gradients(task: UnlearningTask, model: nn.Module, batches: Iterable[Batch],
                   loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
                   names: list[str], *, squared: bool = False) -> dict[str, torch.Tensor]:
    """Average over batches of each batch's gradient (or squared gradient, for Fisher diagonals).

    Gradients are zeroed between batches and accumulated in fp32; the model is in eval mode so
    normalisation and dropout behave as at inference.
    """
    params = dict(model.named_parameters())
    selected = {name: params[name] for name in names}
    totals = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in selected.items()}
    was_training = model.training
    model.eval()
    n_batches = 0
    for batch in batches:
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise UnlearnBenchError(
                f"the loss is {loss.item()} on batch {n_batches} of target {task.target!r}; "
                "gradients would be meaningless (check the model weights and the data)")
        grads = torch.autograd.grad(loss, list(selected.values()), allow_unused=True)
        task.costs.count(backward=len(batch[0]))
        for name, grad in zip(selected, grads):
            if grad is not None:
                totals[name] += grad.float() ** 2 if squared else grad.float()
        n_batches += 1
    model.train(was_training)
    if n_batches == 0:
        raise UnlearnBenchError(f"no batches to compute gradients from for target {task.target!r}")
    return {name: total / n_batches for name, total in totals.items()}


def pareto_front(importance: torch.Tensor, alignment: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the points no other point dominates.

    Point j dominates i when it has strictly higher importance and strictly lower alignment
    (SLUG: we want layers that matter for the forget set but whose gradient is unlike the retain
    gradient).
    """
    higher = importance[None, :] > importance[:, None]  # [i, j]: j more important than i
    lower = alignment[None, :] < alignment[:, None]
    return ~(higher & lower).any(dim=1)


def bisect_search(task: UnlearningTask, apply: Callable[[float], dict], initial: float, steps: int,
                  changed: set[str], scoring: str, procedure: str = "cached") -> list[dict]:
    """SLUG's step search (its step 5), for any edit that grows with a scalar step.

    ``apply(step)`` sets the model to the edit of that size (always from the original weights)
    and returns facts about it for the trial's row. Starting at ``initial``: double while the
    target is not forgotten, then bisect between the largest step that did not forget and the
    smallest that did, ``steps`` evaluations in all. Each trial is scored on the forget split
    alone, telling the suite which tensors changed so it recomputes only what they can change;
    retention is scored for every step that forgets (``scoring="forgetting"``) or once, at the
    smallest such step (``"smallest"``: retention falls as the step grows). Those scored trials are
    the candidates; ``met`` marks the candidates that meet the goal. ``procedure="reference"`` scores
    every trial as the reference code does, a full validation that reuses nothing; the bracket, the
    candidates and so the choice are the same. The caller restores the original weights. Returns
    one dict per trial.
    """
    lo, hi = 0.0, math.inf
    step = initial
    trials = []

    def score_retention(trial: dict) -> None:
        if task.goal.retain_metric not in trial:
            apply(trial["step"])
            trial.update(task.validate(task.model, changed))
        trial["met"] = task.goal_met(trial)

    for i in range(steps):
        facts = apply(step)
        scores = (task.validate(task.model, None) if procedure == "reference"
                  else task.validate_forget(task.model, changed))
        trial = {**facts, "trial": i, "step": step, "met": False, **scores}
        forgot = task.goal.forget_met(trial)
        if forgot and scoring == "forgetting":
            score_retention(trial)
        trials.append(trial)
        if forgot:
            hi = step
        else:
            lo = step
        step = step * 2 if math.isinf(hi) else (lo + hi) / 2
    if scoring == "smallest" and not math.isinf(hi):
        score_retention(next(t for t in trials if t["step"] == hi))
    return trials
