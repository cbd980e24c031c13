"""relearn — a few fine-tuning steps on held-out target data, then the test metrics again.

Relearning attacks (Hu et al., "Jogging the Memory of Unlearned LLMs Through Targeted Relearning Attacks",
2024; Lynch et al., "Eight Methods to Evaluate Robust Unlearning in LLMs", 2024) ask whether forgetting is
erasure or suppression: if a handful of steps on a few examples of the target, examples unlearning never
saw, brings the target back far faster than it was learnt, the knowledge was still there.

1. Take ``samples`` pairs of the target that unlearning, validation and test never used
   (``Suite.attack_batches``: generated for it on embedded suites, a documented split on real ones).
2. Minimise the task's forget loss on them (the loss gradient ascent raises) with AdamW at the suite's
   reference learning rate, one batch a step; evaluate on test after each of ``steps``.
3. The same from the unlearned model on retain data alone (``relearn-retain-<k>``): does the target come
   back without being shown, merely because training moves the weights again?
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from unlearnbench.attacks.base import Attack, AttackContext, check_budget, register_attack
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.task import Batch


@dataclass(frozen=True)
class RelearnConfig:
    steps: tuple[int, ...] = (10, 50)  # fine-tuning steps after which the model is tested (one run, tested at each)
    samples: int = 16  # held-out target pairs it fine-tunes on
    batch_size: int = 8  # pairs per step
    lr: float | None = None  # AdamW learning rate; None: the suite's reference learning rate
    retain_only: bool = True  # also the same steps on retain data alone (labels relearn-retain-<k>)


@register_attack("relearn")
class Relearn(Attack):
    """Fine-tune k steps on held-out target pairs (and on retain data alone) and test again."""

    Config = RelearnConfig
    kinds = frozenset({"clip", "diffusion", "vlm"})

    def __init__(self, config: RelearnConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        for setting in ("steps", "samples", "batch_size"):
            check_budget(getattr(cfg, setting), setting, "relearn")
        if len(set(cfg.steps)) < len(cfg.steps):
            raise UnlearnBenchError(f"attack 'relearn': steps={cfg.steps!r} names a step count twice; give each once")
        if cfg.lr is not None and not cfg.lr > 0:
            raise UnlearnBenchError(f"attack 'relearn': lr={cfg.lr!r}; give a positive learning rate, or none for "
                                    "the suite's reference one")

    def labels(self) -> tuple[str, ...]:
        kinds = ("relearn", "relearn-retain") if self.config.retain_only else ("relearn",)
        return tuple(f"{kind}-{k}" for kind in kinds for k in sorted(self.config.steps))

    def attack(self, context: AttackContext) -> dict[str, dict[str, float]]:
        cfg, task = self.config, context.task
        lr = cfg.lr if cfg.lr is not None else task.reference_lr
        if lr is None:
            raise UnlearnBenchError(f"attack 'relearn': suite {task.suite!r} gives no reference learning rate; set "
                                    "one with --attack-set relearn.lr=VALUE")
        with context.base_weights():  # a generative suite draws them with the base model
            held_out = context.suite.attack_batches(task.target, cfg.samples, cfg.batch_size)
        runs = [("relearn", held_out, task.forget_loss)]
        if cfg.retain_only:
            runs.append(("relearn-retain", task.retain_batches, task.retain_loss))
        out: dict[str, dict[str, float]] = {}
        for prefix, epoch, loss in runs:
            with context.scratch():
                torch.manual_seed(context.seed)
                for step in fine_tune(context, epoch, loss, lr, max(cfg.steps)):
                    if step in cfg.steps:
                        out[f"{prefix}-{step}"] = context.evaluate()
        return {label: out[label] for label in self.labels()}


def fine_tune(context: AttackContext, epoch: Callable[[], Iterator[Batch]],
              loss: Callable[[torch.nn.Module, Batch], torch.Tensor], lr: float, steps: int) -> Iterator[int]:
    """AdamW on the task's editable tensors, one batch of ``epoch`` (restarted when it ends) per step,
    minimising ``loss``; yields the number of steps taken after each, so the caller can test in between."""
    task, model = context.task, context.model
    params = task.editable_parameters(model)
    optimizer = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=0.0)
    batches = _endless(epoch)
    try:
        for step in range(1, steps + 1):
            with context.costs.phase("update"):
                batch = next(batches)
                grads = torch.autograd.grad(loss(model, batch), list(params.values()), allow_unused=True)
                context.costs.count(backward=len(batch[0]))
                for param, grad in zip(params.values(), grads):
                    param.grad = grad
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            yield step
    finally:
        for param in params.values():
            param.grad = None


def _endless(epoch: Callable[[], Iterator[Batch]]) -> Iterator[Batch]:
    while True:
        empty = True
        for batch in epoch():
            empty = False
            yield batch
        if empty:
            raise UnlearnBenchError("attack 'relearn': the batches to fine-tune on are empty")
