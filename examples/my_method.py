"""``mine``: a few steps of sign-gradient ascent on CLIP's image projection — a worked plugin.

Run it beside the built-in methods with ``python bench.py --plugin examples.my_method --methods mine,slug``
and see its settings with ``python bench.py ls --plugin examples.my_method mine``.

Each step: g = grad of the forget loss L_f w.r.t. the image projection W on one forget batch;
W <- W + step_size * mean|W| * sign(g) (ascent: the target's images move away from its name);
stop as soon as the forget-validation split meets the task's goal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import torch

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import Method, Outcome, register_method
from unlearnbench.task import Batch, UnlearningTask


@dataclass(frozen=True)
class MineConfig:
    steps: int = 20  # most ascent steps (one forget batch each)
    step_size: float = 0.05  # each entry moves by this fraction of the tensor's mean magnitude per step
    tensor: str = "visual.proj"  # the tensor to edit: open_clip's image projection


def forget_stream(task: UnlearningTask) -> Iterator[Batch]:
    """Forget batches, epoch after epoch (each epoch in the order of the seeded torch generator)."""
    while True:
        yield from task.forget_batches()


@register_method("mine")
class Mine(Method):
    """Sign-gradient ascent on CLIP's image projection until the target is forgotten (worked example)."""

    Config = MineConfig
    kinds = frozenset({"clip"})

    def check(self, task: UnlearningTask) -> None:
        if self.config.tensor not in task.editable:
            raise UnlearnBenchError(f"mine: tensor={self.config.tensor!r} is not editable in this task; "
                                    f"e.g. --method-set mine.tensor={task.editable[-1]}")

    def unlearn(self, task: UnlearningTask) -> Outcome:
        cfg = self.config
        weight = task.editable_parameters(task.model)[cfg.tensor]
        scale = float(weight.detach().abs().mean())
        rows = []
        with task.costs.phase("update"):
            for step, batch in zip(range(1, cfg.steps + 1), forget_stream(task)):
                # 1. the gradient of the forget loss on the next forget batch
                (grad,) = torch.autograd.grad(task.forget_loss(task.model, batch), [weight])
                task.costs.count(backward=len(batch[0]))
                # 2. one signed step up the loss
                with torch.no_grad():
                    weight.add_(cfg.step_size * scale * grad.sign())
                # 3. stop once the target is forgotten on the validation split
                metrics = task.validate_forget(task.model, {cfg.tensor})
                rows.append({"step": step, **metrics})
                if task.goal.forget_met(metrics):
                    break
        return Outcome(trace=pd.DataFrame(rows), info={"steps": len(rows), "goal_met": task.goal.forget_met(metrics)})
