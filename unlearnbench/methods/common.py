"""Math shared by several methods: mean gradients over a data set and the Pareto front."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.task import Batch, UnlearningTask


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
