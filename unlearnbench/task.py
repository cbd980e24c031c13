"""``UnlearningTask``: everything a suite hands a method, whatever the model family.

A method sees a model, forget and retain batches, a forget and a retain loss, the tensors it may
edit, and a validation hook with a goal. It never sees test data: selection (SLUG's step search,
the iterative methods' stopping rule) uses the validation hook alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unlearnbench.costs import CostMeter
from unlearnbench.passes import counted_as
from unlearnbench.errors import UnlearnBenchError

Batch = tuple[Any, ...]
"""A tuple whose first element is indexed by sample (its length is the batch size)."""


@dataclass(frozen=True)
class Goal:
    """When is the target forgotten, and how is retention scored among steps that forget it?

    Met when ``metrics[forget_metric] <= forget_threshold`` and, if ``retain_tolerance`` is set,
    ``metrics[retain_metric] >= base[retain_metric] - retain_tolerance``.
    """

    forget_metric: str
    forget_threshold: float
    retain_metric: str
    retain_tolerance: float | None = None

    def forget_met(self, metrics: Mapping[str, float]) -> bool:
        return metrics.get(self.forget_metric, math.nan) <= self.forget_threshold

    def met(self, metrics: dict[str, float], base: dict[str, float] | None = None) -> bool:
        if not self.forget_met(metrics):
            return False
        if self.retain_tolerance is not None and base is not None:
            return metrics[self.retain_metric] >= base[self.retain_metric] - self.retain_tolerance
        return True

    def shortfall(self, metrics: Mapping[str, float], damage: float) -> tuple[bool, float, float, float]:
        """Sort key of checks that missed the goal, lowest first: the one closest to meeting it with the
        least damage, the fallback every method keeps (docs/PROTOCOLS.md, "The stopping rule").

        Checks that forgot the target come first (they missed on retention), best retain score first (an
        unscored one last); then the others, lowest forget metric first (a missing one last), then best
        retain score; ties go to the smaller ``damage`` (a step's size, an epoch's number).
        """
        def finite_or_last(value: float) -> float:
            return value if math.isfinite(value) else math.inf

        forgot = self.forget_met(metrics)  # a NaN forget metric (not measured) did not forget
        forget = 0.0 if forgot else finite_or_last(metrics.get(self.forget_metric, math.nan))
        return not forgot, forget, finite_or_last(-metrics.get(self.retain_metric, math.nan)), damage


@dataclass
class UnlearningTask:
    """What a suite hands a method.

    ``forget_batches()`` / ``retain_batches()`` return a fresh iterator over one epoch, in an
    order fixed by the current torch seed. Losses return a scalar mean over the batch.
    ``validate(model, changed)`` scores the model on validation splits; ``changed`` names the
    tensors edited since the base model (None: unknown), so suites can reuse what an edit cannot
    have changed (e.g. CLIP's text classifier after a vision-only edit).
    """

    kind: str  # "clip" | "diffusion" | "vlm": what a method may assume about the model
    suite: str
    target: str
    model: nn.Module
    forget_batches: Callable[[], Iterator[Batch]]
    retain_batches: Callable[[], Iterator[Batch]]
    forget_loss_fn: Callable[[nn.Module, Batch], torch.Tensor]
    retain_loss_fn: Callable[[nn.Module, Batch], torch.Tensor]
    validate_fn: Callable[[nn.Module, set[str] | None], dict[str, float]]
    goal: Goal
    editable: list[str]  # parameter names methods may change
    layer_groups: dict[str, str]  # SLUG candidate tensor -> tower ("vision", "text", ...)
    # SalUn's random-label loss on a forget batch: the forget samples paired with random other
    # labels (captions, concepts) under the model's training objective; None if the suite has none.
    random_label_loss_fn: Callable[[nn.Module, Batch, torch.Generator], torch.Tensor] | None = None
    # Optional cheap validation of the forget split alone (at least ``goal.forget_metric``), so a
    # search can skip scoring retention for steps that do not forget; None: use ``validate_fn``.
    validate_forget_fn: Callable[[nn.Module, set[str] | None], dict[str, float]] | None = None
    # Validation generates samples (images, answers) and costs far more than a gradient step:
    # searches should score retention sparingly (SLUG's retain_scoring).
    expensive_validation: bool = False
    # The learning rate the reference code uses at this model's scale; iterative methods default to it.
    reference_lr: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # kind-specific parts (e.g. a scheduler)
    costs: CostMeter = field(default_factory=CostMeter)
    # Settings a method left at None and the values the task gave them (learning_rate's "lr"), so the
    # manifest and the report show what ran.
    resolved: dict[str, Any] = field(default_factory=dict)
    _base_validation: dict[str, float] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forget_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        self.costs.count(forward=len(batch[0]))
        return self.forget_loss_fn(model, batch)

    def retain_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        self.costs.count(forward=len(batch[0]))
        return self.retain_loss_fn(model, batch)

    def learning_rate(self, configured: float | None, method: str, setting: str = "lr") -> float:
        """A method's configured learning rate (its setting ``setting``), else this task's reference one,
        which is then recorded in ``resolved``."""
        if configured is not None:
            return configured
        if self.reference_lr is None:
            raise UnlearnBenchError(f"{method}: no learning rate: suite {self.suite!r} gives no reference_lr; "
                                    f"set one with --method-set {method}.{setting}=VALUE")
        self.resolved[setting] = self.reference_lr
        return self.reference_lr

    def random_label_loss(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        if self.random_label_loss_fn is None:
            raise UnlearnBenchError(f"suite {self.suite!r} defines no random-label loss for its tasks")
        self.costs.count(forward=len(batch[0]))
        return self.random_label_loss_fn(model, batch, generator)

    def validate(self, model: nn.Module, changed: set[str] | None = None) -> dict[str, float]:
        self.costs.count(evaluations=1)
        with torch.no_grad():
            return self.validate_fn(model, changed)

    def validate_forget(self, model: nn.Module, changed: set[str] | None = None) -> dict[str, float]:
        """Forget-split metrics only, where the suite can compute them on their own; else all."""
        if self.validate_forget_fn is None:
            return self.validate(model, changed)
        self.costs.count(evaluations=1)
        with torch.no_grad():
            return self.validate_forget_fn(model, changed)

    def base_validation(self) -> dict[str, float]:
        """Validation metrics of the untouched model (computed once, before any edit)."""
        if self._base_validation is None:
            start = time.perf_counter()
            with counted_as("base_validation"):
                self._base_validation = self.validate(self.model, set())
            self.costs.base_validation_s = time.perf_counter() - start
        return self._base_validation

    def editable_parameters(self, model: nn.Module) -> dict[str, nn.Parameter]:
        params = dict(model.named_parameters())
        return {name: params[name] for name in self.editable}

    def goal_met(self, metrics: dict[str, float]) -> bool:
        return self.goal.met(metrics, self.base_validation())


def batch_size(batch: Batch) -> int:
    return len(batch[0])


def iterate(batches: Iterable[Batch], limit: int | None) -> Iterator[Batch]:
    """At most ``limit`` batches (all when None)."""
    for i, batch in enumerate(batches):
        if limit is not None and i >= limit:
            return
        yield batch


def shuffled_epochs(n: int, batch_size: int,
                    make_batch: Callable[[torch.Tensor], Batch]) -> Callable[[], Iterator[Batch]]:
    """An epoch function for ``forget_batches`` / ``retain_batches``: positions 0..n-1 in the order of
    the current torch seed, ``batch_size`` at a time, each batch made by ``make_batch(positions)``."""

    def epoch() -> Iterator[Batch]:
        order = torch.randperm(n)
        for start in range(0, n, batch_size):
            yield make_batch(order[start:start + batch_size])

    return epoch
